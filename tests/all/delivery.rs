//! Deployment guarantees (docs/delivery.md) on an embedded host. The cluster-mode side is in
//! `cluster_mode/crash.rs`.

use std::time::Duration;

use rill_runtime::admin::api::{Fetch, Fetched};
use rill_runtime::deployment::Guarantee;
use rill_runtime::scheduler::DeploymentInfo;
use rill_tests::guests;
use rill_tests::host::TestHost;

fn fetch(h: &TestHost, topic: &str, read_committed: bool) -> Fetched {
    h.client()
        .post(
            &format!("/v1/topics/{topic}/fetch"),
            &Fetch {
                from: Some("earliest".into()),
                max_records: 100_000,
                read_committed,
                ..Fetch::default()
            },
        )
        .expect("fetch")
}

fn values(f: &Fetched) -> Vec<String> {
    let mut v: Vec<String> = f
        .records
        .iter()
        .map(|r| r.value.clone().unwrap_or_default())
        .collect();
    v.sort();
    v
}

/// An exactly-once deployment on the embedded log: outputs and dead letters are written in
/// the worker's transactions, committed with the offsets. A read_committed reader sees each
/// once, transaction markers take offsets and are never records, the trapping record's
/// re-runs (one record at a time, then its tries) leave nothing committed twice, and the
/// list and the spec say exactly-once.
#[test]
fn exactly_once_in_embedded_mode_commits_outputs_with_the_offsets() {
    let h = TestHost::start();
    h.cli_ok(&["topic", "create", "in", "--partitions", "2"]);
    h.cli_ok(&["topic", "create", "out"]);
    h.cli_ok(&[
        "deploy",
        guests::TRAP,
        "--name",
        "t",
        "--topic",
        "in",
        "--output",
        "out",
        "--max-attempts",
        "2",
        "--backoff-ms",
        "10",
        "--on-failure",
        "dlq",
        "--batch",
        "7",
        "--guarantee",
        "exactly-once",
    ]);
    let mut input = String::new();
    let mut expected = Vec::new();
    for i in 0..60 {
        if i == 23 {
            input.push_str("trap\n");
        } else {
            input.push_str(&format!("ok {i:02}\n"));
            expected.push(format!("ok {i:02}"));
        }
    }
    let out = h.cli_stdin(&["produce", "in"], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = h
        .wait_for(Duration::from_secs(60), || {
            let d: DeploymentInfo = h.client().get("/v1/deployments/t").ok()?;
            (d.lag == 0 && d.partitions.iter().all(|p| p.committed == Some(p.end))).then_some(d)
        })
        .unwrap_or_else(|| panic!("t did not catch up\n{}", h.log()));
    assert_eq!(d.spec.guarantee, Guarantee::ExactlyOnce);
    // The trap guest forwards every other record it reads; which ones depends on the
    // batches, so compare sets: each forwarded value once, all of them expected.
    let committed = values(&fetch(&h, "out", true));
    let mut dedup = committed.clone();
    dedup.dedup();
    assert_eq!(committed, dedup, "a value committed twice: {committed:?}");
    assert!(!committed.is_empty());
    assert!(
        committed.iter().all(|v| expected.contains(v)),
        "{committed:?}"
    );
    let letters = fetch(&h, "t.dlq", true);
    assert_eq!(letters.records.len(), 1, "{:#?}", letters.records);
    assert!(
        letters.records[0]
            .headers
            .iter()
            .any(|(k, v)| k == "rill.source.offset" && !v.is_empty())
    );
    // Markers take offsets: the output's end is past its records.
    let all = fetch(&h, "out", false);
    assert!(
        all.ends[&0] > all.records.len() as i64,
        "no transaction markers in out: end {} for {} records",
        all.ends[&0],
        all.records.len()
    );
    let list = h.cli_ok(&["list"]);
    assert!(list.contains("exactly-once"), "{list}");
    // Nothing is left open: the output's last stable offset is its end, and each worker's
    // transactional id (one per input partition) has committed.
    let m = h.client().get_text("/metrics").unwrap();
    let end = all.ends[&0];
    assert!(
        m.contains(&format!(
            "rill_log_last_stable_offset{{topic=\"out\",partition=\"0\"}} {end}"
        )),
        "{m}"
    );
    assert!(
        m.contains("rill_transactions{state=\"complete_commit\"} 2"),
        "{m}"
    );
}

/// The guarantee is validated and listed; at-least-once is the default, and a redeploy
/// keeps the guarantee it does not name.
#[test]
fn the_guarantee_is_validated_listed_and_kept_on_redeploy() {
    let h = TestHost::start();
    h.cli_ok(&["topic", "create", "orders", "--partitions", "1"]);
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            guests::NOTIFIER,
            "--name",
            "n",
            "--topic",
            "orders",
        ];
        args.extend_from_slice(extra);
        h.cli(&args)
    };
    let out = deploy(&["--guarantee", "once"]);
    assert!(!out.status.success());
    assert!(
        h.client()
            .get::<DeploymentInfo>("/v1/deployments/n")
            .is_err()
    );
    assert!(deploy(&[]).status.success());
    let d: DeploymentInfo = h.client().get("/v1/deployments/n").expect("deployed");
    assert_eq!(d.spec.guarantee, Guarantee::AtLeastOnce);
    let list = h.cli_ok(&["list"]);
    assert!(
        list.contains("GUARANTEE") && list.contains("at-least-once"),
        "{list}"
    );
    assert!(deploy(&["--guarantee", "exactly-once"]).status.success());
    let d: DeploymentInfo = h.client().get("/v1/deployments/n").expect("redeployed");
    assert_eq!(d.spec.guarantee, Guarantee::ExactlyOnce);
    assert!(deploy(&[]).status.success());
    let d: DeploymentInfo = h.client().get("/v1/deployments/n").expect("redeployed");
    assert_eq!(d.spec.guarantee, Guarantee::ExactlyOnce, "kept on redeploy");
}
