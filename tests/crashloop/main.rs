//! The crash loop: a real `runtime serve` under concurrent produce, with the notifier deployed
//! (its emails are the record of what was processed), killed with SIGKILL at random moments
//! and restarted on the same data dir. Records are produced through the admin API (a thread
//! of this process), through the Kafka listener (confluent-kafka, i.e. librdkafka, in
//! `tests/kafka/crashloop_producer.py`, one process that lives through every kill), or both
//! at once (`--producer`, default `both`). After every restart it checks:
//!
//! - every acknowledged record (flush `always`; acks=all for Kafka) is at the partition and
//!   offset the host acknowledged, byte for byte, and each partition's records are contiguous
//!   and, per producer, in the order they were produced, with nothing in the log that was
//!   never sent and nothing twice (neither producer retries);
//! - no committed offset is beyond the end of the log;
//! - once the deployment has caught up, every record in the log was processed (has an
//!   email) at least once;
//! - the duplicates one kill adds to a partition are at most one invocation's worth
//!   (`--batch` records): only the last invocation per partition may run again;
//! - with `--guarantee exactly-once`, the emails are read as a read_committed consumer
//!   reads them, no order is mailed twice, and the emails of each partition follow its
//!   orders in order (per producer).
//!
//! ```text
//! cargo build -p rill-runtime --bin runtime && cargo build -p rill-tests --bin crashloop
//! target/debug/crashloop                 # quick: 5 kills (what CI runs, via reliability::)
//! target/debug/crashloop --long          # 300 kills
//! target/debug/crashloop --kills 50 --seed 7
//! target/debug/crashloop --kills 100 --producer kafka
//! target/debug/crashloop --kills 50 --producer kafka --kafka-codec zstd
//! target/debug/crashloop --kills 300 --guarantee exactly-once
//! target/debug/crashloop --kills 20 --handler order-totals --guarantee exactly-once
//! ```
//!
//! `--handler order-totals` runs the durable-state scenario instead (`state.rs`): the
//! queried totals per customer against those of the orders in the log, after every kill.
//!
//! Exits 0 and prints one `crashloop ok ...` summary line, or panics naming the violation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rill_runtime::admin::api::{Fetch, Fetched, Produce, ProduceRecord, Produced, TopicInfo};
use rill_runtime::admin::client::Client;
use rill_runtime::scheduler::DeploymentInfo;
use rill_tests::guests;
use rill_tests::host::TestHost;

mod state;

const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);
/// Order ids of the Kafka producer start here, those of the admin-API producer at 0, so every
/// record names its producer and each producer's order can be checked on its own.
const KAFKA_IDS: u64 = 1_000_000_000_000;

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
    http: bool,
    kafka: bool,
    /// `--producer` was given, so a missing Kafka client is an error, never a fallback.
    producer_explicit: bool,
    /// librdkafka's `compression.type` for the Kafka producer.
    codec: String,
    /// The notifier's delivery guarantee. Under exactly-once the emails are read committed
    /// and no order may be mailed twice.
    exactly_once: bool,
    /// `--handler order-totals`: the durable-state scenario (`state.rs`) instead of the
    /// notifier's.
    order_totals: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        kills: 5,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
        batch: 5,
        http: true,
        kafka: true,
        producer_explicit: false,
        codec: "none".to_owned(),
        exactly_once: false,
        order_totals: false,
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
            "--producer" => {
                (a.http, a.kafka) = match it.next().as_deref() {
                    Some("http") => (true, false),
                    Some("kafka") => (false, true),
                    Some("both") => (true, true),
                    other => panic!("--producer needs http, kafka or both, not {other:?}"),
                };
                a.producer_explicit = true;
            }
            "--kafka-codec" => {
                a.codec = it.next().unwrap_or_else(|| {
                    panic!("--kafka-codec needs none, gzip, snappy, lz4 or zstd")
                });
            }
            "--guarantee" => {
                a.exactly_once = match it.next().as_deref() {
                    Some("exactly-once") => true,
                    Some("at-least-once") => false,
                    other => {
                        panic!("--guarantee needs at-least-once or exactly-once, not {other:?}")
                    }
                };
            }
            "--handler" => {
                a.order_totals = match it.next().as_deref() {
                    Some("order-totals") => true,
                    Some("notifier") => false,
                    other => panic!("--handler needs notifier or order-totals, not {other:?}"),
                };
            }
            "-h" | "--help" => {
                println!(
                    "usage: crashloop [--long | --kills N] [--seed S] [--batch B] \
                     [--producer http|kafka|both] [--kafka-codec none|gzip|snappy|lz4|zstd] \
                     [--guarantee at-least-once|exactly-once] [--handler notifier|order-totals]"
                );
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
        r#"{{"type":"order_created","order_id":{id},"email":"c{id}@example.com","total_cents":{t},"amount_cents":{t}}}"#,
        t = id * 7 % 10_000
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
    /// Acknowledged records of both producers, in the order the acknowledgements arrived.
    acked: Vec<Acked>,
    /// One past the highest id the admin-API producer ever sent (acknowledged or not).
    sent_up_to: u64,
    /// An error the admin-API producer saw before the kill (a real failure).
    early_error: Option<String>,
    /// One past the highest id the Kafka producer had produced at its last pause (0 before
    /// the first: until then no Kafka record may be in the log).
    kafka_sent_up_to: u64,
    kafka_acked: u64,
    /// Kafka records whose delivery report was an error; they may or may not be in the log.
    kafka_failed: HashSet<u64>,
    /// Those errors by librdkafka's name.
    kafka_errors: BTreeMap<String, u64>,
}

impl Shared {
    fn was_sent(&self, id: u64) -> bool {
        if id >= KAFKA_IDS {
            id < self.kafka_sent_up_to
        } else {
            id < self.sent_up_to
        }
    }
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

/// The delivery errors a kill explains: librdkafka fails the requests in flight on a
/// connection that dies (with `retries=0` it does not send them again). Anything else, an
/// error code from the host or a timeout, is a failure of the host.
const KAFKA_ERRORS_ON_KILL: &[&str] = &["_TRANSPORT"];

/// What the Kafka producer says besides delivery reports.
enum Event {
    Ready { partitions: u32 },
    Paused { next_id: u64, missing: u64 },
    Exited,
}

/// `tests/kafka/crashloop_producer.py`: one confluent-kafka producer for the whole run. It
/// lives through every kill, as an application's producer would, reconnecting to the
/// restarted host on the same port; its delivery reports go into [`Shared`].
struct KafkaProducer {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Event>,
    log_path: PathBuf,
}

impl KafkaProducer {
    fn start(
        bootstrap: SocketAddr,
        codec: &str,
        log_path: PathBuf,
        shared: Arc<Mutex<Shared>>,
    ) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka");
        let log = std::fs::File::create(&log_path).expect("producer log file");
        let mut child = Command::new("python3")
            .arg(dir.join("crashloop_producer.py"))
            .args(["--bootstrap", &bootstrap.to_string(), "--topic", "orders"])
            .args(["--first-id", &KAFKA_IDS.to_string(), "--codec", codec])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("run python3");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::channel();
        // A panic here drops `tx`, which the main thread sees as the producer gone.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let f: Vec<&str> = line.split('\t').collect();
                match f[..] {
                    ["ack", partition, offset, key, value] => {
                        let id = parse_order(value);
                        assert_eq!(key, order_key(id), "key of Kafka order {id}");
                        let mut s = shared.lock().unwrap();
                        s.acked.push(Acked {
                            id,
                            partition: partition.parse().expect("partition"),
                            offset: offset.parse().expect("offset"),
                        });
                        s.kafka_acked += 1;
                    }
                    ["err", name, _key, value] => {
                        let id = parse_order(value);
                        assert!(
                            KAFKA_ERRORS_ON_KILL.contains(&name),
                            "Kafka order {id}: delivery error {name}, which no kill explains"
                        );
                        let mut s = shared.lock().unwrap();
                        s.kafka_failed.insert(id);
                        *s.kafka_errors.entry(name.to_owned()).or_default() += 1;
                    }
                    ["ready", n] => {
                        let partitions = n.parse().expect("partition count");
                        let _ = tx.send(Event::Ready { partitions });
                    }
                    ["paused", next, missing] => {
                        let next_id = next.parse().expect("next id");
                        let missing = missing.parse().expect("missing count");
                        let _ = tx.send(Event::Paused { next_id, missing });
                    }
                    _ => panic!("unexpected line from the Kafka producer: {line:?}"),
                }
            }
            let _ = tx.send(Event::Exited);
        });
        let mut p = KafkaProducer {
            child,
            stdin,
            events,
            log_path,
        };
        match p.next_event() {
            Event::Ready { partitions } => assert_eq!(partitions, PARTITIONS, "Kafka metadata"),
            _ => p.gone(),
        }
        p
    }

    fn command(&mut self, cmd: &str) {
        if writeln!(self.stdin, "{cmd}")
            .and_then(|()| self.stdin.flush())
            .is_err()
        {
            self.gone();
        }
    }

    /// Asks it to stop producing; its records cut by a kill get their error reports, the
    /// rest wait for the restarted host ([`KafkaProducer::wait_paused`]).
    fn pause(&mut self) {
        self.command("pause");
    }

    /// Waits until every record produced so far has a delivery report; returns the next id.
    fn wait_paused(&mut self) -> u64 {
        match self.next_event() {
            Event::Paused { next_id, missing } => {
                assert_eq!(
                    missing,
                    0,
                    "{missing} Kafka records got no delivery report; producer log:\n{}",
                    self.log()
                );
                next_id
            }
            _ => self.gone(),
        }
    }

    fn next_event(&mut self) -> Event {
        // Only a guard against a hang: the script itself gives up on delivery after 150 s.
        self.events
            .recv_timeout(Duration::from_secs(200))
            .unwrap_or(Event::Exited)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn gone(&mut self) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        panic!(
            "the Kafka producer failed or hung ({status:?}); its log:\n{}",
            self.log()
        );
    }

    fn stop(mut self) {
        self.command("stop");
        self.wait_paused();
        let status = self.child.wait().expect("wait for the Kafka producer");
        assert!(status.success(), "Kafka producer: {status}\n{}", self.log());
    }
}

impl Drop for KafkaProducer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether confluent-kafka can be imported.
fn have_confluent_kafka() -> bool {
    Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free loopback port below the kernel's ephemeral range, for a Kafka listener that keeps
/// its port across restarts so the producer can reconnect. A port from the ephemeral range
/// could be taken while the host is down as the local port of an outgoing connection (even
/// of librdkafka's own reconnect to it: a TCP self-connect), and the restart could not bind.
fn stable_port(rng: &mut Rng) -> u16 {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 10_000u16.min(ephemeral / 2);
    for _ in 0..1000 {
        let port = low + rng.below(u64::from(ephemeral - low)) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {ephemeral}");
}

fn fetch_from(
    client: &Client,
    topic: &str,
    positions: &BTreeMap<u32, i64>,
    read_committed: bool,
) -> Fetched {
    client
        .post(
            &format!("/v1/topics/{topic}/fetch"),
            &Fetch {
                positions: Some(positions.clone()),
                max_records: 20_000,
                read_committed,
                ..Fetch::default()
            },
        )
        .unwrap_or_else(|e| panic!("fetch {topic}: {e}"))
}

/// Reads `topic` from `positions` to its end (its last stable offset when
/// `read_committed`), advancing `positions`.
fn read_to_end(
    client: &Client,
    topic: &str,
    positions: &mut BTreeMap<u32, i64>,
    read_committed: bool,
) -> Fetched {
    let mut all = Fetched {
        records: Vec::new(),
        positions: BTreeMap::new(),
        ends: BTreeMap::new(),
    };
    loop {
        let f = fetch_from(client, topic, positions, read_committed);
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
    /// The last verified order id per partition and producer (`true`: Kafka).
    last: HashMap<(u32, bool), u64>,
    /// Next unread offset of `emails`.
    emails_pos: BTreeMap<u32, i64>,
    /// Emails seen per order id.
    emails: HashMap<u64, u32>,
    /// Exactly once: next unread offset of `emails` for a read_uncommitted reader, the
    /// emails it saw per order, and how many it saw twice (outputs of aborted transactions:
    /// the proof that kills cut transactions, which read_committed readers never see).
    uncommitted_pos: BTreeMap<u32, i64>,
    uncommitted: HashMap<u64, u32>,
    uncommitted_dups: u64,
    /// Exactly once: the last order id mailed per (partition, producer), to check that the
    /// committed emails follow the orders' order.
    last_mailed: HashMap<(u32, bool), u64>,
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
            last: HashMap::new(),
            emails_pos: [(0, 0)].into_iter().collect(),
            emails: HashMap::new(),
            uncommitted_pos: [(0, 0)].into_iter().collect(),
            uncommitted: HashMap::new(),
            uncommitted_dups: 0,
            last_mailed: HashMap::new(),
            dups: (0..PARTITIONS).map(|p| (p, 0)).collect(),
            acked_checked: 0,
            records_checked: 0,
            max_dup_per_kill: 0,
        }
    }

    /// Reads what the log gained since the last check and verifies it, then every new
    /// acknowledgement; with `full`, re-reads and re-verifies the whole of `orders`.
    fn check_log(&mut self, client: &Client, shared: &Shared, full: bool) {
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
            let all = read_to_end(client, "orders", &mut from, false);
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
        let fresh = read_to_end(client, "orders", &mut pos, false);
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
            assert!(shared.was_sent(id), "record {id} was never sent");
            // The two producers interleave; each one's records keep their order.
            if let Some(prev) = self.last.insert((r.partition, id >= KAFKA_IDS), id) {
                assert!(prev < id, "partition {}: {id} after {prev}", r.partition);
            }
            assert!(
                self.partition_of.insert(id, r.partition).is_none(),
                "order {id} stored twice (neither producer retries)"
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
    fn check_processing(&mut self, h: &TestHost, batch: u32, exactly_once: bool) {
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
        if exactly_once {
            let mut pos = self.uncommitted_pos.clone();
            let seen = read_to_end(&client, "emails", &mut pos, false);
            self.uncommitted_pos = pos;
            for r in &seen.records {
                let v: serde_json::Value =
                    serde_json::from_str(r.value.as_deref().expect("text")).expect("email JSON");
                let n = self
                    .uncommitted
                    .entry(v["order_id"].as_u64().expect("order_id in email"))
                    .or_default();
                *n += 1;
                if *n > 1 {
                    self.uncommitted_dups += 1;
                }
            }
        }
        let mut pos = self.emails_pos.clone();
        let new = read_to_end(&client, "emails", &mut pos, exactly_once);
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
            if exactly_once {
                let last = self.last_mailed.entry((p, id >= KAFKA_IDS)).or_insert(0);
                assert!(
                    id >= *last,
                    "partition {p}: order {id} mailed after order {last} under exactly-once"
                );
                *last = id;
            }
            let n = self.emails.entry(id).or_default();
            *n += 1;
            assert!(
                !(exactly_once && *n > 1),
                "order {id} (partition {p}) was mailed {n} times under exactly-once"
            );
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
    let mut args = parse_args();
    if std::env::var_os("RILL_BIN").is_none() {
        // This binary sits next to `runtime` in target/<profile>/.
        let exe = std::env::current_exe().expect("current exe");
        let bin = exe.with_file_name("runtime");
        // SAFETY: single-threaded here; nothing else reads the environment yet.
        unsafe { std::env::set_var("RILL_BIN", bin) };
    }
    if args.order_totals {
        state::run(&args);
        return;
    }
    if args.kafka && !have_confluent_kafka() {
        let msg = "confluent-kafka is not installed \
                   (python3 -m pip install confluent-kafka==2.16.1)";
        if args.producer_explicit || std::env::var_os("RILL_REQUIRE_KAFKA_CLIENTS").is_some() {
            panic!("{msg}");
        }
        eprintln!("\n!!!!!!!!!! SKIPPED the Kafka producer: {msg} !!!!!!!!!!\n");
        (args.http, args.kafka) = (true, false);
    }
    let started = Instant::now();
    let mut rng = Rng(args.seed);
    // Its own generator, so a seed gives the same kill times whatever the producers.
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
        "--guarantee",
        if args.exactly_once {
            "exactly-once"
        } else {
            "at-least-once"
        },
    ]);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut kafka = args.kafka.then(|| {
        let log = h.log_path.with_file_name("kafka-producer.log");
        KafkaProducer::start(h.kafka, &args.codec, log, shared.clone())
    });
    let mut model = Model::new();
    let mut next_id = 0u64;
    let mut kills = 0u32;
    while kills < args.kills {
        let killed = Arc::new(AtomicBool::new(false));
        let producer = args.http.then(|| {
            let (c, s, k) = (h.client(), shared.clone(), killed.clone());
            std::thread::spawn(move || producer(c, next_id, s, k))
        });
        if let Some(k) = &mut kafka {
            k.command("resume");
        }
        // A random moment: mostly while produce and processing are both busy.
        std::thread::sleep(Duration::from_millis(10 + rng.below(300)));
        killed.store(true, Ordering::SeqCst);
        h.kill();
        kills += 1;
        // Paused only now, so the kill cuts Kafka requests in flight; what it queues while
        // the host is down is delivered after the restart, before the checks.
        if let Some(k) = &mut kafka {
            k.pause();
        }
        if let Some(p) = producer {
            p.join().expect("producer thread");
        }
        h.spawn();
        let client = h.client();
        if let Some(k) = &mut kafka {
            let next = k.wait_paused();
            shared.lock().unwrap().kafka_sent_up_to = next;
        }
        let s = shared.lock().unwrap();
        if let Some(e) = &s.early_error {
            panic!("produce failed before the kill: {e}");
        }
        next_id = s.sent_up_to;
        model.check_commits(&client);
        let full = kills.is_multiple_of(50) || kills == args.kills;
        model.check_log(&client, &s, full);
        drop(s);
        model.check_processing(&h, args.batch, args.exactly_once);
        model.check_commits(&client);
        if kills.is_multiple_of(25) {
            eprintln!(
                "crashloop: {kills} kills, {} records in the log, {:.0?}",
                model.partition_of.len(),
                started.elapsed()
            );
        }
    }
    if let Some(k) = kafka {
        k.stop();
    }
    let s = shared.lock().unwrap();
    let acked = s.acked.len();
    let kafka_in_log = model
        .partition_of
        .keys()
        .filter(|&&id| id >= KAFKA_IDS)
        .count();
    // Records whose report was an error but whose append had succeeded before the kill: with
    // librdkafka's retries on, each would have been appended a second time.
    let failed_in_log = s
        .kafka_failed
        .iter()
        .filter(|id| model.partition_of.contains_key(id))
        .count();
    let errors: Vec<String> = s
        .kafka_errors
        .iter()
        .map(|(name, n)| format!("{name}:{n}"))
        .collect();
    let dups: u64 = model.dups.values().sum();
    println!(
        "crashloop ok guarantee={} producer={} kafka_codec={} kills={kills} acked={acked} acked_kafka={} \
         records_in_log={} kafka_records_in_log={kafka_in_log} kafka_delivery_errors={} \
         kafka_errors_in_log={failed_in_log} records_checked={} processed={} duplicates={dups} \
         max_duplicates_per_partition_per_kill={} read_uncommitted_duplicates={} batch={} \
         seed={} elapsed_s={:.1}",
        if args.exactly_once {
            "exactly-once"
        } else {
            "at-least-once"
        },
        match (args.http, args.kafka) {
            (true, true) => "both",
            (false, true) => "kafka",
            _ => "http",
        },
        args.codec,
        s.kafka_acked,
        model.partition_of.len(),
        if errors.is_empty() {
            "0".to_owned()
        } else {
            errors.join(",")
        },
        model.records_checked,
        model.emails.len(),
        model.max_dup_per_kill,
        model.uncommitted_dups,
        args.batch,
        args.seed,
        started.elapsed().as_secs_f64()
    );
}
