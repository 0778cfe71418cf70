//! Scenario 4: restart time with a large log, after a clean stop and after SIGKILL.
//!
//! The log is written straight through `rill_log` before the first start (a 10 GB produce
//! over HTTP would measure the door, not the restart). A filter deployed from `latest` is
//! running when the host is stopped or killed. Restart figures are taken from the spawn of
//! the process: to its ready line (admin API listening, deployments restored), to the first
//! admin answer, and to the first record produced after the restart being handled and
//! committed by the filter ("handlers resumed").

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::host::Host;
use crate::report::{Report, Row, bytes, time};
use crate::workload::{self, poll};
use crate::{Ctx, Progress};

const PARTITIONS: u32 = 4;

pub fn run(ctx: &Ctx, pb: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let dir = ctx.tmp.path().join("restart");
    let size = fill(&dir, ctx.restart_bytes, pb)?;
    pb.phase("restart: first start", 0);
    let mut host = Host::start(&ctx.bin, &dir)?;
    let c = host.client();
    workload::create_topic(&c, "blue", 1, "never")?;
    workload::deploy(&c, &ctx.wasm, "filter", "big", "latest", false)?;
    resume(&host)?;

    pb.phase("restart: clean stop and start", 0);
    host.stop()?;
    let clean = restart(&mut host)?;
    pb.phase("restart: SIGKILL and start", 0);
    // Leave an unflushed tail behind: records appended, no clean-shutdown marker.
    let _: Value = host.client().post(
        "/v1/topics/big/records",
        &workload::produce_body(0, 1000, PARTITIONS),
    )?;
    host.kill();
    let killed = restart(&mut host)?;
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);

    let setup = format!("{} log, {PARTITIONS} partitions", bytes(size));
    for (how, r) in [("clean stop", clean), ("SIGKILL", killed)] {
        let mut row = Row::new(
            "restart",
            &format!("after {how}: spawn → ready / admin answers / handler resumed"),
            &setup,
        )
        .value(format!(
            "{} / {} / {}",
            time(r.ready),
            time(r.admin),
            time(r.resumed)
        ));
        if how == "SIGKILL" {
            row = row.target("ready ≤ 1 s", r.ready <= Duration::from_secs(1));
        }
        report.push(row);
    }
    Ok(())
}

struct Restart {
    ready: Duration,
    admin: Duration,
    resumed: Duration,
}

fn restart(host: &mut Host) -> anyhow::Result<Restart> {
    let t = Instant::now();
    let ready = host.spawn()?;
    let _: Value = host.client().get("/v1/status")?;
    let admin = t.elapsed();
    resume(host)?;
    Ok(Restart {
        ready,
        admin,
        resumed: t.elapsed(),
    })
}

/// Produces one blue record to every partition and waits until the filter committed them.
fn resume(host: &Host) -> anyhow::Result<()> {
    let c = host.client();
    let _: Value = c.post(
        "/v1/topics/big/records",
        &json!({"records": (0..PARTITIONS)
            .map(|p| json!({"value": workload::value(2), "partition": p}))
            .collect::<Vec<_>>()}),
    )?;
    poll(
        Duration::from_secs(120),
        Duration::from_millis(1),
        "the filter to resume",
        || {
            let i = workload::info(&c, "filter")?;
            Ok((i.lag == 0 && i.partitions.iter().all(|p| p.status == "running")).then_some(()))
        },
    )
}

/// Writes about `target` bytes of 100-byte records to topic `big`, straight into the log.
fn fill(dir: &std::path::Path, target: u64, pb: &Progress) -> anyhow::Result<u64> {
    pb.phase(
        &format!("restart: writing a {} log", bytes(target)),
        target >> 20,
    );
    let log = rill_log::Log::open(dir, rill_log::LogOptions::default())
        .with_context(|| format!("cannot open a log in {}", dir.display()))?;
    let topic = log.create_topic(
        "big",
        rill_log::TopicConfig {
            partitions: PARTITIONS,
            ..Default::default()
        },
    )?;
    // 5,000 records (about 550 KB) a batch: under the topic's max.message.bytes (1 MiB by
    // default, as Kafka), as a Kafka producer's batches are.
    let values: Vec<String> = (0..5_000).map(workload::value).collect();
    let records: Vec<rill_log::Record<'_>> = values
        .iter()
        .map(|v| rill_log::Record {
            value: Some(v.as_bytes()),
            ..Default::default()
        })
        .collect();
    let batch = rill_log::batch::encode(&records, rill_runtime::now_ms());
    let mut written = 0u64;
    let mut i = 0usize;
    let mut buf = batch.clone();
    while written < target {
        buf.copy_from_slice(&batch);
        let p = &topic.partitions()[i % PARTITIONS as usize];
        p.append_batch(&mut buf)?;
        written += batch.len() as u64;
        i += 1;
        pb.set(written >> 20);
    }
    log.close()?;
    Ok(written)
}
