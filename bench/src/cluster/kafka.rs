//! The bench's own Kafka clients (rdkafka): creating topics, preloading the input,
//! watermarks, a group's committed offsets and members, and watching an output topic.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// How long one request to the cluster may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A client configuration naming the cluster, with librdkafka's own logging quiet.
pub fn config(bootstrap: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", client_id)
        .set("log_level", "3");
    c
}

/// Creates `name` with `partitions` partitions and replication 1 (the bench's cluster has
/// one broker; cluster mode creates its outputs with min(brokers, 3) replicas, also 1).
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap, "rill-bench-admin")
        .create()
        .context("cannot create an admin client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    for r in rt.block_on(admin.create_topics([&topic], &opts))? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, e)) => bail!("cannot create topic {name}: {e}"),
        }
    }
    // Wait until the metadata shows every partition with a leader.
    let probe = Probe::new(bootstrap)?;
    for _ in 0..100 {
        if probe.partitions(name)? == Some(partitions as u32) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("topic {name} was created but does not show in the metadata")
}

/// Counts the deliveries (acknowledged or failed) of a producer and lets a thread wait for
/// a count. With a [`ThreadedProducer`] the reports are handled by its polling thread as
/// they arrive. (`BaseProducer::flush` of rdkafka 0.39 polls in steps that each wait out
/// their whole timeout, up to 100 ms, so it is not used where time is measured.)
#[derive(Debug, Default)]
pub struct Deliveries {
    done: Mutex<u64>,
    cv: Condvar,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cv.notify_all();
    }
}

impl Deliveries {
    /// An error if any delivery failed so far.
    pub fn check(&self) -> anyhow::Result<()> {
        let n = self.failed.load(Ordering::Relaxed);
        if n > 0 {
            let first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            bail!(
                "{n} deliveries failed, the first: {}",
                first.as_deref().unwrap_or("?")
            );
        }
        Ok(())
    }

    /// Waits until `total` deliveries were reported since the producer was created.
    pub fn wait(&self, total: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while *done < total {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{} of {total} deliveries after {timeout:?}", *done);
            }
            done = self
                .cv
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }
}

/// A producer whose own thread serves delivery reports.
pub type Threaded = ThreadedProducer<Deliveries>;

/// Queues one record, waiting while the producer's queue is full.
pub fn send(producer: &Threaded, mut record: BaseRecord<'_, [u8], [u8]>) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("produce failed: {e}"),
        }
    }
}

/// Produces records `0..n` of the bench's workload (`workload::value`, no key), record `i`
/// to partition `i % partitions`, with a producer tuned for bulk loading (acks=1, large
/// batches, 10 ms linger). Returns records/s.
pub fn preload(
    bootstrap: &str,
    topic: &str,
    n: u64,
    partitions: u32,
    progress: &dyn Fn(u64),
) -> anyhow::Result<f64> {
    let producer: Threaded = config(bootstrap, "rill-bench-preload")
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("linger.ms", "10")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("compression.type", "none")
        .create_with_context(Deliveries::default())
        .context("cannot create the preload producer")?;
    // A topic created a moment ago may be unknown to this client's first metadata: wait
    // until it knows every partition, or the first records fail with UnknownPartition.
    for i in 0.. {
        let meta = producer.client().fetch_metadata(Some(topic), TIMEOUT)?;
        let known = meta
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .is_some_and(|t| {
                t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            });
        if known {
            break;
        }
        anyhow::ensure!(i < 100, "the preload producer does not see topic {topic}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    let mut value = String::new();
    for i in 0..n {
        value.clear();
        value.push_str(&crate::workload::value(i));
        let p = (i % u64::from(partitions)) as i32;
        send(
            &producer,
            BaseRecord::to(topic).partition(p).payload(value.as_bytes()),
        )?;
        if i % 100_000 == 0 {
            progress(i);
        }
    }
    producer.context().wait(n, Duration::from_secs(300))?;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    producer.context().check()?;
    Ok(rate)
}

/// A group's members: client id and the partitions each is assigned.
pub type GroupMembers = Vec<(String, Vec<u32>)>;

/// Group-less reads: metadata, watermarks, group descriptions.
pub struct Probe {
    consumer: BaseConsumer,
}

impl Probe {
    pub fn new(bootstrap: &str) -> anyhow::Result<Probe> {
        Ok(Probe {
            consumer: config(bootstrap, "rill-bench-probe")
                .set("group.id", "rill-bench-probe")
                .create()
                .context("cannot create a consumer")?,
        })
    }

    /// Partitions of `topic`, `None` if it does not exist (yet).
    pub fn partitions(&self, topic: &str) -> anyhow::Result<Option<u32>> {
        let meta = self.consumer.fetch_metadata(Some(topic), TIMEOUT)?;
        Ok(meta
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .filter(|t| t.partitions().iter().all(|p| p.leader() >= 0))
            .map(|t| t.partitions().len() as u32)
            .filter(|&n| n > 0))
    }

    /// The high watermark of each partition.
    pub fn ends(&self, topic: &str, partitions: u32) -> anyhow::Result<Vec<i64>> {
        (0..partitions as i32)
            .map(|p| {
                self.consumer
                    .fetch_watermarks(topic, p, TIMEOUT)
                    .map(|(_, high)| high)
                    .with_context(|| format!("watermarks of {topic}/{p}"))
            })
            .collect()
    }

    /// The group's state (`Stable`, `PreparingRebalance`, ...) and its members: client id
    /// and the partitions of `topic` each is assigned.
    pub fn members(&self, group: &str, topic: &str) -> anyhow::Result<(String, GroupMembers)> {
        use rdkafka::error::RDKafkaErrorCode as Code;
        let list = match self.consumer.fetch_group_list(Some(group), TIMEOUT) {
            Ok(l) => l,
            // The coordinator moves or loads (a fresh broker, a new group): not known yet.
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        Code::NotCoordinator
                            | Code::CoordinatorLoadInProgress
                            | Code::CoordinatorNotAvailable
                    )
                ) =>
            {
                return Ok((String::new(), Vec::new()));
            }
            Err(e) => return Err(e.into()),
        };
        let Some(g) = list.groups().iter().find(|g| g.name() == group) else {
            return Ok((String::new(), Vec::new()));
        };
        let members = g
            .members()
            .iter()
            .map(|m| {
                let parts = m
                    .assignment()
                    .map(|a| assigned_partitions(a, topic))
                    .unwrap_or_default();
                (m.client_id().to_owned(), parts)
            })
            .collect();
        Ok((g.state().to_owned(), members))
    }

    /// Whether `group` is stable with exactly `members` members whose assignments are all
    /// non-empty and together cover partitions `0..partitions` of `topic`.
    pub fn settled(
        &self,
        group: &str,
        topic: &str,
        members: usize,
        partitions: u32,
    ) -> anyhow::Result<bool> {
        let (state, ms) = self.members(group, topic)?;
        let covered: HashSet<u32> = ms.iter().flat_map(|(_, ps)| ps.iter().copied()).collect();
        Ok(state == "Stable"
            && ms.len() == members
            && ms.iter().all(|(_, ps)| !ps.is_empty())
            && (0..partitions).all(|p| covered.contains(&p)))
    }
}

/// The partitions of `topic` in a consumer-protocol assignment: version (i16), then an
/// array (i32 count) of topic name (i16 length + bytes) and partitions (i32 count + i32s).
fn assigned_partitions(bytes: &[u8], topic: &str) -> Vec<u32> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Some(head)
    }
    fn int(b: &mut &[u8], n: usize) -> Option<i64> {
        let raw = take(b, n)?;
        Some(match n {
            2 => i64::from(i16::from_be_bytes([raw[0], raw[1]])),
            _ => i64::from(i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])),
        })
    }
    let mut out = Vec::new();
    let mut b = bytes;
    let _ = (|| -> Option<()> {
        int(&mut b, 2)?;
        for _ in 0..int(&mut b, 4)?.max(0) {
            let len = int(&mut b, 2)?.max(0) as usize;
            let name = take(&mut b, len)?;
            for _ in 0..int(&mut b, 4)?.max(0) {
                let p = int(&mut b, 4)?;
                if name == topic.as_bytes() && p >= 0 {
                    out.push(p as u32);
                }
            }
        }
        Some(())
    })();
    out
}

/// A consumer that only reads a group's committed offsets (it never joins the group).
pub struct Committed {
    consumer: BaseConsumer,
    tpl: TopicPartitionList,
    topic: String,
}

impl Committed {
    pub fn new(bootstrap: &str, group: &str, topic: &str, partitions: u32) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = config(bootstrap, "rill-bench-committed")
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("cannot create a consumer")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, Offset::Invalid)?;
        }
        Ok(Committed {
            consumer,
            tpl,
            topic: topic.to_owned(),
        })
    }

    /// The committed offset of each partition (0 where there is none).
    pub fn get(&self) -> anyhow::Result<Vec<i64>> {
        let got = self.consumer.committed_offsets(self.tpl.clone(), TIMEOUT)?;
        Ok((0..self.tpl.count() as i32)
            .map(
                |p| match got.find_partition(&self.topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o.max(0),
                    _ => 0,
                },
            )
            .collect())
    }
}

/// Reads an output topic from its end and notes when records carrying given markers arrive.
pub struct Watcher {
    consumer: BaseConsumer,
}

impl Watcher {
    /// Assigned to every partition of `topic` at its current end.
    pub fn new(bootstrap: &str, topic: &str, partitions: u32) -> anyhow::Result<Watcher> {
        let consumer: BaseConsumer = config(bootstrap, "rill-bench-watcher")
            .set("group.id", "rill-bench-watcher")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .set("fetch.error.backoff.ms", "5")
            .create()
            .context("cannot create the watcher")?;
        let probe = Probe::new(bootstrap)?;
        let ends = probe.ends(topic, partitions)?;
        let mut tpl = TopicPartitionList::new();
        for (p, end) in ends.iter().enumerate() {
            tpl.add_partition_offset(topic, p as i32, Offset::Offset(*end))?;
        }
        consumer.assign(&tpl)?;
        Ok(Watcher { consumer })
    }

    /// Polls for up to `wait`; calls `seen(value, instant)` for each record received.
    pub fn poll(&self, wait: Duration, seen: &mut dyn FnMut(&[u8], Instant)) -> anyhow::Result<()> {
        let mut next = self.consumer.poll(wait);
        while let Some(r) = next {
            let m = r.context("the watcher's fetch failed")?;
            seen(m.payload().unwrap_or_default(), Instant::now());
            next = self.consumer.poll(Duration::ZERO);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::assigned_partitions;

    #[test]
    fn reads_an_assignment() {
        let mut b = Vec::new();
        b.extend_from_slice(&3i16.to_be_bytes());
        b.extend_from_slice(&2i32.to_be_bytes());
        for (t, ps) in [("a", &[0i32, 2][..]), ("events", &[3, 1][..])] {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
            b.extend_from_slice(&(ps.len() as i32).to_be_bytes());
            for p in ps {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
        b.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(assigned_partitions(&b, "events"), vec![3, 1]);
        assert_eq!(assigned_partitions(&b, "a"), vec![0, 2]);
        assert!(assigned_partitions(&b[..5], "a").is_empty());
    }
}
