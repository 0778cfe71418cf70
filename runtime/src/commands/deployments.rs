//! `runtime list`, `undeploy`, `pause`, `resume` and `logs`.

use std::time::Duration;

use clap::Args;

use rill_runtime::admin::client::Client;
use rill_runtime::handler_logs::LogEntry;
use rill_runtime::scheduler::DeploymentInfo;

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also show each partition's committed offset, end offset and lag.
    #[arg(long, short)]
    partitions: bool,
}

#[derive(Args, Debug)]
pub struct NameArg {
    /// Deployment name.
    name: String,
}

#[derive(Args, Debug)]
pub struct UndeployArgs {
    /// Deployment name.
    name: String,
    /// Also forget the group's committed offsets (a later deploy starts over).
    #[arg(long)]
    drop_offsets: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Deployment name.
    name: String,
    /// Keep waiting for new lines (Ctrl-C to stop).
    #[arg(long, short)]
    follow: bool,
    /// Show the newest N lines first (the host keeps the last 10,000).
    #[arg(long, short = 'n', default_value_t = 100)]
    tail: usize,
}

pub fn list(client: &Client, args: ListArgs) -> anyhow::Result<()> {
    let all: Vec<DeploymentInfo> = client.get("/v1/deployments")?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(());
    }
    outln!(
        "{:<24} {:<16} {:<9} {:<13} {:>10} {:>12} {:>12} {:>7} {:>5}",
        "NAME",
        "TOPIC",
        "STATE",
        "GUARANTEE",
        "LAG",
        "IN",
        "OUT",
        "ERRORS",
        "DLQ"
    )?;
    for d in &all {
        outln!(
            "{:<24} {:<16} {:<9} {:<13} {:>10} {:>12} {:>12} {:>7} {:>5}",
            d.spec.name,
            d.spec.topic,
            d.state,
            d.spec.guarantee.as_str(),
            d.lag,
            d.records_in,
            d.records_out,
            d.errors,
            d.dead_lettered
        )?;
        if args.partitions || d.state != "running" {
            for p in &d.partitions {
                let committed = p
                    .committed
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into());
                outln!(
                    "    partition {:<4} committed {:>10}  end {:>10}  lag {:>8}  {}{}{}",
                    p.partition,
                    committed,
                    p.end,
                    p.lag,
                    p.status,
                    p.owner
                        .as_ref()
                        .map(|o| format!("  on {o}"))
                        .unwrap_or_default(),
                    p.error
                        .as_ref()
                        .map(|e| format!("  error: {e}"))
                        .unwrap_or_default()
                )?;
            }
        }
    }
    if all.is_empty() {
        outln!("(no deployments: deploy one with 'runtime deploy handler.wasm --topic TOPIC')")?;
    }
    Ok(())
}

pub fn undeploy(client: &Client, args: UndeployArgs) -> anyhow::Result<()> {
    let q = if args.drop_offsets {
        "?drop_offsets=true"
    } else {
        ""
    };
    client.delete(&format!("/v1/deployments/{}{q}", args.name))?;
    outln!("undeployed {}", args.name)?;
    Ok(())
}

pub fn pause(client: &Client, args: NameArg, paused: bool) -> anyhow::Result<()> {
    let verb = if paused { "pause" } else { "resume" };
    let info: DeploymentInfo =
        client.post(&format!("/v1/deployments/{}/{verb}", args.name), &())?;
    outln!("{} is {}", info.spec.name, info.state)?;
    Ok(())
}

pub fn logs(client: &Client, args: LogsArgs) -> anyhow::Result<()> {
    // The newest lines first; following then asks for what comes after the last one. With
    // `--tail 0` the newest line is fetched only to learn where to follow from.
    let newest: Vec<LogEntry> = client.get(&format!(
        "/v1/deployments/{}/logs?tail={}",
        args.name,
        args.tail.max(usize::from(args.follow))
    ))?;
    let mut after = newest.last().map_or(0, |l| l.seq);
    let skip = newest.len().saturating_sub(args.tail);
    for l in &newest[skip..] {
        print_line(l)?;
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        let lines: Vec<LogEntry> = client.get(&format!(
            "/v1/deployments/{}/logs?after={after}&wait_ms=10000",
            args.name
        ))?;
        for l in &lines {
            print_line(l)?;
            after = l.seq;
        }
        if lines.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn print_line(l: &LogEntry) -> anyhow::Result<()> {
    let offset = l.offset.map(|o| format!(" offset={o}")).unwrap_or_default();
    outln!(
        "{} {:<5} partition={}{offset} {}",
        fmt_ts(l.ts_ms),
        l.level,
        l.partition,
        l.message
    )?;
    Ok(())
}

/// `HH:MM:SS.mmm` UTC: enough to read a log, without a date-time dependency.
fn fmt_ts(ms: i64) -> String {
    let day_ms = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

pub fn groups(client: &Client) -> anyhow::Result<()> {
    let rows: Vec<rill_runtime::admin::api::GroupLag> = client.get("/v1/groups")?;
    outln!(
        "{:<28} {:<20} {:>9} {:>12} {:>12} {:>10}",
        "GROUP",
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "END",
        "LAG"
    )?;
    for r in &rows {
        outln!(
            "{:<28} {:<20} {:>9} {:>12} {:>12} {:>10}",
            r.group,
            r.topic,
            r.partition,
            r.committed,
            r.end,
            r.lag
        )?;
    }
    if rows.is_empty() {
        outln!("(no consumer group has committed an offset yet)")?;
    }
    Ok(())
}
