//! `runtime deploy handler.wasm --topic T`: validate, store and start a handler.

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine as _;
use clap::Args;

use rill_runtime::admin::api::{Deploy, LimitsPatch};
use rill_runtime::admin::client::Client;
use rill_runtime::deployment::{Guarantee, OnFailure, StartFrom};
use rill_runtime::scheduler::DeploymentInfo;

use super::topic::{parse_bytes, parse_duration_ms};

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The compiled handler (.wasm), built with `runtime build`.
    wasm: PathBuf,
    /// Topic to consume.
    #[arg(long, short)]
    topic: String,
    /// Deployment name (default: the file name without .wasm). Deploying again under the
    /// same name replaces the module and keeps the offsets and every unspecified option.
    #[arg(long, short)]
    name: Option<String>,
    /// Consumer group whose offsets it commits (default: the name; on redeploy, the current
    /// group).
    #[arg(long, short)]
    group: Option<String>,
    /// Where a new group starts: earliest, latest, OFFSET or @TIMESTAMP_MS (default:
    /// earliest).
    #[arg(long, value_parser = parse_from)]
    from: Option<StartFrom>,
    /// A topic the handler may emit to (repeatable). Without any, it may emit anywhere (on
    /// redeploy: the current list).
    #[arg(long = "output", short)]
    outputs: Vec<String>,
    /// A parameter K=V the handler reads with ctx.param (repeatable). WASI handlers see
    /// these, and only these, as their environment (on redeploy without any: the current
    /// ones).
    #[arg(long = "env", short, value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Memory cap per instance, e.g. 64MiB.
    #[arg(long, value_parser = parse_bytes)]
    memory: Option<u64>,
    /// CPU-time limit per invocation, e.g. 1s, 250ms.
    #[arg(long, value_parser = parse_duration_ms)]
    timeout: Option<u64>,
    /// Most bytes one invocation may emit, e.g. 16MiB.
    #[arg(long, value_parser = parse_bytes)]
    max_emit_bytes: Option<u64>,
    /// Most records one invocation may emit.
    #[arg(long)]
    max_emits: Option<u32>,
    /// Tries per record before --on-failure applies.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// After the last try: dlq (append to `<name>.dlq` and go on) or stop (mark failed).
    #[arg(long, value_parser = parse_on_failure)]
    on_failure: Option<OnFailure>,
    /// at-least-once (outputs may repeat after a crash) or exactly-once (outputs, state
    /// changes and the position commit as one transaction). On redeploy: the current one.
    #[arg(long, value_parser = parse_guarantee)]
    guarantee: Option<Guarantee>,
    /// Most records per invocation.
    #[arg(long)]
    batch: Option<u32>,
    /// Most bytes read per invocation, e.g. 1MiB.
    #[arg(long, value_parser = parse_bytes)]
    max_batch_bytes: Option<u64>,
    /// Wait this long for a fuller batch before invoking.
    #[arg(long)]
    linger_ms: Option<u64>,
    /// First retry delay in ms (doubles per try).
    #[arg(long)]
    backoff_ms: Option<u64>,
    /// Retry delay ceiling in ms.
    #[arg(long)]
    backoff_max_ms: Option<u64>,
    /// Deploy paused (a redeploy without it keeps the current pause state; resume with
    /// `runtime resume`).
    #[arg(long)]
    paused: bool,
    /// Replay (event sourcing): forget the group's offsets and the deployment's state, and
    /// run it again from the start of its topic, rebuilding its state. Its outputs are
    /// emitted again (output topics are not truncated). Shows progress with an ETA until it
    /// has caught up with the records that existed when it started.
    #[arg(long)]
    reset: bool,
    /// With --reset: return once deployed instead of showing progress.
    #[arg(long, requires = "reset")]
    no_wait: bool,
}

fn parse_from(s: &str) -> Result<StartFrom, String> {
    s.parse()
}

fn parse_on_failure(s: &str) -> Result<OnFailure, String> {
    s.parse()
}

fn parse_guarantee(s: &str) -> Result<Guarantee, String> {
    s.parse()
}

/// `K=V`.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("invalid '{s}' (want KEY=VALUE)")),
    }
}

pub fn run(client: &Client, args: DeployArgs) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.wasm)
        .with_context(|| format!("cannot read {}", args.wasm.display()))?;
    let name = match args.name {
        Some(n) => n,
        None => args
            .wasm
            .file_stem()
            .map(|s| s.to_string_lossy().replace('_', "-"))
            .context("cannot derive a name from the file; pass --name")?,
    };
    let limits = LimitsPatch {
        memory_bytes: args.memory,
        cpu_time: args.timeout,
        max_emit_bytes: args.max_emit_bytes,
        max_emits: args.max_emits,
    };
    let max_batch_bytes = args
        .max_batch_bytes
        .map(usize::try_from)
        .transpose()
        .context("--max-batch-bytes is too large")?;
    let req = Deploy {
        name,
        topic: args.topic,
        group: args.group,
        from: args.from,
        // Nothing given means "unchanged" on a redeploy (and "none" on a first deploy).
        outputs: (!args.outputs.is_empty()).then_some(args.outputs),
        env: (!args.env.is_empty()).then_some(args.env),
        limits: (limits != LimitsPatch::default()).then_some(limits),
        max_attempts: args.max_attempts,
        on_failure: args.on_failure,
        guarantee: args.guarantee,
        max_batch_records: args.batch,
        max_batch_bytes,
        linger_ms: args.linger_ms,
        backoff_initial_ms: args.backoff_ms,
        backoff_max_ms: args.backoff_max_ms,
        paused: args.paused.then_some(true),
        reset: args.reset,
        wasm_b64: base64::engine::general_purpose::STANDARD.encode(&wasm),
    };
    let info: DeploymentInfo = client.post("/v1/deployments", &req)?;
    outln!(
        "deployed {} on topic {} (group {}, {} partition(s), {}, module {})",
        info.spec.name,
        info.spec.topic,
        info.spec.group,
        info.partitions.len(),
        info.spec.guarantee,
        &info.spec.module_hash[..12.min(info.spec.module_hash.len())]
    )?;
    if args.reset && !args.no_wait {
        replay_progress(client, &info)?;
    }
    Ok(())
}

/// Follows a replay until every partition's committed offset reaches the end it had when
/// the replay started, drawing a progress bar with the rate and an ETA on stderr (a line
/// every few seconds when stderr is not a terminal).
fn replay_progress(client: &Client, started: &DeploymentInfo) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    use std::time::{Duration, Instant};

    let targets: Vec<i64> = started.partitions.iter().map(|p| p.end).collect();
    let total: i64 = targets.iter().sum();
    let path = format!("/v1/deployments/{}", started.spec.name);
    let tty = std::io::stderr().is_terminal();
    let begin = Instant::now();
    let mut last_line = Instant::now();
    loop {
        let info: DeploymentInfo = client.get(&path)?;
        let done: i64 = info
            .partitions
            .iter()
            .zip(&targets)
            .map(|(p, &t)| p.committed.unwrap_or(0).clamp(0, t))
            .sum();
        let elapsed = begin.elapsed().as_secs_f64();
        let rate = done as f64 / elapsed.max(0.001);
        let finished = done >= total;
        let line = progress_line(done, total, rate, finished);
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
        } else if finished || last_line.elapsed() >= Duration::from_secs(5) {
            let _ = writeln!(err, "{line}");
            last_line = Instant::now();
        }
        if finished {
            if tty {
                let _ = writeln!(err);
            }
            outln!(
                "replayed {} records in {:.1}s",
                total,
                begin.elapsed().as_secs_f64()
            )?;
            return Ok(());
        }
        if info.state == "failed" {
            if tty {
                let _ = writeln!(err);
            }
            anyhow::bail!(
                "the replay stopped: a partition failed ({}); see `runtime logs {}`",
                info.last_error.unwrap_or_default(),
                info.spec.name
            );
        }
        drop(err);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `[#########...........]  45%  123456/270000 records  61234 rec/s  ETA 2s`
fn progress_line(done: i64, total: i64, rate: f64, finished: bool) -> String {
    const WIDTH: usize = 30;
    let frac = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = ((frac * WIDTH as f64) as usize).min(WIDTH);
    let eta = if finished {
        "done".to_owned()
    } else if rate > 0.0 {
        format!("ETA {}s", ((total - done) as f64 / rate).ceil() as u64)
    } else {
        "ETA ?".to_owned()
    };
    format!(
        "[{}{}] {:>3}%  {done}/{total} records  {:.0} rec/s  {eta}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        (frac * 100.0) as u32,
        rate
    )
}
