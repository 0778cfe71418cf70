//! `runtime test handler.wasm --input records.jsonl`: run a handler locally through the same
//! engine the host uses, over records from a file, and print what it emitted and logged.
//! No host is needed.
//!
//! Input: one record per line. A line that is a JSON object whose keys are all among
//! `key`, `value`, `headers`, `timestamp` (and that has `value`) describes a record:
//! `{"key":"k1","value":{"order_id":1},"headers":{"h":"v"},"timestamp":1700000000000}`.
//! Any other line is the record's value. A value (or key) that is a JSON string is used as
//! its text; any other JSON is used as its serialized text; `null` is a null value.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rill_engine::{Engine, EngineConfig, InstanceConfig, Limits, Outcome};
use serde_json::Value;

/// Run a handler locally over records from a JSONL file.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The handler's .wasm file.
    pub wasm: PathBuf,
    /// Records, one JSON value or record object per line.
    #[arg(long, short)]
    pub input: PathBuf,
    /// A deploy-time parameter, KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
    /// Partition number the handler sees.
    #[arg(long, default_value_t = 0)]
    pub partition: u32,
    /// Restrict emits to these topics, as a deployment's outputs would (repeatable).
    #[arg(long = "output")]
    pub outputs: Vec<String>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got '{s}'"))
}

/// One input record, owned.
#[derive(Debug, Default)]
struct Input {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: Option<i64>,
}

fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

fn parse_line(line: &str) -> anyhow::Result<Input> {
    let v: Value = serde_json::from_str(line)?;
    const FIELDS: [&str; 4] = ["key", "value", "headers", "timestamp"];
    let envelope = v
        .as_object()
        .filter(|o| o.contains_key("value") && o.keys().all(|k| FIELDS.contains(&k.as_str())));
    let Some(o) = envelope else {
        return Ok(Input {
            value: bytes_of(&v),
            ..Input::default()
        });
    };
    let headers = match o.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h.iter().map(|(k, v)| (k.clone(), bytes_of(v))).collect(),
        Some(_) => bail!("`headers` must be an object"),
    };
    let timestamp = match o.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(t) => Some(
            t.as_i64()
                .context("`timestamp` must be an integer (ms since the epoch)")?,
        ),
    };
    Ok(Input {
        key: o.get("key").and_then(bytes_of),
        value: o.get("value").and_then(bytes_of),
        headers,
        timestamp,
    })
}

fn show(b: Option<&[u8]>) -> String {
    match b {
        None => "null".into(),
        Some(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Runs the handler and prints its emits and logs; fails if the handler failed.
pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let wasm =
        std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let mut inputs = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        inputs
            .push(parse_line(line).with_context(|| format!("{}:{}", args.input.display(), i + 1))?);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let headers: Vec<Vec<rill_log::Header<'_>>> = inputs
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .map(|(k, v)| rill_log::Header {
                    key: k,
                    value: v.as_deref(),
                })
                .collect()
        })
        .collect();
    let records: Vec<rill_log::Record<'_>> = inputs
        .iter()
        .zip(&headers)
        .map(|(r, h)| rill_log::Record {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: h,
            timestamp_ms: r.timestamp,
        })
        .collect();
    // One batch at offset 0, exactly as the log would store it (line N is offset N-1).
    let batch = rill_log::batch::encode(&records, now);

    let engine = Engine::new(EngineConfig {
        max_instances: 4,
        ..EngineConfig::default()
    })?;
    let handler = engine
        .load(&wasm)
        .with_context(|| format!("{} rejected", args.wasm.display()))?;
    let mut cfg = InstanceConfig::new("test", args.partition);
    cfg.params = args.env;
    cfg.outputs = (!args.outputs.is_empty()).then_some(args.outputs);
    cfg.limits = Limits::default();
    let mut instance = handler.instantiate(cfg)?;
    let inv = instance.invoke(&batch, 0, i64::MAX);

    for l in &inv.logs {
        let at = l.offset.map(|o| format!(" offset={o}")).unwrap_or_default();
        outln!("log  {:<5}{at} {}", l.level.as_str(), l.message)?;
    }
    for e in inv.emits.iter() {
        let headers: String = e
            .headers()
            .map(|(k, v)| format!(" {k}={}", show(v)))
            .collect();
        outln!(
            "emit {} key={} value={}{}",
            e.topic,
            show(e.key),
            show(e.value),
            if headers.is_empty() {
                String::new()
            } else {
                format!(" headers:{headers}")
            }
        )?;
    }
    outln!(
        "{} records in, {} emitted, outcome {}, {:.3} ms",
        inputs.len(),
        inv.emits.len(),
        inv.outcome.kind(),
        inv.elapsed.as_secs_f64() * 1e3
    )?;
    match inv.outcome {
        Outcome::Ok => Ok(()),
        other => bail!("handler failed: {other}"),
    }
}
