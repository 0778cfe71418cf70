//! Scenario 2: produce-to-invocation latency at fixed rates, under flush `never`.
//!
//! Every record carries the instant it was sent (nanoseconds since the bench started) and
//! contains "blue", so the filter forwards each one, unchanged, to topic `blue`. Two
//! long-polling consumers in the bench read at once: one the forwarded records on `blue`
//! (through the handler), one the source topic itself (the same path without the handler).
//! Latency is the moment the consumer has the record minus the moment its produce request
//! was sent. So "via handler" is an upper bound on produce-to-invocation: it also holds the
//! produce HTTP request, the append of the emit, the consumer's wake-up and its HTTP answer.
//! The direct column measures those door costs alone; the difference is the handler path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use rill_runtime::admin::api::Fetched;
use rill_runtime::admin::client::Client;

use crate::host::Host;
use crate::http::Conn;
use crate::report::{Report, Row, time};
use crate::workload::{self, percentile};
use crate::{Ctx, Progress};

pub fn run(ctx: &Ctx, pb: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let dir = ctx.tmp.path().join("latency");
    let host = Host::start(&ctx.bin, &dir)?;
    let c = host.client();
    workload::create_topic(&c, "blue", 1, "never")?;
    for &rate in &ctx.rates {
        let topic = format!("lat{rate}");
        workload::create_topic(&c, &topic, 1, "never")?;
        workload::deploy(&c, &ctx.wasm, &topic, &topic, "latest", false)?;
        workload::poll(
            Duration::from_secs(30),
            Duration::from_millis(5),
            "the latency deployment to run",
            || Ok((workload::info(&c, &topic)?.partitions[0].status == "running").then_some(())),
        )?;
        pb.phase(&format!("latency: {rate} records/s"), 0);
        let m = measure(ctx, &c, &topic, rate)?;
        let setup = format!(
            "{rate}/s offered, {:.0}/s sent, {} samples, flush never",
            m.achieved, m.samples
        );
        for (name, mut lat) in [("via handler", m.via_handler), ("direct", m.direct)] {
            lat.sort_unstable();
            let p99 = percentile(&lat, 0.99);
            let mut row = Row::new(
                "latency",
                &format!("produce → consume {name}: p50 / p99 / p99.9"),
                &setup,
            )
            .value(format!(
                "{} / {} / {}",
                time(percentile(&lat, 0.5)),
                time(p99),
                time(percentile(&lat, 0.999))
            ));
            if rate == 10_000 && name == "via handler" {
                row = row.target("p99 ≤ 2 ms", p99 <= Duration::from_millis(2));
            }
            report.push(row);
        }
    }
    Ok(())
}

struct Measured {
    achieved: f64,
    samples: usize,
    via_handler: Vec<Duration>,
    direct: Vec<Duration>,
}

fn measure(ctx: &Ctx, c: &Client, topic: &str, rate: u64) -> anyhow::Result<Measured> {
    let t0 = Instant::now();
    let warmup = ctx.latency_run / 5;
    let produced = AtomicU64::new(0);
    let producing = AtomicBool::new(true);
    let blue_start = workload::topic_end(c, "blue")?;
    let src_start = workload::topic_end(c, topic)?;
    let per_tick = (rate / 1000).max(1);
    let tick = Duration::from_secs_f64(per_tick as f64 / rate as f64);
    std::thread::scope(|s| -> anyhow::Result<Measured> {
        let consumer = |t: &'static str, from: i64| {
            let (base, produced, producing) = (c.base().to_owned(), &produced, &producing);
            let topic = if t == "blue" {
                "blue".to_owned()
            } else {
                topic.to_owned()
            };
            s.spawn(move || {
                let mut conn = Conn::connect(&base)?;
                consume(&mut conn, &topic, from, t0, warmup, produced, producing)
            })
        };
        let via = consumer("blue", blue_start);
        let direct = consumer("src", src_start);

        let path = format!("/v1/topics/{topic}/records");
        let mut conn = Conn::connect(c.base())?;
        let started = Instant::now();
        let mut seq = 0u64;
        let mut next = started;
        while started.elapsed() < ctx.latency_run {
            let now = Instant::now();
            if now < next {
                std::thread::sleep(next - now);
            }
            next += tick;
            let sent = t0.elapsed().as_nanos() as u64;
            let records: Vec<Value> = (seq..seq + per_tick)
                .map(|i| json!({"value": probe(i, sent)}))
                .collect();
            conn.post(&path, &serde_json::to_vec(&json!({ "records": records }))?)?;
            seq += per_tick;
        }
        let achieved = seq as f64 / started.elapsed().as_secs_f64();
        produced.store(seq, Relaxed);
        producing.store(false, Relaxed);
        let via = via
            .join()
            .map_err(|_| anyhow::anyhow!("consumer panicked"))??;
        let direct = direct
            .join()
            .map_err(|_| anyhow::anyhow!("consumer panicked"))??;
        Ok(Measured {
            achieved,
            samples: via.len(),
            via_handler: via,
            direct,
        })
    })
}

/// A 100-byte record that says when it was sent.
fn probe(seq: u64, sent_ns: u64) -> String {
    let mut v = format!(r#"{{"seq":{seq},"sent_ns":{sent_ns},"color":"blue","note":""#);
    v.extend(std::iter::repeat_n('x', 98usize.saturating_sub(v.len())));
    v.push_str("\"}");
    v
}

fn field(v: &str, name: &str) -> Option<u64> {
    let at = v.find(name)? + name.len();
    let digits: String = v[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Reads `topic` from `from` until every produced record has arrived; returns the latency of
/// each record sent after the warm-up.
fn consume(
    conn: &mut Conn,
    topic: &str,
    from: i64,
    t0: Instant,
    warmup: Duration,
    produced: &AtomicU64,
    producing: &AtomicBool,
) -> anyhow::Result<Vec<Duration>> {
    let mut pos = from;
    let mut seen = 0u64;
    let mut out = Vec::new();
    let path = format!("/v1/topics/{topic}/fetch");
    let deadline_after_stop = Duration::from_secs(60);
    let mut stopped_at: Option<Instant> = None;
    loop {
        if !producing.load(Relaxed) {
            if seen >= produced.load(Relaxed) {
                return Ok(out);
            }
            let at = *stopped_at.get_or_insert_with(Instant::now);
            anyhow::ensure!(
                at.elapsed() < deadline_after_stop,
                "{topic}: only {seen} of {} records arrived",
                produced.load(Relaxed)
            );
        }
        let body = conn.post(
            &path,
            &serde_json::to_vec(
                &json!({"positions": {"0": pos}, "max_records": 100_000, "wait_ms": 100}),
            )?,
        )?;
        let f: Fetched = serde_json::from_slice(&body)?;
        let now = t0.elapsed();
        for r in &f.records {
            let v = r.value.as_deref().context("record without a value")?;
            let sent = Duration::from_nanos(field(v, "\"sent_ns\":").context("no sent_ns")?);
            if sent >= warmup {
                out.push(now.saturating_sub(sent));
            }
            seen += 1;
        }
        pos = f.positions.get(&0).copied().unwrap_or(pos);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn probes_are_100_bytes_and_parse() {
        let v = super::probe(12, 3_456_789);
        assert_eq!(v.len(), 100);
        assert!(v.contains("blue"));
        assert_eq!(super::field(&v, "\"sent_ns\":"), Some(3_456_789));
    }
}
