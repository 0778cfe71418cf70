//! Scenario 3: many partitions under one deployment, and many deployments on one topic.

use std::time::{Duration, Instant};

use crate::host::Host;
use crate::report::{Report, Row, bytes, rate, time};
use crate::workload::{self, poll};
use crate::{Ctx, Progress};

/// One topic with `ctx.wide_partitions` partitions, records in each, then one deployment:
/// how long until every partition's instance has handled a record, until the lag is 0, and
/// the host's peak RSS.
pub fn wide(ctx: &Ctx, pb: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let parts = ctx.wide_partitions;
    let n = u64::from(parts) * ctx.wide_records_per_partition;
    let dir = ctx.tmp.path().join("wide");
    let host = Host::start(&ctx.bin, &dir)?;
    let c = host.client();
    workload::create_topic(&c, "wide", parts, "never")?;
    workload::create_topic(&c, "blue", 1, "never")?;
    pb.phase(&format!("scale: producing to {parts} partitions"), n);
    workload::produce_all(&c, "wide", n, parts, 20_000, &|d| pb.set(d))?;
    let rss_before = host.rss().unwrap_or(0);

    pb.phase(&format!("scale: one deployment on {parts} partitions"), n);
    let t = Instant::now();
    workload::deploy(&c, &ctx.wasm, "wide", "wide", "earliest", false)?;
    let deployed = t.elapsed();
    let mut all_ran = None;
    poll(
        Duration::from_secs(600),
        Duration::from_millis(5),
        "every partition to drain",
        || {
            let i = workload::info(&c, "wide")?;
            pb.set(i.records_in);
            if all_ran.is_none() && i.partitions.iter().all(|p| p.committed.unwrap_or(0) >= 1) {
                all_ran = Some(t.elapsed());
            }
            Ok((i.lag == 0 && i.records_in >= n).then_some(()))
        },
    )?;
    let drained = t.elapsed();
    let all_ran = all_ran.unwrap_or(drained);
    let peak = host.peak_rss().unwrap_or(0);
    drop(host);

    let setup = format!(
        "{parts} partitions × {} records, one deployment",
        ctx.wide_records_per_partition
    );
    report.push(
        Row::new("scale", "peak RSS of the host (VmHWM)", &setup)
            .value(format!(
                "{} (before deploy: {})",
                bytes(peak),
                bytes(rss_before)
            ))
            .target("≤ 1 GiB", peak <= 1 << 30),
    );
    report.push(
        Row::new("scale", "deploy → every partition handled a record", &setup)
            .value(format!(
                "{} (deploy call: {})",
                time(all_ran),
                time(deployed)
            ))
            .target("≤ 1 s", all_ran <= Duration::from_secs(1)),
    );
    report.push(
        Row::new("scale", "deploy → lag 0: records/s", &setup).value(format!(
            "{} ({})",
            rate(n as f64 / drained.as_secs_f64()),
            time(drained)
        )),
    );
    Ok(())
}

/// `ctx.deployments` filters on one topic, each its own group.
pub fn many(ctx: &Ctx, pb: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let (deps, parts, n) = (ctx.deployments, 2u32, ctx.many_records);
    let dir = ctx.tmp.path().join("many");
    let host = Host::start(&ctx.bin, &dir)?;
    let c = host.client();
    workload::create_topic(&c, "shared", parts, "never")?;
    workload::create_topic(&c, "blue", 1, "never")?;
    pb.phase("scale: producing for many deployments", n);
    workload::produce_all(&c, "shared", n, parts, 10_000, &|d| pb.set(d))?;

    pb.phase(
        &format!("scale: {deps} deployments on one topic"),
        u64::from(deps),
    );
    let names: Vec<String> = (0..deps).map(|i| format!("f{i:03}")).collect();
    let t = Instant::now();
    for (i, name) in names.iter().enumerate() {
        workload::deploy(&c, &ctx.wasm, name, "shared", "earliest", false)?;
        pb.set(i as u64 + 1);
    }
    let deployed = t.elapsed();
    pb.phase(
        &format!("scale: {deps} deployments draining"),
        u64::from(deps),
    );
    poll(
        Duration::from_secs(600),
        Duration::from_millis(10),
        "every deployment to drain",
        || {
            let all: Vec<rill_runtime::scheduler::DeploymentInfo> = c.get("/v1/deployments")?;
            let done = all
                .iter()
                .filter(|d| d.lag == 0 && d.records_in >= n && d.state == "running")
                .count();
            pb.set(done as u64);
            Ok((done == names.len()).then_some(()))
        },
    )?;
    let drained = t.elapsed();
    let peak = host.peak_rss().unwrap_or(0);
    let setup = format!("{deps} deployments × {n} records, {parts} partitions");
    report.push(
        Row::new("scale", "deployments running, all drained", &setup)
            .value(format!(
                "{deps} in {} (deploy calls: {})",
                time(drained),
                time(deployed)
            ))
            .target("100 run", deps >= 100),
    );
    report.push(
        Row::new("scale", "records handled/s, all deployments", &setup).value(format!(
            "{} (peak RSS {})",
            rate(f64::from(deps) * n as f64 / drained.as_secs_f64()),
            bytes(peak)
        )),
    );
    Ok(())
}
