//! `runtime status`: is the host healthy?

use rill_runtime::admin::api::Status;
use rill_runtime::admin::client::Client;

pub fn run(client: &Client) -> anyhow::Result<()> {
    let s: Status = client.get("/v1/status")?;
    println!(
        "rill {}  up {}s  data dir {}",
        s.version, s.uptime_s, s.data_dir
    );
    println!(
        "admin {}  kafka {}",
        client.base(),
        s.kafka_addr.as_deref().unwrap_or("off")
    );
    println!("topics {}  deployments {}", s.topics, s.deployments);
    if s.unhealthy_deployments.is_empty() {
        println!("deployments: all healthy");
    } else {
        println!(
            "unhealthy deployments: {}",
            s.unhealthy_deployments.join(", ")
        );
    }
    if s.recovery.is_empty() {
        println!("recovery: nothing to report");
    } else {
        println!("recovery found {} problem(s):", s.recovery.len());
        for r in &s.recovery {
            println!("  {r}");
        }
    }
    for (name, why) in &s.restore_failures {
        println!("deployment {name} could not be restored: {why}");
    }
    Ok(())
}
