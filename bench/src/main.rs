//! `rill-bench`: end-to-end benchmarks of a real Rill host (issue 8).
//!
//! It spawns `runtime serve` processes on temp data dirs and loopback ports and measures,
//! through the admin API: (1) throughput through the reference filter against the same filter
//! compiled natively in the same run, (2) produce-to-handler latency at fixed rates, (3) one
//! deployment on 1,000 partitions and 100 deployments on one topic, (4) restart time with a
//! large log after a clean stop and after SIGKILL, (5) durable state (`state.rs`): get+put in
//! the guest against native, one key updated per record against the filter, restore of
//! 1,000,000 keys against a raw read. It prints a Markdown summary table.
//!
//! ```sh
//! cargo build --release -p rill-runtime -p rill-bench
//! target/release/rill-bench            # the full run (minutes; writes a 10 GB log)
//! target/release/rill-bench --quick    # everything small, in seconds: what CI runs
//! ```
//!
//! `--quick` judges no timing: it proves every scenario works end to end.
//!
//! `rill-bench cluster ...` is the cluster-mode bench against an Apache Kafka cluster
//! (`cluster.rs`; `bench/cluster.sh` starts the cluster and runs it).

mod avro;
mod cluster;
mod guarantee;
mod host;
mod http;
mod latency;
mod report;
mod restart;
mod scale;
mod state;
mod throughput;
mod validation;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

/// End-to-end benchmarks of a real Rill host.
#[derive(Parser, Debug)]
#[command(name = "rill-bench", version, about)]
struct Args {
    /// Everything small (seconds in all); timings are printed but not judged.
    #[arg(long)]
    quick: bool,
    /// Records for the throughput run (default 2,000,000; quick 20,000).
    #[arg(long)]
    records: Option<u64>,
    /// Partitions of the throughput topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Records per stored batch in the throughput run (per partition per produce request).
    /// The default matches the host's default `max_batch_records`, so one invocation covers
    /// whole batches; a larger value makes the guest walk a batch once per invocation that
    /// covers part of it.
    #[arg(long, default_value_t = 1000)]
    batch_records: u64,
    /// Times the handler drains the throughput topic (each a new consumer group); the best
    /// round is reported, as the native baseline reports its best of 5 (default 3; quick 1).
    #[arg(long)]
    rounds: Option<u32>,
    /// Size of the log for the restart run, in MiB (default 10,240; quick 64).
    #[arg(long)]
    restart_mib: Option<u64>,
    /// Scenarios to run: throughput, guarantee, latency, wide, many, restart, state-ops,
    /// state-e2e, state-restore, avro, validation; `state` is the three state-* (default
    /// all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The `runtime` binary (default: next to this one, or RILL_BIN).
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// The filter module (default: the one tests/build.rs built).
    #[arg(long)]
    filter: Option<PathBuf>,
    /// Where the temp data dirs go (default: the system temp dir).
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
}

/// What every scenario needs.
#[allow(missing_debug_implementations)]
pub struct Ctx {
    quick: bool,
    bin: PathBuf,
    wasm: Vec<u8>,
    tmp: tempfile::TempDir,
    parallelism: usize,
    records: u64,
    partitions: u32,
    batch_records: u64,
    rounds: u32,
    rates: Vec<u64>,
    latency_run: Duration,
    wide_partitions: u32,
    wide_records_per_partition: u64,
    deployments: u32,
    many_records: u64,
    restart_bytes: u64,
}

/// One progress bar for the whole run; each phase resets its length and message.
#[derive(Debug)]
pub struct Progress(ProgressBar);

impl Progress {
    fn phase(&self, msg: &str, len: u64) {
        self.0.set_message(msg.to_owned());
        self.0.set_length(len);
        self.0.set_position(0);
    }

    fn set(&self, pos: u64) {
        self.0.set_position(pos);
    }
}

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "cluster") {
        let args = cluster::ClusterArgs::parse_from(std::env::args_os().skip(1));
        if let Err(e) = cluster::main(args) {
            eprintln!("rill-bench cluster: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "cluster-member")
    {
        let args = cluster::MemberArgs::parse_from(std::env::args_os().skip(1));
        if let Err(e) = cluster::member_main(args) {
            eprintln!("rill-bench cluster-member: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("rill-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let q = args.quick;
    let filter = args
        .filter
        .clone()
        .unwrap_or_else(|| PathBuf::from(rill_tests::guests::FILTER));
    let tmp = match &args.tmp_dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("cannot make a temp dir")?;
    let ctx = Ctx {
        quick: q,
        bin: host::runtime_bin(args.runtime.as_deref())?,
        wasm: std::fs::read(&filter)
            .with_context(|| format!("cannot read the filter module {}", filter.display()))?,
        tmp,
        parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
        records: args.records.unwrap_or(if q { 20_000 } else { 2_000_000 }),
        partitions: args.partitions.max(1),
        batch_records: args.batch_records.max(1),
        rounds: args.rounds.unwrap_or(if q { 1 } else { 3 }).max(1),
        rates: vec![1_000, 10_000, 100_000],
        latency_run: Duration::from_millis(if q { 500 } else { 5_000 }),
        wide_partitions: if q { 200 } else { 1000 },
        wide_records_per_partition: if q { 5 } else { 100 },
        deployments: if q { 20 } else { 100 },
        many_records: if q { 1_000 } else { 100_000 },
        restart_bytes: args.restart_mib.unwrap_or(if q { 64 } else { 10_240 }) << 20,
    };
    // `--only state` runs every `state-*` scenario.
    let want = |s: &str| {
        args.only.is_empty()
            || args.only.iter().any(|o| {
                o == s
                    || s.strip_prefix(o.as_str())
                        .is_some_and(|r| r.starts_with('-'))
            })
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {msg:45} {wide_bar} {pos}/{len}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let pb = Progress(bar);
    let started = Instant::now();
    let mut report = report::Report::default();
    type Scenario = fn(&Ctx, &Progress, &mut report::Report) -> anyhow::Result<()>;
    let scenarios: [(&str, Scenario); 11] = [
        ("throughput", throughput::run),
        ("guarantee", guarantee::run),
        ("latency", latency::run),
        ("wide", scale::wide),
        ("many", scale::many),
        ("restart", restart::run),
        ("state-ops", state::engine_ops),
        ("state-e2e", state::end_to_end),
        ("state-restore", state::restore),
        ("avro", avro::run),
        ("validation", validation::run),
    ];
    for (name, f) in scenarios {
        if want(name) {
            f(&ctx, &pb, &mut report).with_context(|| format!("scenario {name} failed"))?;
        }
    }
    pb.0.finish_and_clear();
    println!(
        "rill-bench{}: {} cores, runtime {}, {:.1} s\n",
        if q { " --quick" } else { "" },
        ctx.parallelism,
        ctx.bin.display(),
        started.elapsed().as_secs_f64()
    );
    print!("{}", report.render(!q));
    if q {
        println!("\n(quick run: every scenario worked; timings are not judged)");
    }
    Ok(())
}
