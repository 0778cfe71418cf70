//! Durable state (docs/state.md) on an embedded host: the order-totals read model, queried
//! over the admin API and the CLI, across a SIGKILL, a replay and both guarantees.

use std::collections::BTreeMap;
use std::time::Duration;

use rill_runtime::admin::api::{StateEntry, StateScan, TopicInfo};
use rill_runtime::scheduler::DeploymentInfo;
use rill_tests::guests;
use rill_tests::host::TestHost;
use serde_json::{Value, json};

/// Orders for `customers` customers, `count` of them from `first`, keyed by customer, one
/// `key<TAB>value` line each; and the totals they add per customer.
fn orders(first: u64, count: u64, customers: u64) -> (String, BTreeMap<String, (u64, u64)>) {
    let mut lines = String::new();
    let mut totals = BTreeMap::new();
    for i in first..first + count {
        let c = format!("c{:03}", (i * 7919) % customers);
        let cents = 100 + (i * 37) % 900;
        lines += &format!("{c}\t{}\n", json!({"order_id": i, "amount_cents": cents}));
        let t: &mut (u64, u64) = totals.entry(c).or_default();
        t.0 += 1;
        t.1 += cents;
    }
    (lines, totals)
}

fn add(into: &mut BTreeMap<String, (u64, u64)>, more: BTreeMap<String, (u64, u64)>) {
    for (c, (n, cents)) in more {
        let t = into.entry(c).or_default();
        t.0 += n;
        t.1 += cents;
    }
}

fn produce(h: &TestHost, topic: &str, lines: &str) {
    let out = h.cli_stdin(&["produce", topic, "--key-separator", "\t"], lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn caught_up(h: &TestHost, name: &str) -> DeploymentInfo {
    h.wait_for(Duration::from_secs(60), || {
        let d: DeploymentInfo = h.client().get(&format!("/v1/deployments/{name}")).ok()?;
        (d.partitions.iter().all(|p| p.committed == Some(p.end)) && d.state == "running")
            .then_some(d)
    })
    .unwrap_or_else(|| panic!("{name} did not catch up\n{}", h.log()))
}

/// Every customer's totals as the admin API's scan returns them.
fn queried(h: &TestHost, name: &str) -> BTreeMap<String, (u64, u64)> {
    let mut all = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/deployments/{name}/state?limit=37");
        if let Some(a) = &after {
            path += &format!("&after={a}");
        }
        // A store answers 503 while its partition restores, and a partition whose worker
        // has not started yet is listed as elsewhere (just after a restart).
        let page: StateScan = h
            .wait_for(Duration::from_secs(30), || {
                h.client()
                    .get::<StateScan>(&path)
                    .ok()
                    .filter(|p| p.elsewhere.is_empty())
            })
            .unwrap_or_else(|| panic!("scan {path}: {:?}", h.client().get::<StateScan>(&path)));
        for e in &page.entries {
            let v: Value = serde_json::from_str(e.value.as_deref().unwrap()).unwrap();
            let t = (
                v["orders"].as_u64().unwrap(),
                v["total_cents"].as_u64().unwrap(),
            );
            assert!(all.insert(e.key.clone(), t).is_none(), "{} twice", e.key);
        }
        match page.next_after {
            Some(a) => after = Some(a),
            None => return all,
        }
    }
}

fn deploy_totals(h: &TestHost, extra: &[&str]) {
    let mut args = vec![
        "deploy",
        guests::ORDER_TOTALS,
        "--name",
        "totals",
        "--topic",
        "orders",
        "--batch",
        "50",
    ];
    args.extend_from_slice(extra);
    h.cli_ok(&args);
}

fn read_model_survives_a_kill_and_a_replay(guarantee: &str) {
    let mut h = TestHost::start();
    h.cli_ok(&["topic", "create", "orders", "--partitions", "3"]);
    deploy_totals(&h, &["--guarantee", guarantee]);
    let (lines, mut expected) = orders(0, 2000, 60);
    produce(&h, "orders", &lines);
    caught_up(&h, "totals");
    assert_eq!(queried(&h, "totals"), expected);

    // One key, over HTTP and the CLI.
    let (c, (n, cents)) = expected
        .iter()
        .next()
        .map(|(c, t)| (c.clone(), *t))
        .unwrap();
    let e: StateEntry = h
        .client()
        .get(&format!("/v1/deployments/totals/state/{c}"))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(e.value.as_deref().unwrap()).unwrap(),
        json!({"orders": n, "total_cents": cents})
    );
    assert!(e.position > 0);
    let cli = h.cli_ok(&["state", "get", "totals", &c]);
    assert_eq!(
        serde_json::from_str::<Value>(cli.trim()).unwrap(),
        json!({"orders": n, "total_cents": cents})
    );
    let missing = h.cli(&["state", "get", "totals", "nobody"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no state for key 'nobody'"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let scan = h.cli_ok(&["state", "scan", "totals", "--prefix", "c00"]);
    assert_eq!(
        scan.lines().count(),
        expected.keys().filter(|k| k.starts_with("c00")).count(),
        "{scan}"
    );

    // Metrics: keys per partition's store, its position, the last restore's duration.
    let m = h.client().get_text("/metrics").unwrap();
    let keys: f64 = m
        .lines()
        .filter(|l| l.starts_with("rill_state_keys{deployment=\"totals\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(keys as usize, expected.len(), "{m}");
    assert!(m.contains("rill_state_restore_seconds{deployment=\"totals\",partition=\"2\"}"));

    // The changelog is a compacted topic of the log, one partition per source partition.
    let t: TopicInfo = h.client().get("/v1/topics/totals.state").unwrap();
    assert_eq!(t.partitions, 3);

    // A SIGKILL while records are being handled: the restarted host restores the stores
    // from the changelog and counts nothing twice.
    let (more, totals) = orders(2000, 3000, 60);
    add(&mut expected, totals);
    produce(&h, "orders", &more);
    h.kill();
    h.spawn();
    caught_up(&h, "totals");
    assert_eq!(queried(&h, "totals"), expected, "{}", h.log());
    assert!(h.log().contains("state restored"), "{}", h.log());

    // A replay rebuilds the same state from the start of the topic.
    let out = h.cli_ok(&[
        "deploy",
        guests::ORDER_TOTALS,
        "--name",
        "totals",
        "--topic",
        "orders",
        "--reset",
    ]);
    assert!(out.contains("replayed 5000 records"), "{out}");
    caught_up(&h, "totals");
    assert_eq!(queried(&h, "totals"), expected);
}

#[test]
fn read_model_survives_a_kill_and_a_replay_at_least_once() {
    read_model_survives_a_kill_and_a_replay("at-least-once");
}

#[test]
fn read_model_survives_a_kill_and_a_replay_exactly_once() {
    read_model_survives_a_kill_and_a_replay("exactly-once");
}

/// A stateless deployment has no state to query, and says so.
#[test]
fn a_stateless_deployment_has_no_state_to_query() {
    let h = TestHost::start();
    h.cli_ok(&["topic", "create", "in"]);
    h.cli_ok(&["deploy", guests::FILTER, "--name", "f", "--topic", "in"]);
    let out = h.cli(&["state", "get", "f", "k"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keeps no state"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The changelog is compacted by the host like any compacted topic: after thousands of
/// updates of a few keys it holds a few records per key, and a restore from it alone (the
/// snapshot deleted) gives the same totals.
#[test]
fn the_changelog_is_compacted_and_restores_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rill.toml");
    std::fs::write(&config, "retention_check_interval = 100\n").unwrap();
    let mut h = TestHost::start_with(&["--config", config.to_str().unwrap()]);
    h.cli_ok(&["topic", "create", "orders"]);
    // Created first, with small segments, so compaction has sealed segments to clean.
    h.cli_ok(&[
        "topic",
        "create",
        "totals.state",
        "--cleanup-policy",
        "compact",
        "--segment-bytes",
        "4096",
    ]);
    h.cli_ok(&[
        "deploy",
        guests::ORDER_TOTALS,
        "--name",
        "totals",
        "--topic",
        "orders",
        "--batch",
        "1",
    ]);
    let (lines, expected) = orders(0, 3000, 5);
    produce(&h, "orders", &lines);
    caught_up(&h, "totals");
    assert_eq!(queried(&h, "totals"), expected);

    // 3,000 invocations wrote 6,000 changelog records (a change and a marker each).
    let changelog_records = || {
        let f: rill_runtime::admin::api::Fetched = h
            .client()
            .post(
                "/v1/topics/totals.state/fetch",
                &rill_runtime::admin::api::Fetch {
                    from: Some("earliest".into()),
                    max_records: 100_000,
                    ..Default::default()
                },
            )
            .expect("fetch");
        f.records.len()
    };
    let left = h
        .wait_for(Duration::from_secs(30), || {
            let n = changelog_records();
            (n < 500).then_some(n)
        })
        .unwrap_or_else(|| panic!("the changelog was not compacted: {}", changelog_records()));
    assert!(
        left >= expected.len(),
        "{left} records for {} keys",
        expected.len()
    );

    // Restored from the compacted changelog alone.
    h.kill();
    std::fs::remove_dir_all(h.data_dir.join("state").join("totals")).ok();
    h.spawn();
    caught_up(&h, "totals");
    assert_eq!(queried(&h, "totals"), expected, "{}", h.log());
}

/// A deployment reading a compacted topic from the start sees each key's latest record
/// once: the handler walks the empty batches compaction leaves (docs/log-format.md) and
/// the worker moves past them.
#[test]
fn a_deployment_reads_a_compacted_topic() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rill.toml");
    std::fs::write(&config, "retention_check_interval = 100\n").unwrap();
    let h = TestHost::start_with(&["--config", config.to_str().unwrap()]);
    h.cli_ok(&[
        "topic",
        "create",
        "latest",
        "--cleanup-policy",
        "compact",
        "--segment-bytes",
        "4096",
    ]);
    let (lines, _) = orders(0, 2000, 7);
    // In 20 appends (batches), so segments of 4 KiB roll and seal.
    let all: Vec<&str> = lines.lines().collect();
    for chunk in all.chunks(100) {
        produce(&h, "latest", &(chunk.join("\n") + "\n"));
    }
    // Compacted, and done compacting: the size small and unchanged over twenty of the
    // cleaner's intervals. (Deploying while the cleaner still works would let the handler
    // read records that are gone by the time the test reads the topic back.)
    let mut last = (0, 0);
    h.wait_for(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(100));
        let t: TopicInfo = h.client().get("/v1/topics/latest").ok()?;
        let bytes: u64 = t.partition_info.iter().map(|p| p.size_bytes).sum();
        last = if bytes == last.0 {
            (bytes, last.1 + 1)
        } else {
            (bytes, 0)
        };
        (bytes < 20_000 && last.1 >= 20).then_some(())
    })
    .expect("the topic was not compacted");
    h.cli_ok(&[
        "deploy",
        guests::ORDER_TOTALS,
        "--name",
        "totals",
        "--topic",
        "latest",
    ]);
    caught_up(&h, "totals");
    // What survived compaction (the latest record of each key in the cleaned segments, every
    // record of the active one), read back through the admin API.
    let f: rill_runtime::admin::api::Fetched = h
        .client()
        .post(
            "/v1/topics/latest/fetch",
            &rill_runtime::admin::api::Fetch {
                from: Some("earliest".into()),
                max_records: 100_000,
                ..Default::default()
            },
        )
        .expect("fetch");
    assert!(f.records.len() < 2000, "{} records left", f.records.len());
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &f.records {
        let v: Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
        let t = want.entry(r.key.clone().unwrap()).or_default();
        t.0 += 1;
        t.1 += v["amount_cents"].as_u64().unwrap();
    }
    let t: TopicInfo = h.client().get("/v1/topics/latest").unwrap();
    let bytes: u64 = t.partition_info.iter().map(|p| p.size_bytes).sum();
    assert_eq!(
        queried(&h, "totals"),
        want,
        "topic size {bytes} B now, {} B when the handler was deployed",
        last.0
    );
}

/// Every order in the topic, read back from the log (the truth the totals must match: a
/// producer's retry could store an order twice, and then it counts twice).
fn totals_in_log(h: &TestHost, topic: &str) -> BTreeMap<String, (u64, u64)> {
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut positions = None;
    loop {
        let f: rill_runtime::admin::api::Fetched = h
            .client()
            .post(
                &format!("/v1/topics/{topic}/fetch"),
                &rill_runtime::admin::api::Fetch {
                    from: Some("earliest".into()),
                    positions: positions.clone(),
                    max_records: 100_000,
                    ..Default::default()
                },
            )
            .expect("fetch");
        if f.records.is_empty() {
            return totals;
        }
        for r in &f.records {
            let v: Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
            let t = totals.entry(r.key.clone().unwrap()).or_default();
            t.0 += 1;
            t.1 += v["amount_cents"].as_u64().unwrap();
        }
        positions = Some(f.positions);
    }
}

/// SIGKILLs while the read model handles orders: eight per run, or `RILL_STATE_KILLS` for a
/// soak (docs/reliability.md). The totals queried at the end equal the totals of the orders
/// in the log, exactly.
fn killed_while_counting(guarantee: &str) {
    let kills: u64 = std::env::var("RILL_STATE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut h = TestHost::start();
    h.cli_ok(&["topic", "create", "orders", "--partitions", "3"]);
    h.cli_ok(&[
        "deploy",
        guests::ORDER_TOTALS,
        "--name",
        "totals",
        "--topic",
        "orders",
        "--batch",
        "5",
        "--guarantee",
        guarantee,
    ]);
    let mut jitter = u64::from(std::process::id());
    let mut mid_stream = 0;
    for round in 0..kills {
        let (lines, _) = orders(round * 4000, 4000, 40);
        produce(&h, "orders", &lines);
        jitter = jitter
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((jitter >> 33) % 15));
        let d: DeploymentInfo = h.client().get("/v1/deployments/totals").unwrap();
        mid_stream += usize::from(d.lag > 0);
        h.kill();
        h.spawn();
    }
    assert!(
        mid_stream > 0,
        "no kill landed while orders were being counted"
    );
    caught_up(&h, "totals");
    let want = totals_in_log(&h, "orders");
    assert_eq!(want.values().map(|t| t.0).sum::<u64>(), kills * 4000);
    assert_eq!(queried(&h, "totals"), want, "{}", h.log());
    eprintln!(
        "{guarantee}: {kills} kills ({mid_stream} while orders were being counted), {} orders, \
         {} customers: totals exact",
        kills * 4000,
        want.len()
    );
}

#[test]
fn killed_while_counting_at_least_once() {
    killed_while_counting("at-least-once");
}

#[test]
fn killed_while_counting_exactly_once() {
    killed_while_counting("exactly-once");
}
