//! The host daemon end to end: a real `runtime serve` process on a temp dir and loopback
//! ports, driven through the real CLI, running real `.wasm` handlers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rill_runtime::admin::api::{Fetch, Fetched};
use rill_runtime::scheduler::DeploymentInfo;
use rill_tests::guests;
use rill_tests::host::TestHost;

mod operations;

const WAIT: Duration = Duration::from_secs(30);

fn order(i: u32) -> String {
    format!(
        concat!(
            r#"{{"type":"order_created","order_id":{i},"email":"c{i}@example.com","total_cents":{},"#,
            r#""customer":{{"name":"C{i}","address":{{"line1":"1 Main St","city":"Oslo","postcode":"0150","country":"NO"}}}},"#,
            r#""items":[{{"sku":"A{i}","qty":1}}]}}"#
        ),
        i * 100,
        i = i
    )
}

fn orders(range: std::ops::Range<u32>) -> String {
    range
        .map(|i| format!("k{}\t{}\n", i % 40, order(i)))
        .collect()
}

fn produce(h: &TestHost, topic: &str, input: &str) {
    let out = h.cli_stdin(&["produce", topic, "--key-separator", "\t"], input);
    assert!(
        out.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fetch_all(h: &TestHost, topic: &str) -> Fetched {
    h.client()
        .post(
            &format!("/v1/topics/{topic}/fetch"),
            &Fetch {
                from: Some("earliest".into()),
                max_records: 100_000,
                ..Fetch::default()
            },
        )
        .expect("fetch")
}

fn deployment(h: &TestHost, name: &str) -> DeploymentInfo {
    h.client()
        .get(&format!("/v1/deployments/{name}"))
        .expect("deployment info")
}

/// Waits until the deployment has no lag; panics with its state otherwise.
fn wait_caught_up(h: &TestHost, name: &str) -> DeploymentInfo {
    h.wait_for(WAIT, || {
        let d = deployment(h, name);
        (d.lag == 0 && d.partitions.iter().all(|p| p.committed == Some(p.end))).then_some(d)
    })
    .unwrap_or_else(|| {
        panic!(
            "{name} did not catch up: {:#?}\nhost log:\n{}",
            deployment(h, name),
            h.log()
        )
    })
}

fn order_ids(f: &Fetched, field: &str) -> Vec<u64> {
    f.records
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_str(r.value.as_deref().expect("text value")).expect("json");
            v[field]
                .as_u64()
                .unwrap_or_else(|| panic!("no {field} in {v}"))
        })
        .collect()
}

fn setup(h: &TestHost, partitions: &str) {
    h.cli_ok(&["topic", "create", "orders", "--partitions", partitions]);
    h.cli_ok(&["topic", "create", "emails"]);
}

#[test]
fn produce_then_handler_emits_one_email_per_order() {
    let h = TestHost::start();
    setup(&h, "4");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "notifier",
        "--topic",
        "orders",
        "--output",
        "emails",
    ]);
    produce(&h, "orders", &orders(0..200));
    let d = wait_caught_up(&h, "notifier");
    assert_eq!(d.records_in, 200);
    let emails = fetch_all(&h, "emails");
    assert_eq!(emails.records.len(), 200);
    let ids: BTreeSet<u64> = order_ids(&emails, "order_id").into_iter().collect();
    assert_eq!(ids, (0..200).collect::<BTreeSet<u64>>());
    // The handler keeps the key, so an email lands with its order's customer.
    assert!(
        emails
            .records
            .iter()
            .all(|r| r.key.as_deref().is_some_and(|k| k.starts_with('k')))
    );
    // The CLI shows the same state.
    let list = h.cli_ok(&["list"]);
    assert!(
        list.contains("notifier") && list.contains("running"),
        "{list}"
    );
}

#[test]
fn four_partitions_are_all_processed_and_keep_per_key_order() {
    let h = TestHost::start();
    setup(&h, "4");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
        "--batch",
        "7",
    ]);
    produce(&h, "orders", &orders(0..400));
    let d = wait_caught_up(&h, "n");
    assert_eq!(d.partitions.len(), 4);
    for p in &d.partitions {
        assert!(
            p.end > 0,
            "partition {} got no records: keys should spread",
            p.partition
        );
        assert_eq!(p.committed, Some(p.end));
    }
    // Per key, emails come out in order-id order (same key → same partition → in order).
    let emails = fetch_all(&h, "emails");
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (r, id) in emails.records.iter().zip(order_ids(&emails, "order_id")) {
        let k = r.key.clone().expect("key");
        if let Some(prev) = last.insert(k.clone(), id) {
            assert!(prev < id, "key {k}: order {id} after {prev}");
        }
    }
}

#[test]
fn two_groups_on_one_topic_both_see_every_record() {
    let h = TestHost::start();
    setup(&h, "2");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "email-service",
        "--topic",
        "orders",
    ]);
    h.cli_ok(&[
        "deploy",
        guests::ENRICHER,
        "--name",
        "fulfillment",
        "--topic",
        "orders",
    ]);
    produce(&h, "orders", &orders(0..50));
    wait_caught_up(&h, "email-service");
    wait_caught_up(&h, "fulfillment");
    assert_eq!(fetch_all(&h, "emails").records.len(), 50);
    assert_eq!(fetch_all(&h, "fulfillment").records.len(), 50);
}

#[test]
fn start_from_earliest_latest_and_offset() {
    let h = TestHost::start();
    setup(&h, "1");
    produce(&h, "orders", &orders(0..10));
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "from-latest",
        "--topic",
        "orders",
        "--from",
        "latest",
        "--output",
        "emails",
    ]);
    let d = wait_caught_up(&h, "from-latest");
    assert_eq!(d.records_in, 0, "latest must skip what was there");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "from-7",
        "--topic",
        "orders",
        "--from",
        "7",
        "--output",
        "emails",
    ]);
    assert_eq!(wait_caught_up(&h, "from-7").records_in, 3);
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "from-earliest",
        "--topic",
        "orders",
        "--output",
        "emails",
    ]);
    assert_eq!(wait_caught_up(&h, "from-earliest").records_in, 10);
    produce(&h, "orders", &orders(10..15));
    assert_eq!(wait_caught_up(&h, "from-latest").records_in, 5);
}

#[test]
fn pause_holds_and_resume_catches_up() {
    let h = TestHost::start();
    setup(&h, "2");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
    ]);
    produce(&h, "orders", &orders(0..20));
    wait_caught_up(&h, "n");
    h.cli_ok(&["pause", "n"]);
    produce(&h, "orders", &orders(20..40));
    std::thread::sleep(Duration::from_millis(300));
    let d = deployment(&h, "n");
    assert_eq!(d.state, "paused");
    assert_eq!(d.lag, 20, "a paused deployment must not process: {d:#?}");
    h.cli_ok(&["resume", "n"]);
    assert_eq!(wait_caught_up(&h, "n").records_in, 40);
}

#[test]
fn redeploy_under_the_same_name_keeps_offsets() {
    let h = TestHost::start();
    setup(&h, "2");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
        "--output",
        "emails",
    ]);
    produce(&h, "orders", &orders(0..30));
    wait_caught_up(&h, "n");
    // A new version of the module (the enricher, emitting to its own topic) under the same
    // name. Its outputs are named again: a redeploy keeps every option it does not name.
    h.cli_ok(&[
        "deploy",
        guests::ENRICHER,
        "--name",
        "n",
        "--topic",
        "orders",
        "--output",
        "fulfillment",
    ]);
    produce(&h, "orders", &orders(30..40));
    wait_caught_up(&h, "n");
    assert_eq!(fetch_all(&h, "emails").records.len(), 30);
    let ids = order_ids(&fetch_all(&h, "fulfillment"), "order_id");
    assert_eq!(
        ids.len(),
        10,
        "the new version must start at the old one's offsets: {ids:?}"
    );
    assert!(ids.iter().all(|i| *i >= 30));
}

#[test]
fn poison_record_goes_to_the_dead_letter_topic_and_the_rest_flows() {
    let h = TestHost::start();
    setup(&h, "1");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
        "--output",
        "emails",
        "--max-attempts",
        "3",
        "--backoff-ms",
        "10",
    ]);
    let mut input = orders(0..5);
    input.push_str("k1\tthis is not json\n");
    input.push_str(&orders(5..10));
    produce(&h, "orders", &input);
    let d = wait_caught_up(&h, "n");
    assert_eq!(d.dead_lettered, 1, "{d:#?}");
    assert_eq!(fetch_all(&h, "emails").records.len(), 10);
    let dlq = fetch_all(&h, "n.dlq");
    assert_eq!(dlq.records.len(), 1);
    let r = &dlq.records[0];
    assert_eq!(r.value.as_deref(), Some("this is not json"));
    assert_eq!(
        r.headers.get("rill.source.offset").map(String::as_str),
        Some("5")
    );
    assert_eq!(
        r.headers.get("rill.attempts").map(String::as_str),
        Some("3")
    );
    assert!(r.headers.get("rill.error").is_some_and(|e| !e.is_empty()));
}

#[test]
fn on_failure_stop_marks_the_deployment_failed_and_keeps_the_record() {
    let h = TestHost::start();
    setup(&h, "1");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
        "--output",
        "emails",
        "--max-attempts",
        "2",
        "--backoff-ms",
        "10",
        "--on-failure",
        "stop",
    ]);
    let mut input = orders(0..3);
    input.push_str("k1\tnot json\n");
    produce(&h, "orders", &input);
    let d = h
        .wait_for(WAIT, || {
            Some(deployment(&h, "n")).filter(|d| d.state == "failed")
        })
        .expect("deployment should fail");
    assert_eq!(
        d.partitions[0].committed,
        Some(3),
        "the poison record stays uncommitted"
    );
    assert!(d.partitions[0].error.is_some());
    let list = h.cli_ok(&["list"]);
    assert!(list.contains("failed"), "{list}");
}

#[test]
fn sigkill_and_restart_processes_every_record_at_least_once() {
    let mut h = TestHost::start_with(&["--default-flush", "always"]);
    setup(&h, "2");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
        "--output",
        "emails",
        "--batch",
        "5",
    ]);
    produce(&h, "orders", &orders(0..300));
    // Kill while it is (probably) still working, then restart on the same data dir.
    h.kill();
    h.spawn();
    produce(&h, "orders", &orders(300..400));
    wait_caught_up(&h, "n");
    let ids = order_ids(&fetch_all(&h, "emails"), "order_id");
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(
        unique,
        (0..400).collect::<BTreeSet<u64>>(),
        "every order must be processed"
    );
    // Duplicates come only from the last invocation per partition before the kill.
    let dups = ids.len() - unique.len();
    assert!(
        dups <= 2 * 5,
        "{dups} duplicates: more than one batch per partition re-ran"
    );
}

#[test]
fn clean_shutdown_exits_zero_and_restarts_without_recovery() {
    let mut h = TestHost::start();
    setup(&h, "1");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
    ]);
    produce(&h, "orders", &orders(0..10));
    wait_caught_up(&h, "n");
    assert!(h.stop(), "SIGTERM must exit 0; log:\n{}", h.log());
    h.spawn();
    let status = h.cli_ok(&["status"]);
    assert!(status.contains("recovery: nothing to report"), "{status}");
    let d = wait_caught_up(&h, "n");
    assert_eq!(d.partitions[0].committed, Some(10));
}

#[test]
fn bad_input_gets_one_clear_line_and_changes_nothing() {
    let h = TestHost::start();
    setup(&h, "1");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"this is not wasm").unwrap();

    let out = h.cli(&["deploy", junk.to_str().unwrap(), "--topic", "orders"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.to_lowercase().contains("webassembly"), "{err}");
    assert!(h.cli_ok(&["list"]).contains("no deployments"));

    let out = h.cli(&["deploy", guests::NOTIFIER, "--topic", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown topic 'nope'"));

    let out = h.cli_stdin(&["produce", "nope"], "x\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown topic 'nope'"));

    let out = h.cli(&["topic", "create", "x", "--partitions", "many"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("many"));

    let out = h.cli(&["topic", "create", "orders"]);
    assert!(!out.status.success());
    assert_eq!(fetch_all(&h, "orders").records.len(), 0);
}

#[test]
fn metrics_show_lag_and_counts() {
    let h = TestHost::start();
    setup(&h, "1");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
        "--paused",
    ]);
    produce(&h, "orders", &orders(0..7));
    let m = h.client().get_text("/metrics").unwrap();
    assert!(
        m.contains(r#"rill_consumer_lag{group="n",topic="orders",partition="0"} 7"#),
        "{m}"
    );
    h.cli_ok(&["resume", "n"]);
    wait_caught_up(&h, "n");
    let m = h.client().get_text("/metrics").unwrap();
    assert!(
        m.contains(r#"rill_consumer_lag{group="n",topic="orders",partition="0"} 0"#),
        "{m}"
    );
    assert!(
        m.contains(r#"rill_records_in_total{deployment="n"} 7"#),
        "{m}"
    );
    assert!(m.contains("rill_invocation_seconds_bucket"), "{m}");
}
