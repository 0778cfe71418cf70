//! `runtime consume TOPIC`: print records, optionally as a consumer group, optionally
//! following new ones.

use std::collections::BTreeMap;

use clap::Args;

use rill_runtime::admin::api::{CommitOffsets, Fetch, Fetched};
use rill_runtime::admin::client::Client;

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Where to start: earliest, latest, OFFSET (every partition) or @TIMESTAMP_MS.
    #[arg(long, default_value = "earliest")]
    from: String,
    /// Read as this consumer group: start at its committed offsets and commit what was printed.
    #[arg(long, short)]
    group: Option<String>,
    /// Keep waiting for new records (Ctrl-C to stop).
    #[arg(long, short)]
    follow: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    max: Option<usize>,
    /// Print each record as a JSON object (partition, offset, timestamp, key, value, headers).
    #[arg(long)]
    json: bool,
    /// Read committed, as a Kafka consumer with isolation.level=read_committed: only below
    /// the last stable offset, records of aborted transactions skipped.
    #[arg(long)]
    read_committed: bool,
}

pub fn run(client: &Client, args: ConsumeArgs) -> anyhow::Result<()> {
    let path = format!("/v1/topics/{}/fetch", args.topic);
    let mut positions: Option<BTreeMap<u32, i64>> = None;
    let mut printed = 0usize;
    loop {
        let want = args.max.map(|m| m - printed).unwrap_or(10_000).min(10_000);
        let req = Fetch {
            positions: positions.clone(),
            from: Some(args.from.clone()),
            group: args.group.clone(),
            max_records: want,
            wait_ms: if args.follow { 5_000 } else { 0 },
            read_committed: args.read_committed,
        };
        let resp: Fetched = client.post(&path, &req)?;
        for r in &resp.records {
            if args.json {
                outln!("{}", serde_json::to_string(r)?)?;
            } else {
                let value = r
                    .value
                    .clone()
                    .or_else(|| r.value_b64.as_ref().map(|b| format!("base64:{b}")));
                match &r.key {
                    Some(k) => outln!(
                        "{}:{} {k} {}",
                        r.partition,
                        r.offset,
                        value.unwrap_or_default()
                    )?,
                    None => outln!("{}:{} {}", r.partition, r.offset, value.unwrap_or_default())?,
                }
            }
        }
        printed += resp.records.len();
        if let Some(g) = &args.group
            && !resp.records.is_empty()
        {
            let commit = CommitOffsets {
                topic: args.topic.clone(),
                offsets: resp.positions.clone(),
            };
            client.post::<_, serde_json::Value>(&format!("/v1/groups/{g}/offsets"), &commit)?;
        }
        let caught_up = resp
            .positions
            .iter()
            .all(|(p, o)| resp.ends.get(p).is_none_or(|e| o >= e));
        positions = Some(resp.positions);
        if args.max.is_some_and(|m| printed >= m) || (!args.follow && caught_up) {
            break;
        }
    }
    Ok(())
}
