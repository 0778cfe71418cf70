//! The crash loop: a real `runtime serve` under concurrent produce, with the notifier deployed
//! (its emails are the record of what was processed), killed with SIGKILL at random moments
//! and restarted on the same data dir. After every restart it checks:
//!
//! - every acknowledged record (flush `always`) is at the partition and offset the host
//!   acknowledged, byte for byte, and each partition's records are contiguous and in the
//!   order they were produced, with nothing in the log that was never sent;
//! - no committed offset is beyond the end of the log;
//! - once the deployment has caught up, every record in the log was processed (has an
//!   email) at least once;
//! - the duplicates one kill adds to a partition are at most one invocation's worth
//!   (`--batch` records): only the last invocation per partition may run again.
//!
//! ```text
//! cargo build -p rill-runtime --bin runtime && cargo build -p rill-tests --bin crashloop
//! target/debug/crashloop                 # quick: 5 kills (what CI runs, via reliability::)
//! target/debug/crashloop --long          # 300 kills
//! target/debug/crashloop --kills 50 --seed 7
//! ```
//!
//! Exits 0 and prints one `crashloop ok ...` summary line, or panics naming the violation.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_runtime::admin::api::{Fetch, Fetched, Produce, ProduceRecord, Produced, TopicInfo};
use rill_runtime::admin::client::Client;
use rill_runtime::scheduler::DeploymentInfo;
use rill_tests::guests;
use rill_tests::host::TestHost;

const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);

/// xorshift64*: enough randomness for kill times, reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Args {
    kills: u32,
    seed: u64,
    batch: u32,
}

fn parse_args() -> Args {
    let mut a = Args {
        kills: 5,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
        batch: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--long" => a.kills = 300,
            "--kills" => a.kills = val("--kills") as u32,
            "--seed" => a.seed = val("--seed").max(1),
            "--batch" => a.batch = val("--batch").max(1) as u32,
            "-h" | "--help" => {
                println!("usage: crashloop [--long | --kills N] [--seed S] [--batch B]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    a
}

/// The value produced for order `id`: the notifier's input, and what the log must return.
fn order_value(id: u64) -> String {
    format!(
        r#"{{"type":"order_created","order_id":{id},"email":"c{id}@example.com","total_cents":{}}}"#,
        id * 7 % 10_000
    )
}

fn order_key(id: u64) -> String {
    format!("customer-{}", id % 23)
}

/// The order id in a record value, checking the whole value is exactly what was produced.
fn parse_order(value: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(value)
        .unwrap_or_else(|e| panic!("garbage in the log (not JSON: {e}): {value:?}"));
    let id = v["order_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("garbage in the log (no order_id): {value:?}"));
    assert_eq!(value, order_value(id), "record {id} is not byte-identical");
    id
}

/// One acknowledged record: where the host said it put it.
#[derive(Debug, Clone, Copy)]
struct Acked {
    id: u64,
    partition: u32,
    offset: i64,
}

#[derive(Default)]
struct Shared {
    acked: Vec<Acked>,
    /// The highest id ever sent (acknowledged or not).
    sent_up_to: u64,
    /// An error seen before the kill (a real failure).
    early_error: Option<String>,
}

/// Produces 20-record requests until the host dies (or `stop`).
fn producer(client: Client, first_id: u64, shared: Arc<Mutex<Shared>>, killed: Arc<AtomicBool>) {
    let mut next = first_id;
    loop {
        let ids: Vec<u64> = (next..next + 20).collect();
        next += 20;
        shared.lock().unwrap().sent_up_to = next;
        let req = Produce {
            records: ids
                .iter()
                .map(|&id| ProduceRecord {
                    key: Some(order_key(id)),
                    value: Some(order_value(id)),
                    ..ProduceRecord::default()
                })
                .collect(),
        };
        match client.post::<_, Produced>("/v1/topics/orders/records", &req) {
            Ok(p) => {
                let mut s = shared.lock().unwrap();
                for (&id, &(partition, offset)) in ids.iter().zip(&p.offsets) {
                    s.acked.push(Acked {
                        id,
                        partition,
                        offset,
                    });
                }
            }
            Err(e) => {
                if !killed.load(Ordering::SeqCst) {
                    shared.lock().unwrap().early_error = Some(e.to_string());
                }
                return;
            }
        }
        if killed.load(Ordering::SeqCst) {
            return;
        }
    }
}

fn fetch_from(client: &Client, topic: &str, positions: &BTreeMap<u32, i64>) -> Fetched {
    client
        .post(
            &format!("/v1/topics/{topic}/fetch"),
            &Fetch {
                positions: Some(positions.clone()),
                max_records: 20_000,
                ..Fetch::default()
            },
        )
        .unwrap_or_else(|e| panic!("fetch {topic}: {e}"))
}

/// Reads `topic` from `positions` to its end, advancing `positions`.
fn read_to_end(client: &Client, topic: &str, positions: &mut BTreeMap<u32, i64>) -> Fetched {
    let mut all = Fetched {
        records: Vec::new(),
        positions: BTreeMap::new(),
        ends: BTreeMap::new(),
    };
    loop {
        let f = fetch_from(client, topic, positions);
        let done = f.records.is_empty();
        *positions = f.positions.clone();
        all.ends = f.ends.clone();
        all.records.extend(f.records);
        if done || f.ends.iter().all(|(p, e)| positions.get(p) == Some(e)) {
            all.positions = positions.clone();
            return all;
        }
    }
}

/// What the checker knows after each restart.
struct Model {
    /// Next unverified offset per partition of `orders`.
    orders_pos: BTreeMap<u32, i64>,
    /// Order id at each verified offset, per partition.
    ids: BTreeMap<u32, Vec<u64>>,
    /// Which partition each order id is in.
    partition_of: HashMap<u64, u32>,
    /// Next unread offset of `emails`.
    emails_pos: BTreeMap<u32, i64>,
    /// Emails seen per order id.
    emails: HashMap<u64, u32>,
    /// Duplicates so far per partition.
    dups: BTreeMap<u32, u64>,
    /// Next acked record (index into `Shared::acked`) to check.
    acked_checked: usize,
    records_checked: u64,
    max_dup_per_kill: u64,
}

impl Model {
    fn new() -> Self {
        Model {
            orders_pos: (0..PARTITIONS).map(|p| (p, 0)).collect(),
            ids: (0..PARTITIONS).map(|p| (p, Vec::new())).collect(),
            partition_of: HashMap::new(),
            emails_pos: [(0, 0)].into_iter().collect(),
            emails: HashMap::new(),
            dups: (0..PARTITIONS).map(|p| (p, 0)).collect(),
            acked_checked: 0,
            records_checked: 0,
            max_dup_per_kill: 0,
        }
    }

    /// Reads what the log gained since the last check and verifies it, then every new
    /// acknowledgement; with `full`, re-reads and re-verifies the whole of `orders`.
    fn check_log(&mut self, client: &Client, shared: &Shared, sent_up_to: u64, full: bool) {
        let topic: TopicInfo = client.get("/v1/topics/orders").expect("topic info");
        for p in &topic.partition_info {
            let verified = self.orders_pos[&p.partition];
            assert!(
                p.end >= verified,
                "partition {} shrank: end {} < {verified} already verified",
                p.partition,
                p.end
            );
        }
        if full {
            let mut from: BTreeMap<u32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
            let all = read_to_end(client, "orders", &mut from);
            let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
            for r in &all.records {
                let id = parse_order(r.value.as_deref().expect("text value"));
                let i = seen.entry(r.partition).or_default();
                if let Some(&known) = self.ids[&r.partition].get(*i) {
                    assert_eq!(
                        known, id,
                        "partition {} offset {} changed",
                        r.partition, r.offset
                    );
                }
                *i += 1;
                self.records_checked += 1;
            }
        }
        let mut pos = self.orders_pos.clone();
        let fresh = read_to_end(client, "orders", &mut pos);
        for r in &fresh.records {
            let ids = self.ids.get_mut(&r.partition).expect("known partition");
            assert_eq!(
                r.offset,
                ids.len() as i64,
                "partition {}: offsets not contiguous",
                r.partition
            );
            let id = parse_order(r.value.as_deref().expect("text value"));
            assert_eq!(
                r.key.as_deref(),
                Some(order_key(id).as_str()),
                "key of {id}"
            );
            assert!(id < sent_up_to, "record {id} was never sent");
            if let Some(&prev) = ids.last() {
                assert!(prev < id, "partition {}: {id} after {prev}", r.partition);
            }
            assert!(
                self.partition_of.insert(id, r.partition).is_none(),
                "order {id} stored twice (the producer never retries)"
            );
            ids.push(id);
            self.records_checked += 1;
        }
        self.orders_pos = pos;
        for a in &shared.acked[self.acked_checked..] {
            let at = self.ids[&a.partition].get(a.offset as usize);
            assert_eq!(
                at,
                Some(&a.id),
                "acknowledged record {} at {}/{} is missing or different",
                a.id,
                a.partition,
                a.offset
            );
        }
        self.acked_checked = shared.acked.len();
    }

    /// Checks committed offsets against the log's end.
    fn check_commits(&self, client: &Client) {
        let d: DeploymentInfo = client.get("/v1/deployments/n").expect("deployment");
        for p in &d.partitions {
            if let Some(c) = p.committed {
                assert!(
                    c <= p.end,
                    "partition {}: committed {c} is beyond the end {}",
                    p.partition,
                    p.end
                );
            }
        }
    }

    /// Waits until the notifier caught up, reads the new emails, and checks every record
    /// was processed and this kill added at most one invocation of duplicates per partition.
    fn check_processing(&mut self, h: &TestHost, batch: u32) {
        let client = h.client();
        h.wait_for(WAIT, || {
            let d: DeploymentInfo = client.get("/v1/deployments/n").ok()?;
            let ends: BTreeMap<u32, i64> =
                d.partitions.iter().map(|p| (p.partition, p.end)).collect();
            let done = d.partitions.iter().all(|p| p.committed == Some(p.end))
                && ends
                    .iter()
                    .all(|(p, e)| self.orders_pos.get(p).is_some_and(|v| v <= e));
            done.then_some(())
        })
        .unwrap_or_else(|| panic!("the notifier did not catch up; host log:\n{}", h.log()));
        let mut pos = self.emails_pos.clone();
        let new = read_to_end(&client, "emails", &mut pos);
        self.emails_pos = pos;
        let mut added: BTreeMap<u32, u64> = BTreeMap::new();
        for r in &new.records {
            let v: serde_json::Value =
                serde_json::from_str(r.value.as_deref().expect("text")).expect("email JSON");
            let id = v["order_id"].as_u64().expect("order_id in email");
            let p = *self
                .partition_of
                .get(&id)
                .unwrap_or_else(|| panic!("email for order {id}, which is not in the log"));
            let n = self.emails.entry(id).or_default();
            *n += 1;
            if *n > 1 {
                *added.entry(p).or_default() += 1;
            }
        }
        for (p, ids) in &self.ids {
            for id in ids {
                assert!(
                    self.emails.contains_key(id),
                    "order {id} (partition {p}) was never processed"
                );
            }
        }
        for (p, n) in added {
            assert!(
                n <= u64::from(batch),
                "partition {p}: one kill caused {n} duplicates, more than one invocation ({batch})"
            );
            self.max_dup_per_kill = self.max_dup_per_kill.max(n);
            *self.dups.get_mut(&p).expect("partition") += n;
        }
    }
}

fn main() {
    let args = parse_args();
    if std::env::var_os("RILL_BIN").is_none() {
        // This binary sits next to `runtime` in target/<profile>/.
        let exe = std::env::current_exe().expect("current exe");
        let bin = exe.with_file_name("runtime");
        // SAFETY: single-threaded here; nothing else reads the environment yet.
        unsafe { std::env::set_var("RILL_BIN", bin) };
    }
    let started = Instant::now();
    let mut rng = Rng(args.seed);
    let mut h = TestHost::start_with(&["--default-flush", "always"]);
    h.cli_ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        &PARTITIONS.to_string(),
    ]);
    h.cli_ok(&["topic", "create", "emails"]);
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
        &args.batch.to_string(),
    ]);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut model = Model::new();
    let mut next_id = 0u64;
    let mut kills = 0u32;
    while kills < args.kills {
        let killed = Arc::new(AtomicBool::new(false));
        let producer = {
            let (c, s, k) = (h.client(), shared.clone(), killed.clone());
            std::thread::spawn(move || producer(c, next_id, s, k))
        };
        // A random moment: mostly while produce and processing are both busy.
        std::thread::sleep(Duration::from_millis(10 + rng.below(300)));
        killed.store(true, Ordering::SeqCst);
        h.kill();
        kills += 1;
        producer.join().expect("producer thread");
        h.spawn();
        let client = h.client();
        let s = shared.lock().unwrap();
        if let Some(e) = &s.early_error {
            panic!("produce failed before the kill: {e}");
        }
        next_id = s.sent_up_to;
        model.check_commits(&client);
        let full = kills.is_multiple_of(50) || kills == args.kills;
        model.check_log(&client, &s, next_id, full);
        drop(s);
        model.check_processing(&h, args.batch);
        model.check_commits(&client);
        if kills.is_multiple_of(25) {
            eprintln!(
                "crashloop: {kills} kills, {} records in the log, {:.0?}",
                model.partition_of.len(),
                started.elapsed()
            );
        }
    }
    let acked = shared.lock().unwrap().acked.len();
    let dups: u64 = model.dups.values().sum();
    println!(
        "crashloop ok kills={kills} acked={acked} records_in_log={} records_checked={} \
         processed={} duplicates={dups} max_duplicates_per_partition_per_kill={} batch={} \
         seed={} elapsed_s={:.1}",
        model.partition_of.len(),
        model.records_checked,
        model.emails.len(),
        model.max_dup_per_kill,
        args.batch,
        args.seed,
        started.elapsed().as_secs_f64()
    );
}
