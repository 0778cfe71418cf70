//! Outputs and dead letters produced to the cluster: every record of an invocation is
//! sent, then every acknowledgement (acks=all, idempotent producer) awaited, before the
//! worker commits the input offset. An exactly-once deployment's sink produces with its
//! partition's transactional producer (`txn.rs`) instead, and commits the input offset in
//! the same transaction.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use rill_engine::Emits;

use super::member::MemberContext;
use super::txn::{Transactions, txn_error};
use super::{Cluster, REQUEST_TIMEOUT};
use crate::deployment::DeploymentSpec;
use crate::metrics::DeploymentMetrics;
use crate::scheduler::{DeadLetter, DeadLetterRecord, OutputError, Sink};

/// A worker's outputs in cluster mode. Topics it writes to are checked (and created with one
/// partition if missing) once.
pub(crate) struct ClusterSink {
    pub(super) cluster: Arc<Cluster>,
    known: HashSet<String>,
    /// Exactly once: the partition's transactions.
    txn: Option<Txn>,
}

/// An exactly-once sink's transaction state.
struct Txn {
    shared: Arc<Transactions>,
    /// The group member, whose group metadata goes with the offsets.
    consumer: Arc<BaseConsumer<MemberContext>>,
    /// A transaction is open: begun, neither committed nor aborted.
    open: bool,
    /// The producer was fenced (or failed fatally): nothing more can be committed.
    fatal: Option<String>,
}

impl ClusterSink {
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        ClusterSink {
            cluster,
            known: HashSet::new(),
            txn: None,
        }
    }

    /// An exactly-once deployment's sink, producing with `shared`'s producer once the
    /// partition's source has initialised it.
    pub(crate) fn transactional(
        cluster: Arc<Cluster>,
        shared: Arc<Transactions>,
        consumer: Arc<BaseConsumer<MemberContext>>,
    ) -> Self {
        ClusterSink {
            txn: Some(Txn {
                shared,
                consumer,
                open: false,
                fatal: None,
            }),
            ..ClusterSink::new(cluster)
        }
    }

    /// The producer to send with: the host's, or the partition's transactional one with a
    /// transaction begun.
    pub(super) fn producer(&mut self) -> Result<FutureProducer, OutputError> {
        let Some(t) = self.txn.as_mut() else {
            return Ok(self.cluster.producer.clone());
        };
        if let Some(f) = &t.fatal {
            return Err(OutputError::Fenced(f.clone()));
        }
        let p = t.shared.producer()?.clone();
        if !t.open {
            if let Err(e) = p.begin_transaction() {
                return Err(t.failed(txn_error(t.shared.id(), "the beginning", e)));
            }
            t.open = true;
        }
        Ok(p)
    }

    fn ensure(&mut self, topic: &str) -> Result<(), OutputError> {
        if self.known.contains(topic) {
            return Ok(());
        }
        if let Err(e) = rdkafka_topic_name_ok(topic) {
            return Err(OutputError::Reject(e));
        }
        self.cluster
            .ensure_topic(topic, 1, self.cluster.replication(), &[])
            .map_err(
                |e| match e.contains("InvalidTopic") || e.contains("invalid topic") {
                    true => OutputError::Reject(e),
                    false => OutputError::Retry(e),
                },
            )?;
        self.known.insert(topic.to_owned());
        Ok(())
    }

    /// Queues one record, waiting for room if the producer's queue is full.
    pub(super) fn send(
        producer: &FutureProducer,
        record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<DeliveryFuture, OutputError> {
        let mut record = record;
        loop {
            match producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, r)) => return Err(classify(r.topic, e)),
            }
        }
    }

    /// Awaits every acknowledgement; the first failure is returned (after all settled, so
    /// none is left in flight when the invocation is retried).
    pub(super) fn settle(&self, pending: Vec<DeliveryFuture>) -> Result<(), OutputError> {
        let mut first = None;
        for f in pending {
            let r = self.cluster.runtime.block_on(f);
            let err = match r {
                Ok(Ok(_)) => continue,
                Ok(Err((e, m))) => {
                    use rdkafka::Message;
                    classify(m.topic(), e)
                }
                Err(_) => OutputError::Retry("the producer was closed".into()),
            };
            first.get_or_insert(err);
        }
        first.map_or(Ok(()), Err)
    }
}

/// Kafka's own topic-name rule, checked before asking the cluster.
fn rdkafka_topic_name_ok(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid output topic name '{name}' (Kafka allows 1-249 of [a-zA-Z0-9._-])"
        ))
    }
}

/// Whether a produce error can ever succeed for this record.
fn classify(topic: &str, e: KafkaError) -> OutputError {
    let msg = format!("produce to '{topic}' failed: {e}");
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::MessageBatchTooLarge,
        ) => OutputError::Reject(msg),
        _ => OutputError::Retry(msg),
    }
}

fn headers<'a>(pairs: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) -> Option<OwnedHeaders> {
    let mut out: Option<OwnedHeaders> = None;
    for (key, value) in pairs {
        let h = out.take().unwrap_or_default();
        out = Some(h.insert(Header { key, value }));
    }
    out
}

impl Sink for ClusterSink {
    fn append(&mut self, emits: &Emits, metrics: &DeploymentMetrics) -> Result<(), OutputError> {
        if emits.is_empty() {
            return Ok(());
        }
        for t in emits.topics() {
            self.ensure(t)?;
        }
        let producer = self.producer()?;
        let mut pending = Vec::with_capacity(emits.len());
        for e in emits.iter() {
            let topic = &emits.topics()[e.topic_index];
            let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
            if let Some(k) = e.key {
                r = r.key(k);
            }
            if let Some(v) = e.value {
                r = r.payload(v);
            }
            if let Some(h) = headers(e.headers()) {
                r = r.headers(h);
            }
            match Self::send(&producer, r) {
                Ok(f) => pending.push(f),
                Err(err) => {
                    // Settle what was sent before failing the invocation.
                    let _ = self.settle(pending);
                    return Err(err);
                }
            }
        }
        let n = pending.len() as u64;
        self.settle(pending)?;
        metrics.records_out.fetch_add(n, Relaxed);
        Ok(())
    }

    fn append_changelog(
        &mut self,
        topic: &str,
        partition: u32,
        writes: &rill_engine::StateWrites,
        next: i64,
    ) -> Result<Option<i64>, OutputError> {
        self.produce_changelog(topic, partition, writes, next)
    }

    fn dead_letter(&mut self, letter: &DeadLetter<'_>) -> Result<(), OutputError> {
        let topic = letter.spec.dlq_topic();
        self.ensure(&topic)?;
        let record = DeadLetterRecord::new(letter);
        let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic);
        if let Some(k) = &record.key {
            r = r.key(k.as_slice());
        }
        if let Some(v) = &record.value {
            r = r.payload(v.as_slice());
        }
        if let Some(h) = headers(
            record
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref())),
        ) {
            r = r.headers(h);
        }
        let producer = self.producer()?;
        let f = Self::send(&producer, r)?;
        self.settle(vec![f])
    }

    fn commit_transaction(
        &mut self,
        spec: &DeploymentSpec,
        partition: u32,
        next: i64,
    ) -> Result<(), OutputError> {
        if self.txn.is_none() {
            return Err(OutputError::Reject(
                "an at-least-once sink commits no transaction".into(),
            ));
        }
        // An invocation without outputs commits its offset in a transaction of its own.
        let p = self.producer()?;
        let Some(t) = self.txn.as_mut() else {
            unreachable!("checked above")
        };
        let Some(cgm) = t.consumer.group_metadata() else {
            return Err(OutputError::Retry(
                "the group member has no group metadata yet".into(),
            ));
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&spec.topic, partition as i32, Offset::Offset(next))
            .map_err(|e| OutputError::Retry(format!("offset {next}: {e}")))?;
        if let Err(e) = p.send_offsets_to_transaction(&tpl, &cgm, REQUEST_TIMEOUT) {
            return Err(t.failed(txn_error(t.shared.id(), "sending the offsets", e)));
        }
        if let Err(e) = p.commit_transaction(REQUEST_TIMEOUT) {
            return Err(t.failed(txn_error(t.shared.id(), "the commit", e)));
        }
        t.open = false;
        Ok(())
    }

    fn abort_transaction(&mut self) -> Result<(), String> {
        let Some(t) = self.txn.as_mut() else {
            return Err("an at-least-once sink has no transaction to abort".into());
        };
        if !t.open {
            return Ok(());
        }
        if t.fatal.is_some() {
            // Nothing of it can be committed: the partition's next owner aborts it when it
            // initialises the same transactional id.
            t.open = false;
            return Ok(());
        }
        let p = match t.shared.producer() {
            Ok(p) => p.clone(),
            Err(_) => return Err("the transactional producer is not initialised".into()),
        };
        match p.abort_transaction(REQUEST_TIMEOUT) {
            Ok(()) => {
                t.open = false;
                Ok(())
            }
            Err(e) => {
                let e = t.failed(txn_error(t.shared.id(), "the abort", e));
                // Fenced, nothing can be aborted (the next owner did it): the next turn
                // finds the sink fenced and ends the worker.
                if let OutputError::Fenced(_) = e {
                    t.open = false;
                }
                match e {
                    OutputError::Retry(m) | OutputError::Reject(m) | OutputError::Fenced(m) => {
                        Err(m)
                    }
                }
            }
        }
    }
}

impl Txn {
    /// Notes a fatal error, so every later call says the sink is fenced.
    fn failed(&mut self, e: OutputError) -> OutputError {
        if let OutputError::Fenced(m) = &e {
            self.fatal = Some(m.clone());
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka() {
        assert!(rdkafka_topic_name_ok("emails").is_ok());
        assert!(rdkafka_topic_name_ok("a.b_c-1").is_ok());
        assert!(rdkafka_topic_name_ok("").is_err());
        assert!(rdkafka_topic_name_ok("..").is_err());
        assert!(rdkafka_topic_name_ok("has space").is_err());
        assert!(rdkafka_topic_name_ok(&"x".repeat(250)).is_err());
    }
}
