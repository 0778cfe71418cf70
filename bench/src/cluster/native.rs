//! The native baseline of cluster mode: the reference filter's logic compiled into the
//! bench, run as members of a consumer group of the same Kafka cluster with the same
//! delivery discipline as a Rill host in cluster mode.
//!
//! Each member is one thread with one librdkafka consumer and one producer, configured as
//! cluster mode configures its own (group with manual commits, cooperative-sticky; outputs
//! with acks=all, idempotence, linger.ms=0). Its loop: take a batch of up to `batch` fetched
//! records (in fetch order, over whatever partitions it owns), forward each whose value
//! contains `blue` (`memchr::memmem`, as the guest) to the output topic with its key,
//! wait until every output of the batch is acknowledged, commit the batch's next offsets
//! synchronously, repeat.
//!
//! Before the clock starts the members join the group and may fetch ahead, as a paused Rill
//! deployment does: fetched records are kept (up to 4 MiB per partition, then that
//! partition's fetching is paused, Rill's own limit) but not processed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::kafka::{self, Deliveries};

/// Fetched-ahead bytes per partition above which a member pauses the partition before the
/// clock starts (cluster mode's `PAUSE_BYTES`).
const PAUSE_BYTES: usize = 4 << 20;

/// The librdkafka settings a member shares with cluster mode's group members.
pub fn member_config(bootstrap: &str, client_id: &str, group: &str) -> rdkafka::ClientConfig {
    let mut c = kafka::config(bootstrap, client_id);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000");
    c
}

/// The producer settings cluster mode's sink uses.
pub fn producer_config(bootstrap: &str, client_id: &str) -> rdkafka::ClientConfig {
    let mut c = kafka::config(bootstrap, client_id);
    c.set("linger.ms", "0")
        .set("enable.idempotence", "true")
        .set("acks", "all");
    c
}

/// Partitions revoked inside `poll`, for the member loop to drop what it holds of them.
#[derive(Default)]
struct MemberContext {
    revoked: Mutex<Vec<i32>>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut r = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
            r.extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }
}

struct Fetched {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

/// Shared between the bench's thread and the members.
#[derive(Default)]
pub struct Control {
    start: AtomicBool,
    stop: AtomicBool,
    /// Records processed (committed) by all members.
    pub processed: AtomicU64,
    /// Records forwarded (acknowledged) by all members.
    pub forwarded: AtomicU64,
    /// Batches processed, and the time members spent (after the start) fetching, awaiting
    /// acknowledgements and committing, in µs: where the time goes.
    pub batches: AtomicU64,
    pub fetch_us: AtomicU64,
    pub ack_us: AtomicU64,
    pub commit_us: AtomicU64,
    /// Commits refused (during a rebalance).
    pub failed_commits: AtomicU64,
}

impl Control {
    /// `batches N (avg R records), fetch X s, acks Y s, commits Z s` over all members.
    pub fn breakdown(&self) -> String {
        let b = self.batches.load(Ordering::Relaxed);
        let s = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
        format!(
            "{b} batches (avg {:.0} records); member time fetching {:.2} s, awaiting acks {:.2} s, committing {:.2} s",
            self.processed.load(Ordering::Relaxed) as f64 / b.max(1) as f64,
            s(&self.fetch_us),
            s(&self.ack_us),
            s(&self.commit_us)
        )
    }
}

fn add_us(a: &AtomicU64, since: std::time::Instant) {
    a.fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
}

/// What a member needs.
#[derive(Clone)]
pub struct MemberSpec {
    pub bootstrap: String,
    pub group: String,
    pub input: String,
    pub output: String,
    pub batch: usize,
    /// Members are named `<prefix>-<i>` (their `client.id`).
    pub prefix: String,
}

/// Members running in this process; stopped and joined by [`Members::stop`].
pub struct Members {
    pub control: Arc<Control>,
    threads: Vec<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Members {
    /// Starts `n` members; they join the group and fetch ahead, and process nothing until
    /// [`Members::start`].
    pub fn spawn(spec: &MemberSpec, n: usize) -> Members {
        let control = Arc::new(Control::default());
        let threads = (0..n)
            .map(|i| {
                let (spec, control) = (spec.clone(), control.clone());
                std::thread::Builder::new()
                    .name(format!("native-{i}"))
                    .spawn(move || member(&spec, i, &control))
                    .expect("spawn a native member")
            })
            .collect();
        Members { control, threads }
    }

    /// Lets every member process.
    pub fn start(&self) {
        self.control.start.store(true, Ordering::SeqCst);
    }

    /// Whether a member has ended (with an error: they end only when told to stop).
    pub fn failed(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }

    /// Stops the members (each leaves the group) and returns the first error.
    pub fn stop(self) -> anyhow::Result<()> {
        self.control.stop.store(true, Ordering::SeqCst);
        let mut first = Ok(());
        for t in self.threads {
            let r = t
                .join()
                .map_err(|_| anyhow::anyhow!("a native member panicked"))
                .and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

fn member(spec: &MemberSpec, i: usize, control: &Control) -> anyhow::Result<()> {
    let id = format!("{}-{i}", spec.prefix);
    let consumer: BaseConsumer<MemberContext> = member_config(&spec.bootstrap, &id, &spec.group)
        .create_with_context(MemberContext::default())
        .context("cannot create a native member")?;
    let producer: kafka::Threaded = producer_config(&spec.bootstrap, &id)
        .create_with_context(Deliveries::default())
        .context("cannot create a native producer")?;
    consumer.subscribe(&[&spec.input])?;
    let finder = memchr::memmem::Finder::new(b"blue");
    let mut pending: VecDeque<Fetched> = VecDeque::new();
    let mut held: HashMap<i32, usize> = HashMap::new();
    let mut paused: HashSet<i32> = HashSet::new();
    let mut resumed = false;
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut sent = 0u64;
    loop {
        if control.stop.load(Ordering::SeqCst) {
            break;
        }
        let started = control.start.load(Ordering::SeqCst);
        if started && !resumed {
            let tpl = tpl(&spec.input, paused.drain().map(|p| (p, Offset::Invalid)))?;
            consumer.resume(&tpl)?;
            resumed = true;
        }
        // Fetch what is there (waiting only when there is nothing to do).
        let wait = if started && !pending.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_millis(20)
        };
        // Once started, fetch only while fewer than two batches wait: what is not polled
        // stays in librdkafka's bounded queue.
        let fetch_t = std::time::Instant::now();
        let mut polled = if started && pending.len() >= 2 * spec.batch {
            None
        } else {
            consumer.poll(wait)
        };
        let mut n = 0;
        while let Some(r) = polled {
            let m = r.context("fetch failed")?;
            let f = Fetched {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
            };
            *held.entry(f.partition).or_default() += f.value.len();
            pending.push_back(f);
            n += 1;
            if n >= 5000 {
                break;
            }
            polled = consumer.poll(Duration::ZERO);
        }
        if started {
            add_us(&control.fetch_us, fetch_t);
        }
        let revoked: Vec<i32> = std::mem::take(
            &mut *consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if !revoked.is_empty() {
            pending.retain(|f| !revoked.contains(&f.partition));
            for p in &revoked {
                held.remove(p);
                paused.remove(p);
            }
        }
        if !started {
            let full: Vec<i32> = held
                .iter()
                .filter(|(p, b)| **b > PAUSE_BYTES && !paused.contains(p))
                .map(|(p, _)| *p)
                .collect();
            if !full.is_empty() {
                consumer.pause(&tpl(
                    &spec.input,
                    full.iter().map(|p| (*p, Offset::Invalid)),
                )?)?;
                paused.extend(full);
            }
            continue;
        }
        if pending.is_empty() {
            continue;
        }
        // One batch: forward, await every acknowledgement, commit.
        let take = pending.len().min(spec.batch);
        let mut forwarded = 0;
        next.clear();
        for f in pending.drain(..take) {
            if finder.find(&f.value).is_some() {
                let mut r: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(&spec.output).payload(&f.value[..]);
                if let Some(k) = &f.key {
                    r = r.key(&k[..]);
                }
                kafka::send(&producer, r)?;
                forwarded += 1;
            }
            if let Some(h) = held.get_mut(&f.partition) {
                *h = h.saturating_sub(f.value.len());
            }
            next.insert(f.partition, f.offset + 1);
        }
        let ack_t = std::time::Instant::now();
        sent += forwarded;
        producer
            .context()
            .wait(sent, Duration::from_secs(60))
            .context("awaiting the outputs' acknowledgements")?;
        producer.context().check()?;
        add_us(&control.ack_us, ack_t);
        let commit_t = std::time::Instant::now();
        let offsets = tpl(
            &spec.input,
            next.iter().map(|(p, o)| (*p, Offset::Offset(*o))),
        )?;
        if consumer.commit(&offsets, CommitMode::Sync).is_err() {
            // A rebalance in between (IllegalGeneration, RebalanceInProgress, a revoked
            // partition): whoever owns the partition next re-runs the batch from the last
            // commit, at least once, as a Rill host does.
            control.failed_commits.fetch_add(1, Ordering::Relaxed);
        }
        add_us(&control.commit_us, commit_t);
        control.batches.fetch_add(1, Ordering::Relaxed);
        control.processed.fetch_add(take as u64, Ordering::Relaxed);
        control.forwarded.fetch_add(forwarded, Ordering::Relaxed);
    }
    consumer.unsubscribe();
    Ok(())
}

fn tpl(
    topic: &str,
    parts: impl Iterator<Item = (i32, Offset)>,
) -> anyhow::Result<TopicPartitionList> {
    let mut t = TopicPartitionList::new();
    for (p, o) in parts {
        t.add_partition_offset(topic, p, o)?;
    }
    Ok(t)
}

/// `rill-bench cluster-member`: one native member in a process of its own, for the
/// rebalance baseline (it is killed with SIGKILL like a host). It processes at once,
/// prints `ready` once subscribed and `processed` after its first committed batch.
#[derive(clap::Parser, Debug)]
#[command(name = "rill-bench cluster-member")]
pub struct MemberArgs {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    #[arg(long)]
    id: String,
    #[arg(long, default_value_t = 1000)]
    batch: usize,
}

pub fn member_main(args: MemberArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let m = Members::spawn(
        &MemberSpec {
            bootstrap: args.bootstrap,
            group: args.group,
            input: args.input,
            output: args.output,
            batch: args.batch.max(1),
            prefix: args.id,
        },
        1,
    );
    m.start();
    println!("ready");
    std::io::stdout().flush()?;
    while m.control.processed.load(Ordering::Relaxed) == 0 {
        if m.failed() {
            return m.stop();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("processed");
    std::io::stdout().flush()?;
    loop {
        if m.failed() {
            return m.stop();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
