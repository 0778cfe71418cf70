//! Deployment operations end to end: deploys racing each other, redeploys, restore after a
//! restart, handler logs, metrics across deployments, start-up errors.

use super::*;

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
