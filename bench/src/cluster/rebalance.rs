//! Rebalance times: one of H cluster-mode hosts is killed with SIGKILL, then started again.
//!
//! Setup: a P-partition topic, empty, and the filter deployed on it (from `earliest`) on H
//! hosts with `session.timeout.ms=6000`, `heartbeat.interval.ms=1000`. A *probe round* is
//! one record per partition, each containing `blue` and a marker unique to the round; the
//! bench watches the output topic `blue` for the markers. Before every try the group is
//! stable with H members that together own every partition, and a probe round has gone
//! through.
//!
//! - **Kill**: t0 is just before SIGKILL of the last host; a probe round is produced right
//!   after it. The figure ends when the last of the round's P outputs is read from `blue`:
//!   the partitions of the dead member were reassigned to the survivors (after the session
//!   timeout: nothing tells Kafka of the death sooner) and their probes were processed.
//!   Probes of the survivors' own partitions are processed at once.
//! - **Join**: t0 is the spawn of the same host again (same host id, same data dir). The
//!   bench produces a probe round every 20 ms and polls the new host's deployment every
//!   20 ms. The figure ends when the first probe round produced after the new host showed a
//!   processed record has all P outputs in `blue`: the new member owns partitions and
//!   processes, and every partition (those that moved, and the rest) is owned and
//!   processing again. Also reported: spawn → the ready line, and spawn → the new host's
//!   first processed record.
//!
//! The native baseline runs the same tries on H native members (`native.rs`), each a
//! `rill-bench cluster-member` process with the same group settings, on a topic of its own:
//! what Kafka's group protocol alone costs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::producer::{BaseRecord, Producer};

use super::kafka::{self, Deliveries};
use super::{Cx, kafka::Probe, wait_settled};
use crate::report::{self, Report, Row};
use crate::workload;

/// Produces and watches probe rounds.
struct Probes {
    producer: kafka::Threaded,
    watcher: kafka::Watcher,
    topic: String,
    partitions: u32,
    /// Marker → when its output was read.
    seen: HashMap<String, Instant>,
}

impl Probes {
    /// Produces one round tagged `tag` (one record per partition), without waiting.
    fn send(&mut self, tag: &str) -> anyhow::Result<()> {
        for p in 0..self.partitions {
            let v = format!(r#"{{"probe":"{tag}/{p}","color":"blue"}}"#);
            kafka::send(
                &self.producer,
                BaseRecord::to(&self.topic)
                    .partition(p as i32)
                    .payload(v.as_bytes()),
            )?;
        }
        self.producer.context().check()
    }

    /// Reads outputs for up to `wait`.
    fn poll(&mut self, wait: Duration) -> anyhow::Result<()> {
        let seen = &mut self.seen;
        self.watcher.poll(wait, &mut |v, at| {
            if let Some(rest) = v.strip_prefix(br#"{"probe":""#)
                && let Some(end) = rest.iter().position(|&b| b == b'"')
            {
                seen.entry(String::from_utf8_lossy(&rest[..end]).into_owned())
                    .or_insert(at);
            }
        })
    }

    /// When the last output of round `tag` was read, if all were.
    fn done(&self, tag: &str) -> Option<Instant> {
        (0..self.partitions)
            .map(|p| self.seen.get(&format!("{tag}/{p}")).copied())
            .try_fold(None, |acc: Option<Instant>, t| {
                let t = t?;
                Some(Some(acc.map_or(t, |a| a.max(t))))
            })
            .flatten()
    }

    /// Waits (up to `timeout`) until every output of round `tag` was read.
    fn wait(&mut self, tag: &str, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.done(tag) {
                return Ok(t);
            }
            if Instant::now() > deadline {
                bail!("probe round {tag} was not processed within {timeout:?}");
            }
            self.poll(Duration::from_millis(5))?;
        }
    }
}

/// The members of the group under test: Rill hosts or native member processes.
trait Side {
    /// SIGKILL of the last member.
    fn kill_last(&mut self) -> anyhow::Result<()>;
    /// Starts the last member again; returns spawn → its ready line.
    fn start_last(&mut self) -> anyhow::Result<Duration>;
    /// Whether the restarted member has processed a record.
    fn last_processed(&mut self) -> bool;
}

struct RillSide<'a> {
    cx: &'a mut Cx,
    victim: usize,
    name: String,
}

impl Side for RillSide<'_> {
    fn kill_last(&mut self) -> anyhow::Result<()> {
        self.cx.hosts[self.victim].kill();
        Ok(())
    }

    fn start_last(&mut self) -> anyhow::Result<Duration> {
        self.cx.hosts[self.victim].spawn()
    }

    fn last_processed(&mut self) -> bool {
        // Until the host applied the deployment from the catalog this is an error.
        workload::info(&self.cx.hosts[self.victim].client(), &self.name)
            .is_ok_and(|i| i.records_in > 0)
    }
}

/// A `rill-bench cluster-member` process and the lines it printed.
struct NativeProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    processed: bool,
}

struct NativeSide {
    bootstrap: String,
    group: String,
    input: String,
    output: String,
    procs: Vec<NativeProc>,
}

impl NativeSide {
    fn spawn(&self, i: usize) -> anyhow::Result<NativeProc> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args([
                "cluster-member",
                "--bootstrap",
                &self.bootstrap,
                "--group",
                &self.group,
            ])
            .args(["--input", &self.input, "--output", &self.output])
            .args(["--id", &format!("native-{}", i + 1)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start a native member")?;
        let out = child.stdout.take().context("member stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let ready = lines
            .recv_timeout(Duration::from_secs(60))
            .context("a native member did not start")?;
        anyhow::ensure!(ready == "ready", "a native member said {ready:?}");
        Ok(NativeProc {
            child,
            lines,
            processed: false,
        })
    }
}

impl Side for NativeSide {
    fn kill_last(&mut self) -> anyhow::Result<()> {
        let p = self.procs.last_mut().context("no members")?;
        p.child.kill()?;
        p.child.wait()?;
        Ok(())
    }

    fn start_last(&mut self) -> anyhow::Result<Duration> {
        let i = self.procs.len() - 1;
        let t = Instant::now();
        let p = self.spawn(i)?;
        self.procs[i] = p;
        Ok(t.elapsed())
    }

    fn last_processed(&mut self) -> bool {
        let p = self.procs.last_mut().expect("members");
        while let Ok(l) = p.lines.try_recv() {
            p.processed |= l == "processed";
        }
        p.processed
    }
}

impl Drop for NativeSide {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// The figures of one side, one entry per try.
#[derive(Default)]
struct Times {
    kill: Vec<Duration>,
    join: Vec<Duration>,
    ready: Vec<Duration>,
    first: Vec<Duration>,
}

/// Runs `tries` kills and joins of the last member of `side`.
#[allow(clippy::too_many_arguments)]
fn measure(
    cx_log: &dyn Fn(&str),
    who: &str,
    side: &mut dyn Side,
    probes: &mut Probes,
    probe: &Probe,
    group: &str,
    members: usize,
    tries: u32,
) -> anyhow::Result<Times> {
    let (topic, p) = (probes.topic.clone(), probes.partitions);
    wait_settled(probe, group, &topic, members, p, &|| false)?;
    let warm = format!("{who}-warm");
    probes.send(&warm)?;
    probes.wait(&warm, Duration::from_secs(60))?;
    let mut times = Times::default();
    for t in 1..=tries {
        wait_settled(probe, group, &topic, members, p, &|| false)?;
        let pre = format!("{who}-pre-{t}");
        probes.send(&pre)?;
        probes.wait(&pre, Duration::from_secs(60))?;

        // Kill.
        let t0 = Instant::now();
        side.kill_last()?;
        let tag = format!("{who}-kill-{t}");
        probes.send(&tag)?;
        let end = probes.wait(&tag, Duration::from_secs(120))?;
        times.kill.push(end - t0);

        // Join.
        let t0 = Instant::now();
        times.ready.push(side.start_last()?);
        let mut first: Option<Instant> = None;
        let mut confirm: Option<String> = None;
        let mut k = 0u32;
        let end = loop {
            if t0.elapsed() > Duration::from_secs(180) {
                bail!("{who} try {t}: the restarted member did not take over partitions in 180 s");
            }
            k += 1;
            let tag = format!("{who}-join-{t}-{k}");
            probes.send(&tag)?;
            if first.is_some() && confirm.is_none() {
                confirm = Some(tag);
            }
            let next = Instant::now() + Duration::from_millis(20);
            while Instant::now() < next {
                probes.poll(Duration::from_millis(2))?;
            }
            if first.is_none() && side.last_processed() {
                first = Some(Instant::now());
            }
            if let Some(tag) = &confirm
                && let Some(end) = probes.done(tag)
            {
                break end;
            }
        };
        times.join.push(end - t0);
        times
            .first
            .push(first.expect("set before the confirming round") - t0);
        cx_log(&format!(
            "{who} try {t}: kill → all partitions processing {}; join → all processing {} (ready {}, first record {})",
            report::time(times.kill[times.kill.len() - 1]),
            report::time(times.join[times.join.len() - 1]),
            report::time(times.ready[times.ready.len() - 1]),
            report::time(times.first[times.first.len() - 1]),
        ));
    }
    Ok(times)
}

fn probes(bootstrap: &str, topic: &str, output: &str, partitions: u32) -> anyhow::Result<Probes> {
    Ok(Probes {
        producer: kafka::config(bootstrap, "rill-bench-probes")
            .set("acks", "1")
            .set("linger.ms", "0")
            .create_with_context(Deliveries::default())
            .context("cannot create the probe producer")?,
        watcher: kafka::Watcher::new(bootstrap, output, 1)?,
        topic: topic.to_owned(),
        partitions,
        seen: HashMap::new(),
    })
}

pub fn run(cx: &mut Cx, report: &mut Report) -> anyhow::Result<()> {
    let q = cx.args.quick;
    let h = cx.args.rebalance_hosts.max(2) as usize;
    let p = cx.args.partitions;
    anyhow::ensure!(p as usize >= h, "{h} hosts need at least {h} partitions");
    let tries = cx.args.tries.unwrap_or(if q { 2 } else { 20 }).max(1);
    let bootstrap = cx.args.bootstrap.clone();
    let probe = Probe::new(&bootstrap)?;
    cx.log(&format!(
        "rebalance: {h} members, {p} partitions, {tries} tries"
    ));

    // Native first, while no host runs.
    let native_topic = format!("{}-probe-native", cx.run);
    let native_out = format!("{}-probe-native-out", cx.run);
    kafka::create_topic(&bootstrap, &native_topic, p as i32)?;
    kafka::create_topic(&bootstrap, &native_out, 1)?;
    cx.ensure_hosts(0)?;
    let start = cx.elapsed();
    let t = Instant::now();
    let log =
        move |m: &str| eprintln!("[cluster {:>7.1} s] {m}", start + t.elapsed().as_secs_f64());
    let native = {
        let mut side = NativeSide {
            bootstrap: bootstrap.clone(),
            group: format!("{}-probe-native", cx.run),
            input: native_topic.clone(),
            output: native_out.clone(),
            procs: Vec::new(),
        };
        for i in 0..h {
            let m = side.spawn(i)?;
            side.procs.push(m);
        }
        let mut probes = probes(&bootstrap, &native_topic, &native_out, p)?;
        let group = side.group.clone();
        measure(
            &log,
            "native",
            &mut side,
            &mut probes,
            &probe,
            &group,
            h,
            tries,
        )?
    };

    let topic = format!("{}-probe", cx.run);
    let name = format!("{}-probe-filter", cx.run);
    kafka::create_topic(&bootstrap, &topic, p as i32)?;
    cx.ensure_hosts(h)?;
    workload::deploy(
        &cx.hosts[0].client(),
        &cx.wasm,
        &name,
        &topic,
        "earliest",
        false,
    )?;
    // The deployment created `blue` if it was missing.
    let mut probes = probes(&bootstrap, &topic, "blue", p)?;
    let rill = {
        let mut side = RillSide {
            cx: &mut *cx,
            victim: h - 1,
            name: name.clone(),
        };
        measure(
            &log,
            "rill",
            &mut side,
            &mut probes,
            &probe,
            &name,
            h,
            tries,
        )?
    };
    let _ = cx.hosts[0]
        .client()
        .delete(&format!("/v1/deployments/{name}"));

    let what = format!(
        "{h} members, {p} partitions, session.timeout.ms 6000, heartbeat 1000 ms, {tries} tries"
    );
    let mut row = |figure: &str, mut xs: Vec<Duration>, mut base: Vec<Duration>| {
        xs.sort();
        base.sort();
        let f = |xs: &[Duration]| {
            format!(
                "p50 {} / p99 {} (min {}, max {})",
                report::time(workload::percentile(xs, 0.5)),
                report::time(workload::percentile(xs, 0.99)),
                report::time(xs[0]),
                report::time(xs[xs.len() - 1]),
            )
        };
        report.push(Row::new("cluster rebalance", figure, &what).value(format!(
            "Rill: {}; native: {}",
            f(&xs),
            f(&base)
        )));
    };
    row(
        "SIGKILL of a member → every partition processing again (probe outputs)",
        rill.kill,
        native.kill,
    );
    row(
        "member started → every partition processing again, with the new member",
        rill.join,
        native.join,
    );
    row(
        "  member started → its ready line",
        rill.ready,
        native.ready,
    );
    row(
        "  member started → its first processed record",
        rill.first,
        native.first,
    );
    Ok(())
}
