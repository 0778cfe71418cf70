//! `rill-bench cluster`: cluster mode (issue 12) on an Apache Kafka cluster.
//!
//! ```sh
//! bench/cluster.sh                 # starts a one-node Apache Kafka, runs this, stops it
//! target/release/rill-bench cluster --bootstrap 127.0.0.1:PORT [--quick] [--records N]
//!     [--partitions P] [--hosts 1,2,3] [--tries N] [--only throughput,rebalance]
//! ```
//!
//! - **Throughput**: N workload records are preloaded into a P-partition input topic. For
//!   each host count H, one round runs the native baseline (H members in this process,
//!   `native.rs`) and one runs the Wasm filter on H `runtime serve --kafka-cluster` hosts;
//!   each consumes the whole topic from the earliest offset as a new group. Both sides join
//!   the group and fetch ahead before the clock starts (Rill: the deployment is deployed
//!   paused and the group is stable with H members; native: the same, its members hold what
//!   they fetch). The clock starts at `resume` (sent to every host at once) / the native
//!   start signal, and stops when the bench sees the group's committed offsets at the end
//!   of every partition (lag 0; polled every 10 ms) and all N/4 outputs in the output topic.
//! - **Rebalance** (`rebalance.rs`): kill -9 one of H hosts, and start it again.

pub(crate) mod kafka;
mod native;
mod rebalance;

pub use native::{MemberArgs, member_main};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use crate::host::{self, Host};
use crate::report::{self, Report, Row};
use crate::workload;

/// Cluster mode against an Apache Kafka cluster: throughput through the filter with 1, 2
/// and 3 hosts against a native rdkafka baseline, and rebalance times.
#[derive(Parser, Debug)]
#[command(name = "rill-bench cluster", version, about)]
pub struct ClusterArgs {
    /// The Kafka cluster (bootstrap servers); bench/cluster.sh starts one.
    #[arg(long, env = "RILL_BENCH_KAFKA")]
    bootstrap: String,
    /// Everything small; timings are printed but not judged.
    #[arg(long)]
    quick: bool,
    /// Records for the throughput runs (default 1,000,000; quick 20,000).
    #[arg(long)]
    records: Option<u64>,
    /// Partitions of the input topics (at least the largest host count).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Host counts for the throughput runs (default 1,2,3; quick 1,2).
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<u32>,
    /// Rounds per host count (native and Rill alternate); the best of each is reported
    /// (default 2; quick 1).
    #[arg(long)]
    rounds: Option<u32>,
    /// Kills and joins measured in the rebalance scenario (default 20; quick 2).
    #[arg(long)]
    tries: Option<u32>,
    /// Hosts in the rebalance scenario: one of them is killed and started again.
    #[arg(long, default_value_t = 3)]
    rebalance_hosts: u32,
    /// Records per batch of the native baseline (cluster mode's default
    /// `max_batch_records` is 1,000).
    #[arg(long, default_value_t = 1000)]
    native_batch: usize,
    /// Time given to both sides to fetch ahead after their group is stable, in ms.
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    /// Scenarios: throughput, rebalance (default both).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// A librdkafka property for every host's clients, KEY=VALUE (repeatable), passed as
    /// `runtime serve --cluster-property` (e.g. linger.ms=1 to try another producer linger).
    #[arg(long = "cluster-property", value_name = "KEY=VALUE")]
    cluster_properties: Vec<String>,
    /// The Kafka broker's process id, to report its CPU time too.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// The `runtime` binary (default: next to this one, or RILL_BIN).
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// The filter module (default: the one tests/build.rs built).
    #[arg(long)]
    filter: Option<PathBuf>,
    /// Where the hosts' data dirs go (default: the system temp dir).
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
}

/// What the scenarios share.
pub struct Cx {
    args: ClusterArgs,
    bin: PathBuf,
    wasm: Vec<u8>,
    tmp: tempfile::TempDir,
    /// A prefix unique to this run for topic and group names.
    run: String,
    /// Hosts attached to the cluster, in start order.
    hosts: Vec<Host>,
}

impl Cx {
    fn log(&self, msg: &str) {
        eprintln!("[cluster {:>7.1} s] {msg}", self.elapsed());
    }

    fn elapsed(&self) -> f64 {
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    }

    /// Starts hosts until `n` run (host ids `rill-1`, `rill-2`, ...), or kills the extra.
    fn ensure_hosts(&mut self, n: usize) -> anyhow::Result<()> {
        while self.hosts.len() > n {
            let mut h = self.hosts.pop().expect("a host");
            h.stop()?;
        }
        while self.hosts.len() < n {
            let i = self.hosts.len() + 1;
            let h = Host::start_with(
                &self.bin,
                &self.tmp.path().join(format!("host-{i}")),
                host_args(&self.args.bootstrap, i, &self.args.cluster_properties),
            )?;
            self.log(&format!("host rill-{i} ready at {}", h.admin));
            self.hosts.push(h);
        }
        Ok(())
    }

    fn hosts_cpu(&self, n: usize) -> Duration {
        self.hosts[..n].iter().filter_map(Host::cpu_time).sum()
    }

    fn broker_cpu(&self) -> Option<Duration> {
        self.args.broker_pid.and_then(host::proc_cpu_time)
    }
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// `serve` arguments of host `i` in cluster mode: a fixed host id (so a restarted host is
/// the same one) and the session timeout the contract recommends for tests.
fn host_args(bootstrap: &str, i: usize, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--kafka-cluster",
        bootstrap,
        "--cluster-host-id",
        &format!("rill-{i}"),
        "--cluster-property",
        "session.timeout.ms=6000",
        "--cluster-property",
        "heartbeat.interval.ms=1000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for p in extra {
        args.push("--cluster-property".to_owned());
        args.push(p.clone());
    }
    args
}

/// Entry point of `rill-bench cluster`.
pub fn main(args: ClusterArgs) -> anyhow::Result<()> {
    START.get_or_init(Instant::now);
    let filter = args
        .filter
        .clone()
        .unwrap_or_else(|| PathBuf::from(rill_tests::guests::FILTER));
    let tmp = match &args.tmp_dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("cannot make a temp dir")?;
    let run = format!(
        "cb{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() % 1_000_000)
    );
    let mut cx = Cx {
        bin: host::runtime_bin(args.runtime.as_deref())?,
        wasm: std::fs::read(&filter)
            .with_context(|| format!("cannot read the filter module {}", filter.display()))?,
        tmp,
        run,
        hosts: Vec::new(),
        args,
    };
    let want = |s: &str| cx.args.only.is_empty() || cx.args.only.iter().any(|o| o == s);
    let (do_throughput, do_rebalance) = (want("throughput"), want("rebalance"));
    let started = Instant::now();
    let mut report = Report::default();
    let mut result = Ok(());
    if do_throughput {
        result = throughput(&mut cx, &mut report).context("scenario throughput failed");
    }
    if do_rebalance && result.is_ok() {
        result = rebalance::run(&mut cx, &mut report).context("scenario rebalance failed");
    }
    for h in &mut cx.hosts {
        let _ = h.stop();
    }
    let q = cx.args.quick;
    println!(
        "rill-bench cluster{}: Kafka at {}, {} cores, runtime {}, {:.1} s\n",
        if q { " --quick" } else { "" },
        cx.args.bootstrap,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        cx.bin.display(),
        started.elapsed().as_secs_f64()
    );
    print!("{}", report.render(!q));
    if q && result.is_ok() {
        println!("\n(quick run: every scenario worked; timings are not judged)");
    }
    result
}

/// One timed pass over the input topic.
#[derive(Debug, Clone, Copy)]
struct Pass {
    elapsed: Duration,
    /// CPU of the side's own processes (the hosts; or this bench process for native).
    cpu: Duration,
    broker_cpu: Option<Duration>,
    /// Records found in the output topic for this pass.
    outputs: i64,
}

fn throughput(cx: &mut Cx, report: &mut Report) -> anyhow::Result<()> {
    let q = cx.args.quick;
    let n = cx
        .args
        .records
        .unwrap_or(if q { 20_000 } else { 1_000_000 });
    let p = cx.args.partitions;
    let mut counts = cx.args.hosts.clone();
    if counts.is_empty() {
        counts = if q { vec![1, 2] } else { vec![1, 2, 3] };
    }
    if let Some(&max) = counts.iter().max()
        && max > p
    {
        bail!("{max} hosts need at least {max} partitions (--partitions {p})");
    }
    let rounds = cx.args.rounds.unwrap_or(if q { 1 } else { 2 }).max(1);
    let bootstrap = cx.args.bootstrap.clone();
    let input = format!("{}-events", cx.run);
    let native_out = format!("{}-blue-native", cx.run);
    kafka::create_topic(&bootstrap, &input, p as i32)?;
    kafka::create_topic(&bootstrap, &native_out, 1)?;
    cx.log(&format!(
        "preloading {n} records into {input} ({p} partitions)"
    ));
    let preload_rate = kafka::preload(&bootstrap, &input, n, p, &|_| {})?;
    let probe = kafka::Probe::new(&bootstrap)?;
    let ends = probe.ends(&input, p)?;
    anyhow::ensure!(
        ends.iter().sum::<i64>() == n as i64,
        "the input topic holds {} records, not {n}",
        ends.iter().sum::<i64>()
    );
    let blue = (0..n).filter(|&i| workload::is_blue(i)).count() as i64;
    report.push(
        Row::new(
            "cluster throughput",
            "preload (rdkafka producer, acks=1, bench process)",
            &format!("{n} records, {p} partitions"),
        )
        .rate(preload_rate),
    );
    let (mut native_1, mut rill_1) = (None, None);
    for &h in &counts {
        let h = h as usize;
        let mut best_native: Option<Pass> = None;
        let mut best_rill: Option<Pass> = None;
        for r in 1..=rounds {
            let group = format!("{}-native-h{h}-r{r}", cx.run);
            let pass = native_pass(cx, &input, &native_out, &group, h, &ends, blue)?;
            cx.log(&format!(
                "native, {h} members, round {r}: {:.3} s, {}",
                pass.elapsed.as_secs_f64(),
                report::rate(n as f64 / pass.elapsed.as_secs_f64())
            ));
            if best_native.is_none_or(|b| pass.elapsed < b.elapsed) {
                best_native = Some(pass);
            }
            cx.ensure_hosts(h)?;
            let name = format!("{}-filter-h{h}-r{r}", cx.run);
            let pass = rill_pass(cx, &input, &name, h, &ends, blue)?;
            cx.log(&format!(
                "Rill, {h} hosts, round {r}: {:.3} s, {}",
                pass.elapsed.as_secs_f64(),
                report::rate(n as f64 / pass.elapsed.as_secs_f64())
            ));
            if best_rill.is_none_or(|b| pass.elapsed < b.elapsed) {
                best_rill = Some(pass);
            }
        }
        let (nat, rill) = (best_native.expect("a round"), best_rill.expect("a round"));
        let what = format!("{n} records, {p} partitions, best of {rounds}");
        let rate = |x: &Pass| n as f64 / x.elapsed.as_secs_f64();
        let cpu = |x: &Pass, who: &str| {
            let mut s = format!(
                "{:.2} cores, {:.0} ns/record ({who})",
                x.cpu.as_secs_f64() / x.elapsed.as_secs_f64(),
                x.cpu.as_secs_f64() * 1e9 / n as f64
            );
            if let Some(b) = x.broker_cpu {
                s += &format!(
                    "; broker {:.2} cores, {:.0} ns/record",
                    b.as_secs_f64() / x.elapsed.as_secs_f64(),
                    b.as_secs_f64() * 1e9 / n as f64
                );
            }
            s
        };
        let plural = if h == 1 { "" } else { "s" };
        report.push(
            Row::new(
                "cluster throughput",
                &format!(
                    "Wasm filter, {h} Rill host{plural} (outputs {})",
                    rill.outputs
                ),
                &what,
            )
            .rate(rate(&rill)),
        );
        report.push(
            Row::new(
                "cluster throughput",
                &format!("  CPU, {h} host{plural}"),
                &what,
            )
            .value(cpu(&rill, "hosts")),
        );
        report.push(
            Row::new(
                "cluster throughput",
                &format!(
                    "native rdkafka filter, {h} member{plural} (outputs {})",
                    nat.outputs
                ),
                &what,
            )
            .rate(rate(&nat)),
        );
        report.push(
            Row::new("cluster throughput", &format!("  CPU, native {h}"), &what)
                .value(cpu(&nat, "bench process")),
        );
        let ratio = rate(&rill) / rate(&nat);
        let mut row = Row::new(
            "cluster throughput",
            &format!("Rill {h} / native {h}"),
            &what,
        )
        .value(format!("{ratio:.2}×"));
        if h == 1 {
            row = row.target("≥ 0.8×", ratio >= 0.8);
            native_1 = Some(rate(&nat));
        }
        report.push(row);
        if h > 1
            && let Some(n1) = native_1
        {
            report.push(
                Row::new("cluster throughput", &format!("Rill {h} / native 1"), &what)
                    .value(format!("{:.2}×", rate(&rill) / n1)),
            );
        }
        if h == 1 {
            rill_1 = Some(rate(&rill));
        }
    }
    // A host runs one worker per partition, each with its own produce-await-commit cycle;
    // one native member runs one cycle. This baseline runs one member per partition.
    let pm = p as usize;
    if !counts.contains(&p) {
        let mut best: Option<Pass> = None;
        for r in 1..=rounds {
            let group = format!("{}-native-p{pm}-r{r}", cx.run);
            let pass = native_pass(cx, &input, &native_out, &group, pm, &ends, blue)?;
            cx.log(&format!(
                "native, {pm} members (one per partition), round {r}: {:.3} s, {}",
                pass.elapsed.as_secs_f64(),
                report::rate(n as f64 / pass.elapsed.as_secs_f64())
            ));
            if best.is_none_or(|b| pass.elapsed < b.elapsed) {
                best = Some(pass);
            }
        }
        let nat = best.expect("a round");
        let what = format!("{n} records, {p} partitions, best of {rounds}");
        let native_rate = n as f64 / nat.elapsed.as_secs_f64();
        report.push(
            Row::new(
                "cluster throughput",
                &format!(
                    "native rdkafka filter, {pm} members: one cycle per partition, as a host's workers (outputs {})",
                    nat.outputs
                ),
                &what,
            )
            .rate(native_rate),
        );
        if let Some(r1) = rill_1 {
            report.push(
                Row::new(
                    "cluster throughput",
                    &format!("Rill 1 / native {pm}"),
                    &what,
                )
                .value(format!("{:.2}×", r1 / native_rate)),
            );
        }
    }
    Ok(())
}

/// Waits until `group` is stable with `members` members covering every partition.
fn wait_settled(
    probe: &kafka::Probe,
    group: &str,
    topic: &str,
    members: usize,
    partitions: u32,
    abort: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    workload::poll(
        Duration::from_secs(180),
        Duration::from_millis(20),
        &format!("group {group} to be stable with {members} members"),
        || {
            anyhow::ensure!(!abort(), "a member of {group} failed");
            probe
                .settled(group, topic, members, partitions)
                .map(|ok| ok.then_some(()))
        },
    )
}

/// Polls (every 10 ms) until `group` committed `ends` and the output topic grew by `want`
/// records past `out0`; returns the output growth.
fn wait_drained(
    probe: &kafka::Probe,
    committed: &kafka::Committed,
    ends: &[i64],
    output: &str,
    out0: i64,
    want: i64,
    abort: &dyn Fn() -> bool,
) -> anyhow::Result<i64> {
    // When the first output shows (the side's start-up after the clock started), for the
    // log line.
    let t = Instant::now();
    let mut first: Option<Duration> = None;
    let out = workload::poll(
        Duration::from_secs(1800),
        Duration::from_millis(10),
        "the group to reach the end of the input",
        || {
            anyhow::ensure!(!abort(), "a member failed");
            let out = probe.ends(output, 1)?[0] - out0;
            if out > 0 && first.is_none() {
                first = Some(t.elapsed());
            }
            if committed.get()? != ends {
                return Ok(None);
            }
            Ok((out >= want).then_some(out))
        },
    )?;
    eprintln!(
        "  (first output {} after the start, all done after {})",
        crate::report::time(first.unwrap_or_default()),
        crate::report::time(t.elapsed())
    );
    Ok(out)
}

fn native_pass(
    cx: &Cx,
    input: &str,
    output: &str,
    group: &str,
    members: usize,
    ends: &[i64],
    blue: i64,
) -> anyhow::Result<Pass> {
    let bootstrap = &cx.args.bootstrap;
    let p = cx.args.partitions;
    let probe = kafka::Probe::new(bootstrap)?;
    let committed = kafka::Committed::new(bootstrap, group, input, p)?;
    let out0 = probe.ends(output, 1)?[0];
    let m = native::Members::spawn(
        &native::MemberSpec {
            bootstrap: bootstrap.clone(),
            group: group.to_owned(),
            input: input.to_owned(),
            output: output.to_owned(),
            batch: cx.args.native_batch.max(1),
            prefix: "native".to_owned(),
        },
        members,
    );
    let result: anyhow::Result<Pass> = (|| {
        wait_settled(&probe, group, input, members, p, &|| m.failed())?;
        std::thread::sleep(Duration::from_millis(cx.args.settle_ms));
        let me = std::process::id();
        let (cpu0, b0) = (host::proc_cpu_time(me), cx.broker_cpu());
        let t = Instant::now();
        m.start();
        let outputs = wait_drained(&probe, &committed, ends, output, out0, blue, &|| m.failed())?;
        let elapsed = t.elapsed();
        let cpu = host::proc_cpu_time(me)
            .zip(cpu0)
            .map_or(Duration::ZERO, |(b, a)| b.saturating_sub(a));
        let broker_cpu = cx.broker_cpu().zip(b0).map(|(b, a)| b.saturating_sub(a));
        Ok(Pass {
            elapsed,
            cpu,
            broker_cpu,
            outputs,
        })
    })();
    cx.log(&format!("native breakdown: {}", m.control.breakdown()));
    let stopped = m.stop();
    let pass = result?;
    stopped?;
    Ok(pass)
}

fn rill_pass(
    cx: &Cx,
    input: &str,
    name: &str,
    hosts: usize,
    ends: &[i64],
    blue: i64,
) -> anyhow::Result<Pass> {
    let bootstrap = &cx.args.bootstrap;
    let p = cx.args.partitions;
    let c = cx.hosts[0].client();
    workload::deploy(&c, &cx.wasm, name, input, "earliest", true)?;
    let probe = kafka::Probe::new(bootstrap)?;
    let committed = kafka::Committed::new(bootstrap, name, input, p)?;
    let out0 = probe.ends("blue", 1)?[0];
    wait_settled(&probe, name, input, hosts, p, &|| false)?;
    std::thread::sleep(Duration::from_millis(cx.args.settle_ms));
    let (cpu0, b0) = (cx.hosts_cpu(hosts), cx.broker_cpu());
    let t = Instant::now();
    // Resume on every host at once: each applies it before answering, so the catalog's
    // propagation between hosts is not part of the figure.
    std::thread::scope(|s| -> anyhow::Result<()> {
        let calls: Vec<_> = cx.hosts[..hosts]
            .iter()
            .map(|h| {
                let c = h.client();
                s.spawn(move || -> anyhow::Result<()> {
                    let _: serde_json::Value = c.post(
                        &format!("/v1/deployments/{name}/resume"),
                        &serde_json::json!({}),
                    )?;
                    Ok(())
                })
            })
            .collect();
        for call in calls {
            call.join()
                .map_err(|_| anyhow::anyhow!("resume panicked"))??;
        }
        Ok(())
    })?;
    let outputs = wait_drained(&probe, &committed, ends, "blue", out0, blue, &|| false)?;
    let elapsed = t.elapsed();
    let cpu = cx.hosts_cpu(hosts).saturating_sub(cpu0);
    let broker_cpu = cx.broker_cpu().zip(b0).map(|(b, a)| b.saturating_sub(a));
    // Invocations (each one commit to the group) and their time in the guest, from every
    // host's /metrics.
    let (mut invocations, mut guest_s) = (0.0, 0.0);
    for h in &cx.hosts[..hosts] {
        let text = h.client().get_text("/metrics").unwrap_or_default();
        let label = format!("{{deployment=\"{name}\"}} ");
        for l in text.lines() {
            if let Some(v) = l.strip_prefix(&format!("rill_invocation_seconds_count{label}")) {
                invocations += v.trim().parse::<f64>().unwrap_or(0.0);
            } else if let Some(v) = l.strip_prefix(&format!("rill_invocation_seconds_sum{label}")) {
                guest_s += v.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    let n: i64 = ends.iter().sum();
    // Per invocation per invocation thread, assuming one invocation thread per core (the
    // default until main d9e9dab; four per core in cluster mode since).
    cx.log(&format!(
        "Rill breakdown: {invocations} invocations (avg {:.0} records), {guest_s:.2} s in invocations; {:.2} ms of wall time per invocation per core",
        n as f64 / invocations.max(1.0),
        elapsed.as_secs_f64() * 1e3 * (hosts * std::thread::available_parallelism().map_or(1, |n| n.get())) as f64 / invocations.max(1.0)
    ));
    let info = workload::info(&c, name)?;
    if info.errors > 0 {
        bail!(
            "the deployment had {} failed invocations: {:?}",
            info.errors,
            info.last_error
        );
    }
    c.delete(&format!("/v1/deployments/{name}"))
        .with_context(|| format!("cannot undeploy {name}"))?;
    Ok(Pass {
        elapsed,
        cpu,
        broker_cpu,
        outputs,
    })
}
