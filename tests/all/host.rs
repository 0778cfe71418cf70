//! The host daemon end to end: a real `runtime serve` process on a temp dir and loopback
//! ports, driven through the real CLI, running real `.wasm` handlers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rill_runtime::admin::api::{Fetch, Fetched};
use rill_runtime::scheduler::DeploymentInfo;
use rill_tests::guests;
use rill_tests::host::TestHost;

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

// ---------------------------------------------------------------------------------------
// Deployment operations racing each other, redeploys, restore, logs, errors.

/// Deploys (and redeploys) of one name at the same moment leave one set of workers: every
/// order is emailed exactly once, and the committed offset never moves back.
#[test]
fn concurrent_deploys_of_one_name_leave_one_set_of_workers() {
    let h = TestHost::start();
    setup(&h, "1");
    produce(&h, "orders", &orders(0..3000));
    let deploy = || {
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
            "3",
        ]);
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    // Ends the watcher even when an assertion below panics, so the scope can join it.
    struct Done<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let mut committed = Vec::new();
    std::thread::scope(|s| {
        let _done = Done(&done);
        let deployers: Vec<_> = (0..6).map(|_| s.spawn(deploy)).collect();
        // Meanwhile, watch the committed offset.
        let watcher = s.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(d) = h.client().get::<DeploymentInfo>("/v1/deployments/n") {
                    seen.extend(d.partitions[0].committed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        for d in deployers {
            d.join().expect("deploy thread");
        }
        // A few more redeploys while it works.
        for _ in 0..3 {
            deploy();
        }
        let d = wait_caught_up(&h, "n");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        committed = watcher.join().expect("watcher");
        assert_eq!(d.records_in, 3000, "{d:#?}");
    });
    assert!(
        committed.windows(2).all(|w| w[0] <= w[1]),
        "the committed offset moved back: {committed:?}"
    );
    let ids = order_ids(&fetch_all(&h, "emails"), "order_id");
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 3000);
    assert_eq!(
        ids.len(),
        3000,
        "two sets of workers emailed some orders twice"
    );
    assert_eq!(
        h.client()
            .get::<Vec<DeploymentInfo>>("/v1/deployments")
            .unwrap()
            .len(),
        1
    );
}

/// A redeploy that names only the module keeps the group, the pause state and the retry
/// settings; naming a group switches to it.
#[test]
fn redeploy_without_options_keeps_group_pause_and_settings() {
    let h = TestHost::start();
    setup(&h, "1");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
        "--group",
        "billing",
        "--paused",
        "--max-attempts",
        "7",
        "--on-failure",
        "stop",
        "--backoff-ms",
        "20",
        "--backoff-max-ms",
        "400",
        "--timeout",
        "250ms",
        "--max-emits",
        "9",
        "--max-batch-bytes",
        "64KiB",
        "--output",
        "emails",
    ]);
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
    ]);
    let d = deployment(&h, "n");
    assert_eq!(d.spec.group, "billing");
    assert_eq!(d.state, "paused");
    assert_eq!(d.spec.max_attempts, 7);
    assert_eq!(d.spec.on_failure, rill_runtime::deployment::OnFailure::Stop);
    assert_eq!(
        (d.spec.backoff_initial_ms, d.spec.backoff_max_ms),
        (20, 400)
    );
    assert_eq!(d.spec.limits.cpu_time, Duration::from_millis(250));
    assert_eq!(d.spec.limits.max_emits, 9);
    assert_eq!(d.spec.max_batch_bytes, 64 << 10);
    assert_eq!(d.spec.outputs, ["emails"]);
    // One option changed, the rest kept.
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
        "--group",
        "other",
        "--max-emits",
        "11",
    ]);
    let d = deployment(&h, "n");
    assert_eq!(d.spec.group, "other");
    assert_eq!(d.spec.limits.max_emits, 11);
    assert_eq!(d.spec.limits.cpu_time, Duration::from_millis(250));
    assert_eq!(d.state, "paused");
}

/// A handler that emits to a topic name the log refuses: its records go to the dead-letter
/// topic after their tries, instead of being retried for ever.
#[test]
fn emit_to_an_invalid_topic_name_is_dead_lettered_after_the_last_try() {
    let h = TestHost::start();
    setup(&h, "1");
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("bad-topic.wasm");
    std::fs::write(&wasm, emit_to_topic_guest("no such topic!")).unwrap();
    h.cli_ok(&[
        "deploy",
        wasm.to_str().unwrap(),
        "--name",
        "bad-topic",
        "--topic",
        "orders",
        "--max-attempts",
        "2",
        "--backoff-ms",
        "1",
    ]);
    produce(&h, "orders", &orders(0..3));
    let d = wait_caught_up(&h, "bad-topic");
    assert_eq!(d.dead_lettered, 3, "{d:#?}");
    let dlq = fetch_all(&h, "bad-topic.dlq");
    assert_eq!(dlq.records.len(), 3);
    for r in &dlq.records {
        assert_eq!(
            r.headers.get("rill.error.kind").map(String::as_str),
            Some("append")
        );
        assert!(
            r.headers
                .get("rill.error")
                .is_some_and(|e| e.contains("invalid topic name")),
            "{r:?}"
        );
        assert_eq!(
            r.headers.get("rill.attempts").map(String::as_str),
            Some("2")
        );
    }
}

/// A minimal ABI v1 guest that emits one record to `topic` per invocation.
fn emit_to_topic_guest(topic: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "rill" "emit" (func $emit (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 8)
            (data (i32.const 16) "{topic}")
            (func (export "rill_abi_version") (result i32) i32.const 1)
            (func (export "rill_input") (param i32) (result i32) i32.const 4096)
            (func (export "rill_handle") (param i32 i32 i64 i64) (result i32)
                (drop (call $emit (i32.const 16) (i32.const {len}) (i32.const 0) (i32.const -1)
                    (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 0)))
                i32.const 0))"#,
        len = topic.len()
    ))
    .expect("valid WAT")
}

/// `runtime logs` shows the newest lines (`--tail`), and the ring survives a redeploy so
/// a follower's position stays valid.
#[test]
fn logs_show_the_newest_lines_and_survive_a_redeploy() {
    let h = TestHost::start();
    setup(&h, "1");
    let deploy = || {
        h.cli_ok(&[
            "deploy",
            guests::WASI_LOGGER,
            "--name",
            "w",
            "--topic",
            "orders",
        ])
    };
    deploy();
    produce(&h, "orders", &orders(0..300));
    wait_caught_up(&h, "w");
    let out = h.cli_ok(&["logs", "w"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 100, "the default tail: {out}");
    assert!(lines[99].contains("offset=299"), "{}", lines[99]);
    assert!(lines[0].contains("offset=200"), "{}", lines[0]);
    let out = h.cli_ok(&["logs", "w", "--tail", "2"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("offset=298") && out.contains("offset=299"),
        "{out}"
    );

    let last: Vec<rill_runtime::handler_logs::LogEntry> =
        h.client().get("/v1/deployments/w/logs?tail=1").unwrap();
    let seq = last[0].seq;
    deploy();
    produce(&h, "orders", &orders(300..305));
    wait_caught_up(&h, "w");
    let after: Vec<rill_runtime::handler_logs::LogEntry> = h
        .client()
        .get(&format!("/v1/deployments/w/logs?after={seq}"))
        .unwrap();
    assert_eq!(
        after.len(),
        5,
        "a follower sees the new version's lines: {after:?}"
    );
    assert_eq!(after[0].offset, Some(300));
}

/// One unreadable spec file costs only its own deployment: the others are restored, the
/// bad one is listed as failed and can be undeployed.
#[test]
fn one_bad_spec_file_does_not_block_the_others_and_can_be_undeployed() {
    let mut h = TestHost::start();
    setup(&h, "1");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "good",
        "--topic",
        "orders",
    ]);
    assert!(h.stop(), "clean stop; log:\n{}", h.log());
    let bad = h.data_dir.join("deployments").join("broken.toml");
    std::fs::write(&bad, "this is = = not toml").unwrap();
    h.spawn();
    produce(&h, "orders", &orders(0..5));
    assert_eq!(wait_caught_up(&h, "good").records_in, 5);
    let broken = deployment(&h, "broken");
    assert_eq!(broken.state, "failed");
    assert!(
        broken
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("broken.toml")),
        "{broken:#?}"
    );
    let list = h.cli_ok(&["list"]);
    assert!(list.contains("broken") && list.contains("failed"), "{list}");
    h.cli_ok(&["undeploy", "broken"]);
    assert!(!bad.exists());
    assert!(
        h.client()
            .get::<DeploymentInfo>("/v1/deployments/broken")
            .is_err()
    );
    assert_eq!(deployment(&h, "good").state, "running");
}

/// A partition stopped by `--on-failure stop` is still stopped after a restart (it does
/// not quietly retry), and a resume answers with the restarted state.
#[test]
fn a_stopped_partition_stays_stopped_across_a_restart_until_resumed() {
    let mut h = TestHost::start();
    setup(&h, "1");
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        "n",
        "--topic",
        "orders",
        "--max-attempts",
        "2",
        "--backoff-ms",
        "1",
        "--on-failure",
        "stop",
    ]);
    let mut input = orders(0..3);
    input.push_str("k1\tnot json\n");
    produce(&h, "orders", &input);
    h.wait_for(WAIT, || {
        Some(deployment(&h, "n")).filter(|d| d.state == "failed")
    })
    .expect("deployment should fail");
    assert!(h.stop());
    h.spawn();
    let d = h
        .wait_for(WAIT, || {
            Some(deployment(&h, "n")).filter(|d| d.partitions[0].status == "failed")
        })
        .expect("still failed after the restart");
    assert_eq!(d.state, "failed");
    assert_eq!(d.partitions[0].committed, Some(3));
    let err = d.partitions[0].error.clone().unwrap_or_default();
    assert!(err.contains("stopped at offset 3"), "{err}");
    let logs: Vec<serde_json::Value> = h.client().get("/v1/deployments/n/logs").unwrap();
    assert!(
        logs.iter()
            .all(|l| !l["message"].as_str().unwrap_or("").contains("(try ")),
        "no retry after the restart: {logs:#?}"
    );
    let out = h.cli_ok(&["resume", "n"]);
    assert!(
        !out.contains("failed"),
        "resume answers the restarted state: {out}"
    );
    // The record fails again (it is still not JSON): two more tries, then stopped again.
    let d = h
        .wait_for(WAIT, || {
            Some(deployment(&h, "n")).filter(|d| d.partitions[0].status == "failed")
        })
        .expect("fails again");
    assert_eq!(d.partitions[0].committed, Some(3));
}

/// Each metric family's samples are together under one HELP/TYPE, with several
/// deployments (the text format's rule; Prometheus rejects the scrape otherwise).
#[test]
fn metrics_families_are_contiguous_across_deployments() {
    let h = TestHost::start();
    setup(&h, "2");
    for name in ["a", "b"] {
        h.cli_ok(&[
            "deploy",
            guests::NOTIFIER,
            "--name",
            name,
            "--topic",
            "orders",
        ]);
    }
    produce(&h, "orders", &orders(0..10));
    wait_caught_up(&h, "a");
    wait_caught_up(&h, "b");
    let text = h.client().get_text("/metrics").unwrap();
    let mut seen = BTreeSet::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap_or_default().to_owned();
            assert!(seen.insert(current.clone()), "{current} twice:\n{text}");
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| *b == current))
                .unwrap_or(name);
            assert_eq!(family, current, "{line} outside its family:\n{text}");
        }
    }
    assert!(
        text.contains(r#"rill_records_in_total{deployment="b"} 10"#),
        "{text}"
    );
}

/// Start-up errors are one line, naming the cause once, with a non-zero exit.
#[test]
fn startup_errors_are_one_line_with_a_non_zero_exit() {
    let h = TestHost::start();
    let dir = tempfile::tempdir().unwrap();
    let addr = h.admin.trim_start_matches("http://").to_owned();
    let serve = |args: &[&str]| {
        std::process::Command::new(rill_tests::host::runtime_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .env("RILL_LOG", "off")
            .env("RILL_SCHEMA_REGISTRY_ADDR", "127.0.0.1:0")
            .output()
            .expect("run runtime serve")
    };
    // The admin port is taken (by `h`).
    let out = serve(&["--admin-addr", &addr, "--no-kafka"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: cannot listen on"), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "the cause once: {err}");

    // An unknown key in [kafka].
    let cfg = dir.path().join("rill.toml");
    std::fs::write(&cfg, "[kafka]\nlisten_adr = \"127.0.0.1:0\"\n").unwrap();
    let out = serve(&["--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("listen_adr"), "{err}");
}
