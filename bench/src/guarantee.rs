//! Exactly-once against at-least-once (issue 13): the reference filter drains the same topic
//! under both guarantees, in the same run, at the default batch size and at batches of 100
//! and 10 records per invocation. Each round is a new deployment (a new group, and under
//! exactly-once a new transactional id per partition); the best of the rounds is kept, the
//! two guarantees alternating so neither gets a warmer machine.
//!
//! Exactly-once costs a transaction per invocation per partition: the partitions added, the
//! offset committed through the coordinator, a commit marker in each output partition, and
//! the coordinator's state entries. Target: at most 30 % of at-least-once's throughput at
//! the default batch size.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::report::{Report, Row};
use crate::workload::{self, poll};
use crate::{Ctx, Progress};

/// Records per invocation measured, largest first: the host's default, then small ones.
const BATCHES: [u32; 3] = [1000, 100, 10];

#[derive(Debug, Clone, Copy)]
struct Pair {
    batch: u32,
    records: u64,
    at_least_once: f64,
    exactly_once: f64,
}

fn deploy(
    c: &rill_runtime::admin::client::Client,
    wasm: &[u8],
    name: &str,
    topic: &str,
    batch: u32,
    guarantee: &str,
) -> anyhow::Result<()> {
    let _: Value = c.post(
        "/v1/deployments",
        &json!({
            "name": name,
            "topic": topic,
            "from": {"kind": "earliest"},
            "outputs": ["blue"],
            "paused": true,
            "max_batch_records": batch,
            "guarantee": guarantee,
            "wasm_b64": base64::engine::general_purpose::STANDARD.encode(wasm),
        }),
    )?;
    Ok(())
}

/// One drain: a new deployment of the filter over `topic`, holding `n` records.
struct Drain<'a> {
    name: String,
    topic: &'a str,
    n: u64,
    batch: u32,
    guarantee: &'a str,
}

/// Drains the topic with a new deployment; returns the elapsed time.
fn drain(
    ctx: &Ctx,
    c: &rill_runtime::admin::client::Client,
    pb: &Progress,
    d: Drain<'_>,
) -> anyhow::Result<Duration> {
    let Drain {
        name,
        topic,
        n,
        batch,
        guarantee,
    } = d;
    let name = name.as_str();
    deploy(c, &ctx.wasm, name, topic, batch, guarantee)?;
    pb.phase(&format!("guarantee: {guarantee}, batch {batch}"), n);
    let t = Instant::now();
    let _: Value = c.post(&format!("/v1/deployments/{name}/resume"), &json!({}))?;
    let blue = (0..n).filter(|&i| workload::is_blue(i)).count() as u64;
    let info = poll(
        Duration::from_secs(900),
        Duration::from_millis(2),
        "the filter to drain its topic",
        || {
            let i = workload::info(c, name)?;
            pb.set(i.records_in);
            Ok((i.lag == 0 && i.records_in >= n).then_some(i))
        },
    )?;
    let elapsed = t.elapsed();
    anyhow::ensure!(
        info.records_out == blue,
        "{name} forwarded {} records, expected {blue}",
        info.records_out
    );
    let _: Value = c.post(&format!("/v1/deployments/{name}/pause"), &json!({}))?;
    Ok(elapsed)
}

pub fn run(ctx: &Ctx, pb: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let dir = ctx.tmp.path().join("guarantee");
    let host = crate::host::Host::start(&ctx.bin, &dir)?;
    let c = host.client();
    workload::create_topic(&c, "blue", 1, "never")?;
    let mut pairs = Vec::new();
    for batch in BATCHES {
        // Smaller batches mean many more invocations: fewer records keep the run short.
        let n = (ctx.records / (1000 / u64::from(batch)).max(1)).max(u64::from(batch) * 20);
        let topic = format!("events-{batch}");
        workload::create_topic(&c, &topic, ctx.partitions, "never")?;
        let per_request = (ctx.batch_records * u64::from(ctx.partitions)).min(n.max(1));
        pb.phase(&format!("guarantee: producing {n} records"), n);
        workload::produce_all(&c, &topic, n, ctx.partitions, per_request, &|d| pb.set(d))?;
        let (mut alo, mut eos) = (Duration::MAX, Duration::MAX);
        for round in 1..=ctx.rounds {
            let one = |name: String, guarantee| {
                let d = Drain {
                    name,
                    topic: &topic,
                    n,
                    batch,
                    guarantee,
                };
                drain(ctx, &c, pb, d)
            };
            let a = one(format!("alo-{batch}-{round}"), "at-least-once")?;
            let e = one(format!("eos-{batch}-{round}"), "exactly-once")?;
            alo = alo.min(a);
            eos = eos.min(e);
        }
        pairs.push(Pair {
            batch,
            records: n,
            at_least_once: n as f64 / alo.as_secs_f64(),
            exactly_once: n as f64 / eos.as_secs_f64(),
        });
    }
    for p in pairs {
        let setup = format!(
            "{} records, {} partitions, {} records per invocation, best of {}",
            p.records, ctx.partitions, p.batch, ctx.rounds
        );
        report.push(Row::new("guarantee", "filter, at-least-once", &setup).rate(p.at_least_once));
        let cost = 1.0 - p.exactly_once / p.at_least_once;
        let row = Row::new(
            "guarantee",
            "filter, exactly-once (cost vs at-least-once)",
            &setup,
        )
        .value(format!(
            "{} ({:+.1} %)",
            crate::report::rate(p.exactly_once),
            -cost * 100.0
        ));
        report.push(if p.batch == BATCHES[0] {
            row.target("cost ≤ 30 %", cost <= 0.30)
        } else {
            row
        });
    }
    Ok(())
}
