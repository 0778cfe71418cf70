//! Appending what a handler emitted, and dead-lettering what it could not handle.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use rill_engine::Emits;
use rill_log::{
    AppendError, Header, Log, Partition, ProducerError, Record, Topic, TopicConfig, TopicError,
    TxnError,
};

use super::exactly_once::{Transaction, TxnStepError};
use super::source::DeadLetter;
use crate::deployment::DeploymentSpec;
use crate::metrics::DeploymentMetrics;

/// Why outputs were not appended.
#[derive(Debug)]
pub(crate) enum OutputError {
    /// Worth retrying as is: an I/O error (a full disk), a topic deleted meanwhile.
    Retry(String),
    /// Never going to work for these outputs (an invalid topic name, a record larger than
    /// the log accepts): the handler's fault, so it counts against the record.
    Reject(String),
    /// Never going to work for this worker (exactly-once: its transactional producer was
    /// fenced, so another instance owns the partition now): the worker stops.
    Fenced(String),
}

/// A worker's view of the topics it writes to, with topics looked up once and cached.
pub(super) struct Outputs {
    log: Arc<Log>,
    topics: HashMap<String, Arc<Topic>>,
    /// Flush policy for topics this deployment creates (its source topic's).
    create_config: TopicConfig,
    /// The largest batch the log accepts; outputs are split into batches below it.
    max_batch_bytes: usize,
    /// Exactly-once: the worker's transactional id, and its producer once initialised
    /// (on first use, on the invocation thread; dropped after a failed commit so the next
    /// use initialises it again, which settles whatever the failure left).
    txn: Option<(String, Option<Transaction>)>,
}

/// Bytes a record adds to a batch beyond its key, value and header bytes: varints,
/// attributes and deltas, generously counted so a chunk never crosses the limit.
const RECORD_OVERHEAD: usize = 64;

/// Bytes of a batch header.
const BATCH_OVERHEAD: usize = 128;

impl Outputs {
    pub(super) fn new(log: Arc<Log>, create_config: TopicConfig, max_batch_bytes: usize) -> Self {
        Outputs {
            log,
            topics: HashMap::new(),
            create_config,
            max_batch_bytes,
            txn: None,
        }
    }

    /// Makes these outputs transactional under `transactional_id` (exactly-once).
    pub(super) fn exactly_once(mut self, transactional_id: String) -> Self {
        self.txn = Some((transactional_id, None));
        self
    }

    /// The worker's transactional producer, initialised on first use.
    fn transaction(&mut self) -> Result<Option<&mut Transaction>, TxnError> {
        let Some((id, txn)) = &mut self.txn else {
            return Ok(None);
        };
        if txn.is_none() {
            *txn = Some(Transaction::init(self.log.clone(), id.clone())?);
        }
        Ok(txn.as_mut())
    }

    /// Appends `records` to `partition`: plainly, or inside the transaction.
    fn append_records(
        &mut self,
        topic: &Topic,
        partition: &Partition,
        records: &[Record<'_>],
    ) -> Result<(), OutputError> {
        let txn = match self.transaction() {
            Ok(t) => t,
            Err(e) => return Err(OutputError::Retry(format!("transaction: {e}"))),
        };
        let r = match txn {
            None => partition.append(records).map_err(TxnStepError::Append),
            Some(t) => t.append(partition, records, crate::now_ms()),
        };
        match r {
            Ok(_) => Ok(()),
            Err(TxnStepError::Append(AppendError::Producer(ProducerError::Fenced { .. })))
            | Err(TxnStepError::Coordinator(TxnError::ProducerFenced(_))) => {
                Err(OutputError::Fenced(format!(
                    "append to {}/{}: fenced by a newer instance of this worker",
                    topic.name(),
                    partition.id()
                )))
            }
            Err(TxnStepError::Append(e)) => Err(self.append_error(topic, partition.id(), e)),
            Err(e @ TxnStepError::Coordinator(_)) => Err(OutputError::Retry(format!(
                "append to {}/{}: {e}",
                topic.name(),
                partition.id()
            ))),
        }
    }

    /// Exactly-once: commits the open transaction with `group`'s next offset `next` on
    /// `topic`/`partition`. On failure the producer is dropped; the next use initialises it
    /// again, which completes or aborts what the failure left, and the caller must read the
    /// group's committed offset back to know which.
    pub(super) fn commit_in_transaction(
        &mut self,
        group: &str,
        topic: &str,
        partition: u32,
        next: i64,
    ) -> Result<(), OutputError> {
        let r = match self.transaction() {
            Ok(Some(t)) => t.commit(group, topic, partition, next),
            Ok(None) => return Err(OutputError::Reject("outputs are not transactional".into())),
            Err(e) => Err(e),
        };
        r.map_err(|e| {
            if let Some((_, t)) = &mut self.txn {
                *t = None;
            }
            match e {
                TxnError::ProducerFenced(_) => OutputError::Fenced(format!("commit: {e}")),
                e => OutputError::Retry(format!("commit of the transaction failed: {e}")),
            }
        })
    }

    /// Exactly-once: aborts what was appended since the last commit. After a failure
    /// dropped the producer, initialises it again, which settles what the failure left (a
    /// prepared commit is completed, anything else open aborted).
    pub(super) fn abort_in_transaction(&mut self) -> Result<(), String> {
        let r = match self.transaction() {
            Ok(Some(t)) => t.abort(),
            Ok(None) => return Ok(()),
            Err(e) => Err(e),
        };
        r.map_err(|e| {
            if let Some((_, t)) = &mut self.txn {
                *t = None;
            }
            format!("abort of the transaction failed: {e}")
        })
    }

    /// The topic, created with one partition if it does not exist yet.
    fn topic(&mut self, name: &str) -> Result<Arc<Topic>, OutputError> {
        if let Some(t) = self.topics.get(name) {
            return Ok(t.clone());
        }
        let topic = match self.log.topic(name) {
            Some(t) => t,
            None => match self.log.create_topic(name, self.create_config.clone()) {
                Ok(t) => t,
                Err(TopicError::AlreadyExists(_)) => self.log.topic(name).ok_or_else(|| {
                    OutputError::Retry(format!("topic '{name}' vanished while being created"))
                })?,
                Err(e @ (TopicError::InvalidName(_) | TopicError::InvalidConfig(_))) => {
                    return Err(OutputError::Reject(format!(
                        "cannot create output topic '{name}': {e}"
                    )));
                }
                Err(e) => {
                    return Err(OutputError::Retry(format!(
                        "cannot create output topic '{name}': {e}"
                    )));
                }
            },
        };
        self.topics.insert(name.to_owned(), topic.clone());
        Ok(topic)
    }

    /// Classifies an append error; a closed partition means the topic was deleted (or the
    /// log is closing), so the cached handle is dropped and the next try looks the topic up
    /// again, creating it anew if need be.
    fn append_error(&mut self, topic: &Topic, p: u32, e: AppendError) -> OutputError {
        let msg = format!("append to {}/{p} failed: {e}", topic.name());
        match e {
            AppendError::TooLarge { .. }
            | AppendError::MessageTooLarge { .. }
            | AppendError::InvalidBatch(_)
            | AppendError::Empty => OutputError::Reject(msg),
            AppendError::Closed => {
                self.topics.remove(topic.name());
                OutputError::Retry(msg)
            }
            _ => OutputError::Retry(msg),
        }
    }

    /// Appends emits, one batch per (topic, partition) (more when they would exceed the log's
    /// batch limit), keeping their order per key. Every topic is resolved before anything is
    /// appended, so an invalid topic name appends nothing.
    pub(super) fn append(
        &mut self,
        emits: &Emits,
        metrics: &DeploymentMetrics,
    ) -> Result<(), OutputError> {
        if emits.is_empty() {
            return Ok(());
        }
        // Each distinct topic is looked up once per invocation, not once per record.
        let topics = emits
            .topics()
            .iter()
            .map(|t| self.topic(t))
            .collect::<Result<Vec<_>, _>>()?;
        // Headers of every record, flat, so a record borrows its run of them (no work at
        // all when no record has headers, the common case).
        let mut headers: Vec<Header<'_>> = Vec::new();
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        if emits.has_headers() {
            runs.reserve(emits.len());
            for e in emits.iter() {
                let start = headers.len();
                headers.extend(e.headers().map(|(key, value)| Header { key, value }));
                runs.push(start..headers.len());
            }
        }
        // Group by destination, preserving emit order inside each group. Handlers mostly
        // write to one destination, so the group of the previous record is tried first.
        let mut groups: Vec<(usize, u32, Vec<Record<'_>>)> = Vec::new();
        let mut last = usize::MAX;
        for (i, e) in emits.iter().enumerate() {
            let topic = &topics[e.topic_index];
            let p = topic.partition_for_key(e.key);
            let record = Record {
                key: e.key,
                value: e.value,
                headers: runs.get(i).map_or(&[][..], |r| &headers[r.clone()]),
                timestamp_ms: None,
            };
            let same = |g: &(usize, u32, Vec<Record<'_>>)| g.0 == e.topic_index && g.1 == p;
            if groups.get(last).is_some_and(same) {
                groups[last].2.push(record);
            } else if let Some(g) = groups.iter().position(same) {
                groups[g].2.push(record);
                last = g;
            } else {
                // The first group is usually the only one: room for every emit. Later groups
                // grow as needed (reserving all emits for each would be P times the room).
                let room = if groups.is_empty() { emits.len() } else { 0 };
                groups.push((e.topic_index, p, Vec::with_capacity(room)));
                last = groups.len() - 1;
                groups[last].2.push(record);
            }
        }
        for (t, p, records) in groups {
            let topic = &topics[t];
            let Some(partition) = topic.partition(p) else {
                return Err(OutputError::Retry(format!(
                    "topic '{}' has no partition {p}",
                    topic.name()
                )));
            };
            for chunk in chunks(&records, self.max_batch_bytes) {
                self.append_records(topic, partition, chunk)?;
                metrics.records_out.fetch_add(chunk.len() as u64, Relaxed);
            }
        }
        Ok(())
    }
}

impl super::source::Sink for Outputs {
    fn append(&mut self, emits: &Emits, metrics: &DeploymentMetrics) -> Result<(), OutputError> {
        Outputs::append(self, emits, metrics)
    }

    /// One batch, whatever its size: the changes and their position marker are appended
    /// atomically or not at all.
    fn append_changelog(
        &mut self,
        topic: &str,
        partition: u32,
        writes: &rill_engine::StateWrites,
        next: i64,
    ) -> Result<Option<i64>, OutputError> {
        let t = self.topic(topic)?;
        let Some(p) = t.partition(partition).cloned() else {
            return Err(OutputError::Retry(format!(
                "state changelog '{topic}' has no partition {partition}"
            )));
        };
        let marker = crate::state::encode_position(next);
        let records = crate::state::changelog_records(writes, &marker);
        self.append_records(&t, &p, &records)?;
        Ok(Some(p.high_watermark()))
    }

    fn commit_transaction(
        &mut self,
        spec: &DeploymentSpec,
        partition: u32,
        next: i64,
    ) -> Result<(), OutputError> {
        self.commit_in_transaction(&spec.group, &spec.topic, partition, next)
    }

    fn abort_transaction(&mut self) -> Result<(), String> {
        self.abort_in_transaction()
    }

    /// Appends the record of `letter` to `<deployment>.dlq`, with the failure described in
    /// its headers.
    fn dead_letter(&mut self, letter: &DeadLetter<'_>) -> Result<(), OutputError> {
        let dlq = self.topic(&letter.spec.dlq_topic())?;
        let owned = DeadLetterRecord::new(letter);
        let headers: Vec<Header<'_>> = owned
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k.as_str(),
                value: v.as_deref(),
            })
            .collect();
        let record = Record {
            key: owned.key.as_deref(),
            value: owned.value.as_deref(),
            headers: &headers,
            timestamp_ms: None,
        };
        let p = dlq.partition_for_key(record.key);
        let partition = dlq.partition(p).ok_or_else(|| {
            OutputError::Retry(format!(
                "dead-letter topic '{}' has no partitions",
                dlq.name()
            ))
        })?;
        let partition = partition.clone();
        self.append_records(&dlq, &partition, &[record])
    }
}

/// A dead letter's record, owned: the failed record's key and value, and headers saying
/// what failed (`rill.error`, `rill.error.kind`, `rill.source.topic`,
/// `rill.source.partition`, `rill.source.offset`, `rill.attempts`, and
/// `rill.record.missing` when the record could not be read again) followed by the record's
/// own headers. Both modes write exactly this.
#[derive(Debug)]
pub(crate) struct DeadLetterRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetterRecord {
    pub(crate) fn new(letter: &DeadLetter<'_>) -> Self {
        let found = find_record(letter.batches, letter.offset);
        let mut headers: Vec<(String, Option<Vec<u8>>)> = [
            ("rill.error", letter.message.to_owned()),
            ("rill.error.kind", letter.kind.to_owned()),
            ("rill.source.topic", letter.spec.topic.clone()),
            ("rill.source.partition", letter.partition.to_string()),
            ("rill.source.offset", letter.offset.to_string()),
            ("rill.attempts", letter.attempts.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Some(v.into_bytes())))
        .collect();
        let (key, value) = match found {
            Some((key, value, own)) => {
                headers.extend(own);
                (key, value)
            }
            None => {
                headers.insert(6, ("rill.record.missing".into(), Some(b"true".to_vec())));
                (None, None)
            }
        };
        DeadLetterRecord {
            key,
            value,
            headers,
        }
    }
}

/// Splits `records` into runs whose estimated batch size stays under `max_batch_bytes`
/// (one run, the common case, when all fit). A record that alone exceeds it gets a run of its own, which the log
/// then rejects as too large.
fn chunks<'a, 'r>(records: &'a [Record<'r>], max_batch_bytes: usize) -> Vec<&'a [Record<'r>]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = BATCH_OVERHEAD;
    for (n, r) in records.iter().enumerate() {
        let rec = RECORD_OVERHEAD
            + r.key.map_or(0, <[u8]>::len)
            + r.value.map_or(0, <[u8]>::len)
            + r.headers
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 16)
                .sum::<usize>();
        if n > start && size.saturating_add(rec) > max_batch_bytes {
            out.push(&records[start..n]);
            start = n;
            size = BATCH_OVERHEAD;
        }
        size = size.saturating_add(rec);
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

type Owned = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

/// The record at `offset` in concatenated uncompressed batches, copied out.
fn find_record(batches: &[u8], offset: i64) -> Option<Owned> {
    for batch in rill_log::batch::batches(batches) {
        let batch = batch.ok()?;
        if offset < batch.base_offset() || offset > batch.last_offset() {
            continue;
        }
        for rec in batch.records() {
            let rec = rec.ok()?;
            if rec.offset == offset {
                let headers = rec
                    .headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect();
                return Some((
                    rec.key.map(<[u8]>::to_vec),
                    rec.value.map(<[u8]>::to_vec),
                    headers,
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &[u8]) -> Record<'_> {
        Record {
            key: None,
            value: Some(value),
            headers: &[],
            timestamp_ms: None,
        }
    }

    fn offsets(runs: &[&[Record<'_>]], all: &[Record<'_>]) -> Vec<Vec<usize>> {
        runs.iter()
            .map(|run| {
                run.iter()
                    .map(|r| all.iter().position(|a| std::ptr::eq(a, r)).expect("in all"))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn chunks_stay_under_the_limit_and_keep_order() {
        let v300 = vec![0u8; 300];
        let records: Vec<Record<'_>> = (0..10).map(|_| record(&v300)).collect();
        let runs = chunks(&records, 1000);
        assert!(runs.len() > 1);
        assert_eq!(
            offsets(&runs, &records).concat(),
            (0..10).collect::<Vec<_>>(),
            "every emit once, in order"
        );
        for run in &runs {
            let size: usize = BATCH_OVERHEAD + run.len() * (300 + RECORD_OVERHEAD);
            assert!(size <= 1000, "{} records", run.len());
        }
        // One record above the limit is alone in its run.
        let (small, large) = (vec![0u8; 10], vec![0u8; 5000]);
        let big = vec![record(&small), record(&large), record(&small)];
        assert_eq!(
            offsets(&chunks(&big, 1000), &big),
            vec![vec![0], vec![1], vec![2]]
        );
        assert_eq!(chunks(&records, usize::MAX).len(), 1);
    }
}
