//! The crash loop over durable state (`--handler order-totals`): the `order-totals` read
//! model deployed on a multi-partition `orders` topic, keyed orders produced without pause
//! by two admin-API producers (each one its own thread and connection) and, with
//! confluent-kafka installed and `--producer` not `http`, the Kafka producer of the notifier
//! loop, the host SIGKILLed at
//! random moments (mid-invocation, and about one restart in four again within a few
//! milliseconds, while its stores are restoring) and restarted on the same data dir.
//!
//! After every restart that is not cut short it waits until the deployment caught up and
//! compares the queried state, every customer (a full scan, page by page), with the totals
//! computed from the `orders` topic itself, read from the start: what is in the log is the
//! truth, whatever a producer thinks it sent. Every entry's position must be its partition's
//! end. At the end a clean restart must restore every key (`state restored` log lines:
//! keys, from_snapshot, from_changelog).
//!
//! ```text
//! target/debug/crashloop --handler order-totals --kills 10
//! target/release/crashloop --handler order-totals --kills 300 --guarantee exactly-once
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rill_runtime::admin::api::{Produce, ProduceRecord, Produced, StateScan};
use rill_runtime::admin::client::Client;
use rill_runtime::scheduler::DeploymentInfo;
use rill_tests::guests;
use rill_tests::host::TestHost;

use std::sync::Mutex;

use crate::{
    Args, KafkaProducer, PARTITIONS, Rng, Shared, WAIT, have_confluent_kafka, read_to_end,
    stable_port,
};

/// Customers the orders are spread over.
const CUSTOMERS: u64 = 97;
const DEPLOYMENT: &str = "totals";

/// The totals of one customer, as `order-totals` stores them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    orders: u64,
    total_cents: u64,
}

/// Produces 20-record requests of keyed orders until `killed` (or the host refuses).
fn producer(client: Client, seed: u64, killed: Arc<AtomicBool>) {
    let mut rng = Rng(seed | 1);
    while !killed.load(Ordering::SeqCst) {
        let req = Produce {
            records: (0..20)
                .map(|_| ProduceRecord {
                    key: Some(format!("customer-{:03}", rng.below(CUSTOMERS))),
                    value: Some(format!(r#"{{"amount_cents":{}}}"#, 1 + rng.below(100_000))),
                    ..ProduceRecord::default()
                })
                .collect(),
        };
        if client
            .post::<_, Produced>("/v1/topics/orders/records", &req)
            .is_err()
        {
            assert!(
                killed.load(Ordering::SeqCst),
                "produce failed before the kill"
            );
            return;
        }
    }
}

/// The truth: totals per customer from every record of `orders`, read incrementally.
struct Expected {
    pos: BTreeMap<u32, i64>,
    totals: BTreeMap<String, Totals>,
    orders: u64,
}

impl Expected {
    fn read(&mut self, client: &Client) {
        let fresh = read_to_end(client, "orders", &mut self.pos, false);
        for r in &fresh.records {
            let key = r.key.clone().expect("every order has a key");
            let v: serde_json::Value =
                serde_json::from_str(r.value.as_deref().expect("text")).expect("order JSON");
            let t = self.totals.entry(key).or_default();
            t.orders += 1;
            t.total_cents += v["amount_cents"].as_u64().expect("amount_cents");
            self.orders += 1;
        }
    }
}

/// Waits until every partition's committed offset is its end and every key's position
/// too, and returns the state then, every key.
fn caught_up(h: &TestHost) -> BTreeMap<String, Totals> {
    let client = h.client();
    h.wait_for(WAIT, || {
        let d: DeploymentInfo = client.get(&format!("/v1/deployments/{DEPLOYMENT}")).ok()?;
        let ends: BTreeMap<u32, i64> = d.partitions.iter().map(|p| (p.partition, p.end)).collect();
        if !d.partitions.iter().all(|p| p.committed == Some(p.end)) {
            return None;
        }
        scan_all(&client, &ends)
    })
    .unwrap_or_else(|| {
        let d = client.get_text(&format!("/v1/deployments/{DEPLOYMENT}"));
        let scan = client.get_text(&format!("/v1/deployments/{DEPLOYMENT}/state?limit=10000"));
        panic!(
            "order-totals did not catch up (committed offsets and store positions at the \
             end)\ndeployment: {d:?}\nstate: {scan:?}\nhost log:\n{}",
            h.log()
        )
    })
}

/// Every key of the deployment's state, page by page; `None` if a key's position is not
/// its partition's end in `ends` (not caught up yet).
fn scan_all(client: &Client, ends: &BTreeMap<u32, i64>) -> Option<BTreeMap<String, Totals>> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/deployments/{DEPLOYMENT}/state?limit=40");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page: StateScan = client.get(&path).ok()?;
        // A partition whose worker has not started yet (just after a restart) is listed
        // as elsewhere, not scanned: not caught up yet.
        if !page.elsewhere.is_empty() {
            return None;
        }
        for e in page.entries {
            if Some(&e.position) != ends.get(&e.partition) {
                return None;
            }
            let v: serde_json::Value =
                serde_json::from_str(e.value.as_deref().expect("text value")).expect("JSON");
            let t = Totals {
                orders: v["orders"].as_u64().expect("orders"),
                total_cents: v["total_cents"].as_u64().expect("total_cents"),
            };
            assert!(out.insert(e.key, t).is_none(), "a key listed twice");
        }
        match page.next_after {
            Some(a) => after = Some(a),
            None => return Some(out),
        }
    }
}

/// Compares the queried state with the log's totals; returns the mismatches (each printed).
fn compare(expected: &Expected, got: &BTreeMap<String, Totals>, kills: u32) -> u64 {
    let mut bad = 0;
    for (k, want) in &expected.totals {
        let have = got.get(k).copied().unwrap_or_default();
        if have != *want {
            bad += 1;
            eprintln!("MISMATCH after {kills} kills: {k}: state {have:?}, log {want:?}");
        }
    }
    for k in got.keys().filter(|k| !expected.totals.contains_key(*k)) {
        bad += 1;
        eprintln!("MISMATCH after {kills} kills: {k} in state, never in the log");
    }
    bad
}

/// The `state restored` lines logged since byte `from` of the host log: (keys,
/// from_snapshot, from_changelog, elapsed_ms) summed over partitions, and how many.
fn restored_since(log: &str, from: usize) -> (u64, u64, u64, u64, usize) {
    let mut sum = (0, 0, 0, 0, 0);
    for line in log[from..].lines().filter(|l| l.contains("state restored")) {
        let line = &strip_ansi(line);
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.trim_matches('"').parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        };
        sum.0 += field("keys");
        sum.1 += field("from_snapshot");
        sum.2 += field("from_changelog");
        sum.3 = sum.3.max(field("elapsed_ms"));
        sum.4 += 1;
    }
    sum
}

/// Restarts the (stopped or killed) host, waits until it caught up, checks the state against
/// the log and that the restore logged every key; returns the restore's figures.
fn restart_and_check(h: &mut TestHost, expected: &Expected, kills: u32) -> String {
    let log_from = h.log().len();
    let restart = Instant::now();
    h.spawn();
    let got = caught_up(h);
    let restart_ms = restart.elapsed().as_millis();
    assert_eq!(
        compare(expected, &got, kills),
        0,
        "the state differs from the log after the last restart; host log: {}",
        h.log_path.display()
    );
    let (keys, from_snapshot, from_changelog, restore_ms, stores) =
        restored_since(&h.log(), log_from);
    assert_eq!(
        keys,
        expected.totals.len() as u64,
        "the restart did not restore every key"
    );
    format!(
        "stores={stores} keys={keys} from_snapshot={from_snapshot} \
         from_changelog={from_changelog} max_store_ms={restore_ms} \
         ready_and_caught_up_ms={restart_ms}"
    )
}

/// `line` without its terminal colour codes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        match (in_code, c) {
            (false, '\u{1b}') => in_code = true,
            (false, c) => out.push(c),
            (true, 'm') => in_code = false,
            (true, _) => {}
        }
    }
    out
}

pub fn run(args: &Args) {
    let started = Instant::now();
    let mut rng = Rng(args.seed);
    let guarantee = if args.exactly_once {
        "exactly-once"
    } else {
        "at-least-once"
    };
    let kafka_addr = format!(
        "127.0.0.1:{}",
        stable_port(&mut Rng(args.seed ^ 0x006b_6166_6b61))
    );
    let mut h = TestHost::start_with(&["--default-flush", "always", "--kafka-addr", &kafka_addr]);
    h.cli_ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        &PARTITIONS.to_string(),
    ]);
    h.cli_ok(&[
        "deploy",
        guests::ORDER_TOTALS,
        "--name",
        DEPLOYMENT,
        "--topic",
        "orders",
        "--batch",
        &args.batch.to_string(),
        "--guarantee",
        guarantee,
    ]);
    // The notifier loop's confluent-kafka producer too (its orders carry `amount_cents`),
    // unless `--producer http` or it is not installed; its reports are not checked here.
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut kafka = (args.kafka && have_confluent_kafka()).then(|| {
        let log = h.log_path.with_file_name("kafka-producer.log");
        KafkaProducer::start(h.kafka, &args.codec, log, shared.clone())
    });
    let mut expected = Expected {
        pos: (0..PARTITIONS).map(|p| (p, 0)).collect(),
        totals: BTreeMap::new(),
        orders: 0,
    };
    let (mut kills, mut restore_kills, mut checks, mut mismatches) = (0u32, 0u32, 0u32, 0u64);
    while kills < args.kills {
        let killed = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let (c, k, seed) = (h.client(), killed.clone(), rng.next());
                std::thread::spawn(move || producer(c, seed, k))
            })
            .collect();
        if let Some(k) = &mut kafka {
            k.command("resume");
        }
        // A random moment: mostly while produce and invocations are both busy.
        std::thread::sleep(Duration::from_millis(10 + rng.below(300)));
        killed.store(true, Ordering::SeqCst);
        h.kill();
        kills += 1;
        if let Some(k) = &mut kafka {
            k.pause();
        }
        for p in producers {
            p.join().expect("producer thread");
        }
        h.spawn();
        // About one restart in four is cut short, while the stores restore or just after.
        if kills < args.kills && rng.below(4) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(30)));
            h.kill();
            kills += 1;
            restore_kills += 1;
            h.spawn();
        }
        // Its records queued while the host was down are delivered before the checks.
        if let Some(k) = &mut kafka {
            k.wait_paused();
        }
        let got = caught_up(&h);
        expected.read(&h.client());
        checks += 1;
        mismatches += compare(&expected, &got, kills);
        assert_eq!(
            mismatches,
            0,
            "the state differs from the log after {kills} kills; host log: {}",
            h.log_path.display()
        );
        if kills % 25 == 0 {
            eprintln!(
                "crashloop state: {kills} kills, {} orders, {:.0?}",
                expected.orders,
                started.elapsed()
            );
        }
    }
    if let Some(k) = kafka.take() {
        k.stop();
    }
    let kafka_acked = shared.lock().unwrap().kafka_acked;
    // A last SIGKILL, then a clean stop: both restarts restore every key, the first from the
    // last snapshot and the changelog after it, the second from the snapshot the stop wrote.
    h.kill();
    kills += 1;
    let killed_restore = restart_and_check(&mut h, &expected, kills);
    assert!(h.stop(), "the host did not stop cleanly");
    let clean_restore = restart_and_check(&mut h, &expected, kills);
    println!(
        "crashloop ok handler=order-totals guarantee={guarantee} kills={kills} \
         restore_kills={restore_kills} checks={checks} kafka_acked={kafka_acked} \
         orders_in_log={} customers={} \
         mismatches={mismatches} restore_after_kill: {killed_restore} \
         restore_after_stop: {clean_restore} batch={} seed={} elapsed_s={:.1}",
        expected.orders,
        expected.totals.len(),
        args.batch,
        args.seed,
        started.elapsed().as_secs_f64()
    );
}
