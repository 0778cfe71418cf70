//! `runtime consume TOPIC`: print records, optionally as a consumer group, optionally
//! following new ones.

use std::collections::BTreeMap;

use clap::Args;

use base64::Engine as _;
use serde_json::Value;

use rill_runtime::admin::api::{CommitOffsets, Fetch, Fetched, FetchedRecord};
use rill_runtime::admin::client::Client;
use rill_runtime::schema::client::RegistryClient;
use rill_runtime::schema::{SchemaSource, SourceError};

use super::schema::RegistryArg;

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
    /// Print values and keys framed with a schema id (Confluent's wire format) decoded as
    /// JSON, with the schema from the registry (Avro, JSON Schema, Protobuf).
    #[arg(long)]
    decode: bool,
    #[command(flatten)]
    registry: RegistryArg,
}

pub fn run(client: &Client, args: ConsumeArgs) -> anyhow::Result<()> {
    let path = format!("/v1/topics/{}/fetch", args.topic);
    let mut positions: Option<BTreeMap<u32, i64>> = None;
    let mut printed = 0usize;
    let registry = args.decode.then(|| RegistryClient::new(&args.registry.url));
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
            if let Some(registry) = &registry {
                print_decoded(registry, r, args.json)?;
            } else if args.json {
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

/// A record's bytes back from the API's text or base64.
fn bytes(text: Option<&String>, b64: Option<&String>) -> Option<Vec<u8>> {
    match (text, b64) {
        (_, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
        (Some(t), None) => Some(t.as_bytes().to_vec()),
        (None, None) => None,
    }
}

/// What a key or value decodes to.
enum Decoded {
    /// Not framed: printed as before.
    Plain,
    /// Framed and decoded with this schema id.
    Json(u32, Value),
    /// Framed, but the id is unknown or the payload does not decode.
    Note(String),
}

fn decode(registry: &RegistryClient, bytes: Option<&[u8]>) -> anyhow::Result<Decoded> {
    let Some(framed) = bytes.and_then(|b| rill_schema::wire::split(b).ok()) else {
        return Ok(Decoded::Plain);
    };
    let id = framed.id;
    let schema = match registry.schema(id) {
        Ok(s) => s,
        Err(e @ (SourceError::UnknownId(_) | SourceError::Unparsable { .. })) => {
            return Ok(Decoded::Note(e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(match schema.to_json(framed.payload) {
        Ok(v) => Decoded::Json(id, v),
        Err(e) => Decoded::Note(format!("does not decode with schema id {id}: {e}")),
    })
}

/// Prints one record with framed keys and values decoded.
fn print_decoded(registry: &RegistryClient, r: &FetchedRecord, json: bool) -> anyhow::Result<()> {
    let key = bytes(r.key.as_ref(), r.key_b64.as_ref());
    let value = bytes(r.value.as_ref(), r.value_b64.as_ref());
    let dk = decode(registry, key.as_deref())?;
    let dv = decode(registry, value.as_deref())?;
    if json {
        let mut o = serde_json::to_value(r)?;
        for (field, d) in [("key", &dk), ("value", &dv)] {
            match d {
                Decoded::Plain => {}
                Decoded::Json(id, v) => {
                    o[field] = v.clone();
                    o[format!("{field}_schema_id")] = Value::from(*id);
                    o.as_object_mut().map(|m| m.remove(&format!("{field}_b64")));
                }
                Decoded::Note(n) => o[format!("{field}_note")] = Value::from(n.as_str()),
            }
        }
        outln!("{}", serde_json::to_string(&o)?)?;
        return Ok(());
    }
    let show = |d: &Decoded, text: Option<&String>, b64: Option<&String>| match d {
        Decoded::Plain => text.cloned().or_else(|| b64.map(|b| format!("base64:{b}"))),
        Decoded::Json(_, v) => Some(v.to_string()),
        Decoded::Note(n) => Some(format!("[{n}]")),
    };
    let k = match &r.key {
        None => None,
        Some(_) if r.key_b64.is_some() => show(&dk, None, r.key_b64.as_ref()),
        Some(k) => show(&dk, Some(k), None),
    };
    let v = show(&dv, r.value.as_ref(), r.value_b64.as_ref()).unwrap_or_default();
    match k {
        Some(k) => outln!("{}:{} {k} {v}", r.partition, r.offset)?,
        None => outln!("{}:{} {v}", r.partition, r.offset)?,
    }
    Ok(())
}
