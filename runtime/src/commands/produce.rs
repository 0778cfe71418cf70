//! `runtime produce TOPIC`: one record per input line.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use rill_runtime::admin::api::{Produce, ProduceRecord, Produced};
use rill_runtime::admin::client::Client;

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Topic to append to.
    topic: String,
    /// Key for every record (records are then placed by key, like Kafka's partitioner).
    #[arg(long, short)]
    key: Option<String>,
    /// Split each line at the first occurrence of this separator into key and value.
    #[arg(long, conflicts_with = "key")]
    key_separator: Option<String>,
    /// Append every record to this partition.
    #[arg(long, short)]
    partition: Option<u32>,
    /// Read lines from this file instead of stdin.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// A header K=V on every record (repeatable).
    #[arg(long = "header", short = 'H', value_parser = super::deploy::parse_kv)]
    headers: Vec<(String, String)>,
    /// Records per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
}

pub fn run(client: &Client, args: ProduceArgs) -> anyhow::Result<()> {
    let (input, total_bytes): (Box<dyn BufRead>, Option<u64>) = match &args.file {
        Some(path) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(BufReader::with_capacity(1 << 20, f)), len)
        }
        None => (Box::new(BufReader::new(std::io::stdin())), None),
    };
    let headers: std::collections::BTreeMap<_, _> = args.headers.iter().cloned().collect();
    let show_progress = std::io::stderr().is_terminal() && total_bytes.is_some_and(|b| b > 1 << 20);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(args.batch);
    let (mut sent, mut bytes_read) = (0u64, 0u64);
    let mut first: Option<(u32, i64)> = None;
    let mut flush = |batch: &mut Vec<ProduceRecord>, sent: &mut u64| -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let req = Produce {
            records: std::mem::take(batch),
        };
        let n = req.records.len() as u64;
        let resp: Produced = client
            .post(&format!("/v1/topics/{}/records", args.topic), &req)
            .with_context(|| {
                format!("produce to '{}' failed after {} records", args.topic, *sent)
            })?;
        first = first.or(resp.offsets.first().copied());
        *sent += n;
        Ok(())
    };
    for line in input.lines() {
        let line = line.context("cannot read input")?;
        bytes_read += line.len() as u64 + 1;
        if line.is_empty() {
            continue;
        }
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_owned()), v.to_owned()),
                None => (None, line),
            },
            None => (args.key.clone(), line),
        };
        batch.push(ProduceRecord {
            key,
            value: Some(value),
            partition: args.partition,
            headers: headers.clone(),
            ..ProduceRecord::default()
        });
        if batch.len() >= args.batch {
            flush(&mut batch, &mut sent)?;
            if show_progress {
                let total = total_bytes.unwrap_or(1).max(1);
                eprint!(
                    "\r{:>5.1}%  {sent} records  {:.0} records/s ",
                    bytes_read as f64 * 100.0 / total as f64,
                    sent as f64 / started.elapsed().as_secs_f64().max(1e-9)
                );
                let _ = std::io::stderr().flush();
            }
        }
    }
    flush(&mut batch, &mut sent)?;
    if show_progress {
        eprintln!();
    }
    match first {
        Some((p, o)) if sent == 1 => outln!(
            "produced 1 record to {} (partition {p}, offset {o})",
            args.topic
        )?,
        _ => outln!(
            "produced {sent} records to {} in {:.2}s",
            args.topic,
            started.elapsed().as_secs_f64()
        )?,
    }
    Ok(())
}
