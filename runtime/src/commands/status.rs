//! `runtime status`: is the host healthy?

use rill_runtime::admin::api::Status;
use rill_runtime::admin::client::Client;

pub fn run(client: &Client) -> anyhow::Result<()> {
    let s: Status = client.get("/v1/status")?;
    outln!(
        "rill {}  up {}s  data dir {}",
        s.version,
        s.uptime_s,
        s.data_dir
    )?;
    outln!(
        "admin {}  kafka {}",
        client.base(),
        s.kafka_addr.as_deref().unwrap_or("off")
    )?;
    outln!(
        "schema registry {}",
        s.schema_registry.as_deref().unwrap_or("off")
    )?;
    match &s.cluster {
        Some(c) => {
            outln!(
                "cluster {}  host {}  {}  brokers {}{}",
                c.bootstrap,
                c.host_id,
                if c.reachable {
                    "reachable"
                } else {
                    "UNREACHABLE"
                },
                c.brokers,
                c.error
                    .as_ref()
                    .map(|e| format!("  last error: {e}"))
                    .unwrap_or_default()
            )?;
            outln!("deployments {}", s.deployments)?;
        }
        None => outln!("topics {}  deployments {}", s.topics, s.deployments)?,
    }
    if s.unhealthy_deployments.is_empty() {
        outln!("deployments: all healthy")?;
    } else {
        outln!(
            "unhealthy deployments: {}",
            s.unhealthy_deployments.join(", ")
        )?;
    }
    if s.recovery.is_empty() {
        outln!("recovery: nothing to report")?;
    } else {
        outln!("recovery found {} problem(s):", s.recovery.len())?;
        for r in &s.recovery {
            outln!("  {r}")?;
        }
    }
    for (name, why) in &s.restore_failures {
        outln!("deployment {name} could not be restored: {why}")?;
    }
    Ok(())
}
