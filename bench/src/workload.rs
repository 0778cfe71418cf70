//! The records, the admin API calls every scenario shares, and the native baseline.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};

use rill_runtime::admin::client::Client;
use rill_runtime::scheduler::DeploymentInfo;

const COLORS: [&str; 4] = ["red", "green", "blue", "yellow"];

/// The value of record `i`: about 100 bytes of JSON; every fourth record is "blue".
pub fn value(i: u64) -> String {
    let color = COLORS[(i % 4) as usize];
    let mut v = format!(
        r#"{{"id":{i},"user":"user-{:05}","color":"{color}","amount_cents":{},"note":"#,
        i % 100_000,
        (i * 7919) % 100_000
    );
    // Pad to 100 bytes so every record is the same size whatever its id.
    let pad = 97usize.saturating_sub(v.len());
    v.push('"');
    v.extend(std::iter::repeat_n('x', pad));
    v.push_str("\"}");
    v
}

/// Whether record `i` contains "blue" (the filter forwards exactly these).
pub fn is_blue(i: u64) -> bool {
    i % 4 == 2
}

/// Creates a topic.
pub fn create_topic(c: &Client, name: &str, partitions: u32, flush: &str) -> anyhow::Result<()> {
    let _: Value = c
        .post(
            "/v1/topics",
            &json!({"name": name, "partitions": partitions, "flush": flush}),
        )
        .with_context(|| format!("cannot create topic {name}"))?;
    Ok(())
}

/// Records `from..to` as one produce request body, record `i` to partition `i % partitions`.
pub fn produce_body(from: u64, to: u64, partitions: u32) -> Value {
    let records: Vec<Value> = (from..to)
        .map(|i| json!({"value": value(i), "partition": (i % u64::from(partitions)) as u32}))
        .collect();
    json!({ "records": records })
}

/// Produces records `0..n` with `threads` parallel producers, `per_request` records per
/// request; `progress` is called with the count produced so far.
pub fn produce_all(
    c: &Client,
    topic: &str,
    n: u64,
    partitions: u32,
    per_request: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<()> {
    let threads = 2u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let path = format!("/v1/topics/{topic}/records");
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (c, path, done) = (c.clone(), &path, &done);
                s.spawn(move || -> anyhow::Result<()> {
                    let mut from = t * per_request;
                    while from < n {
                        let to = (from + per_request).min(n);
                        let _: Value = c.post(path, &produce_body(from, to, partitions))?;
                        let total = done.fetch_add(to - from, std::sync::atomic::Ordering::Relaxed);
                        progress(total + to - from);
                        from += threads * per_request;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("producer panicked"))??;
        }
        Ok(())
    })
}

/// Deploys the filter module under `name` on `topic`.
pub fn deploy(
    c: &Client,
    wasm: &[u8],
    name: &str,
    topic: &str,
    from: &str,
    paused: bool,
) -> anyhow::Result<()> {
    let _: Value = c
        .post(
            "/v1/deployments",
            &json!({
                "name": name,
                "topic": topic,
                "from": {"kind": from},
                "outputs": ["blue"],
                "paused": paused,
                "max_batch_records": max_batch_records(),
                "wasm_b64": base64::engine::general_purpose::STANDARD.encode(wasm),
            }),
        )
        .with_context(|| format!("cannot deploy {name}"))?;
    Ok(())
}

/// `RILL_BENCH_MAX_BATCH_RECORDS`, for experiments with the records per invocation; `None`
/// leaves the host's default (1,000).
fn max_batch_records() -> Option<u32> {
    std::env::var("RILL_BENCH_MAX_BATCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// One deployment's status.
pub fn info(c: &Client, name: &str) -> anyhow::Result<DeploymentInfo> {
    Ok(c.get(&format!("/v1/deployments/{name}"))?)
}

/// Polls `f` every `every` until it returns `Some`, failing after `timeout`.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// The high watermark of every partition of a topic, summed.
pub fn topic_end(c: &Client, topic: &str) -> anyhow::Result<i64> {
    let t: Value = c.get(&format!("/v1/topics/{topic}"))?;
    Ok(t["partition_info"]
        .as_array()
        .context("topic has no partition_info")?
        .iter()
        .filter_map(|p| p["end"].as_i64())
        .sum())
}

/// The same records as [`produce_all`] sent, encoded the way the host stored them: one v2
/// batch per (request, partition).
pub fn encode_like_host(n: u64, partitions: u32, per_request: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut from = 0;
    while from < n {
        let to = (from + per_request).min(n);
        for p in 0..u64::from(partitions) {
            let values: Vec<String> = (from..to)
                .filter(|i| i % u64::from(partitions) == p)
                .map(value)
                .collect();
            if values.is_empty() {
                continue;
            }
            let records: Vec<rill_log::Record<'_>> = values
                .iter()
                .map(|v| rill_log::Record {
                    value: Some(v.as_bytes()),
                    ..Default::default()
                })
                .collect();
            out.push(rill_log::batch::encode(&records, rill_runtime::now_ms()));
        }
        from = to;
    }
    out
}

/// The filter's logic compiled natively: walk the v2 batches with the log's own reader,
/// search each value for "blue" with the same `memchr::memmem` finder the guest uses, and
/// copy each hit's key and value out (as the guest's `forward` copies into the host's emit
/// buffer). Returns the number forwarded.
pub fn native_filter(batches: &[Vec<u8>], out: &mut Vec<u8>) -> u64 {
    let finder = memchr::memmem::Finder::new(b"blue");
    let mut hits = 0;
    out.clear();
    for b in batches {
        for batch in rill_log::batch::batches(b) {
            let Ok(batch) = batch else { continue };
            for rec in batch.records() {
                let Ok(rec) = rec else { continue };
                let v = rec.value.unwrap_or_default();
                if finder.find(v).is_some() {
                    out.extend_from_slice(rec.key.unwrap_or_default());
                    out.extend_from_slice(v);
                    hits += 1;
                }
            }
        }
    }
    hits
}

/// Native records/s: the best of `runs` passes over all batches on `threads` threads (the
/// batches split between them, as the host splits partitions between its invocation slots).
pub fn native_rate(batches: &[Vec<u8>], records: u64, threads: usize, runs: usize) -> f64 {
    let chunk = batches.len().div_ceil(threads.max(1)).max(1);
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        std::thread::scope(|s| {
            for part in batches.chunks(chunk) {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(1 << 20);
                    std::hint::black_box(native_filter(part, &mut out));
                });
            }
        });
        best = best.min(t.elapsed());
    }
    records as f64 / best.as_secs_f64()
}

/// Percentile `q` (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_100_bytes_and_a_quarter_blue() {
        for i in [0, 1, 2, 3, 99_999, 1_234_567] {
            assert_eq!(value(i).len(), 100, "{}", value(i));
            assert_eq!(value(i).contains("blue"), is_blue(i));
            let _: Value = serde_json::from_str(&value(i)).expect("valid JSON");
        }
    }

    #[test]
    fn native_filter_finds_the_blue_records() {
        let batches = encode_like_host(1000, 3, 100);
        let mut out = Vec::new();
        assert_eq!(native_filter(&batches, &mut out), 250);
    }
}
