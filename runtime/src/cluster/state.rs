//! Durable state in cluster mode: the changelog `<deployment>.state` is a compacted topic
//! of the cluster, written by the partition's sink and read back by whichever host the
//! partition is assigned to, before its worker handles a record.
//!
//! The format is the embedded one (docs/state.md). An at-least-once sink produces an
//! invocation's changes and its position marker as separate messages: a host that dies
//! mid-write leaves changes without their marker at the end, which a restore drops
//! (`crate::state`). An exactly-once sink produces them in the partition's transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use rill_engine::StateWrites;

use super::sink::ClusterSink;
use super::{Cluster, REQUEST_TIMEOUT};
use crate::deployment::DeploymentSpec;
use crate::scheduler::OutputError;
use crate::state::{Apply, Changelog, encode_position};

/// How long a restore may wait for the changelog's end before it fails (and is retried).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);

/// Kafka's default `delete.retention.ms`, which the changelog topic keeps.
const DELETE_RETENTION_MS: u64 = 24 * 3600 * 1000;

/// Creates the changelog of `spec` in the cluster if it is missing: compacted, one partition
/// per source partition, the replication of topics Rill creates. Blocking.
pub(super) fn ensure_changelog(
    cluster: &Arc<Cluster>,
    spec: &DeploymentSpec,
    partitions: u32,
) -> Result<Arc<dyn Changelog>, String> {
    let topic = spec.state_topic();
    cluster.ensure_topic(
        &topic,
        partitions as i32,
        cluster.replication(),
        &[("cleanup.policy", "compact")],
    )?;
    match cluster.fetch_partitions(&topic)? {
        Some(n) if n >= partitions => {}
        n => {
            return Err(format!(
                "the state changelog '{topic}' has {} partitions, fewer than the {partitions} \
                 of '{}': add partitions to it with your Kafka tools",
                n.unwrap_or(0),
                spec.topic
            ));
        }
    }
    Ok(Arc::new(KafkaChangelog {
        cluster: cluster.clone(),
        topic,
    }))
}

/// Deletes the changelog of `spec` from the cluster, if it exists. Blocking.
pub(super) fn drop_changelog(cluster: &Cluster, spec: &DeploymentSpec) -> Result<(), String> {
    let topic = spec.state_topic();
    let opts = rdkafka::admin::AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = cluster
        .runtime
        .block_on(cluster.admin.delete_topics(&[&topic], &opts))
        .map_err(|e| format!("cannot delete the state changelog '{topic}': {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((_, e)) => return Err(format!("cannot delete the state changelog '{topic}': {e}")),
        }
    }
    Ok(())
}

/// The changelog in the cluster, read with a consumer outside any group.
struct KafkaChangelog {
    cluster: Arc<Cluster>,
    topic: String,
}

impl Changelog for KafkaChangelog {
    fn bounds(&self, partition: u32) -> Result<(i64, i64), String> {
        self.cluster
            .reader
            .fetch_watermarks(&self.topic, partition as i32, REQUEST_TIMEOUT)
            .map_err(|e| format!("watermarks of {}/{partition}: {e}", self.topic))
    }

    /// Reads committed records (the reader's isolation) from `from` until the end of the
    /// partition as it was when the replay began.
    fn replay(&self, partition: u32, from: i64, apply: &mut Apply<'_>) -> Result<i64, String> {
        let (low, high) = self.bounds(partition)?;
        let from = from.max(low);
        if from >= high {
            return Ok(from);
        }
        let mut config = self.cluster.config.reader(&self.cluster.host_id);
        config.set("enable.partition.eof", "true");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| format!("changelog reader: {e}"))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition as i32, Offset::Offset(from))
            .map_err(|e| format!("changelog reader: {e}"))?;
        consumer
            .assign(&tpl)
            .map_err(|e| format!("changelog reader: {e}"))?;
        let started = Instant::now();
        let mut next = from;
        while next < high {
            if started.elapsed() > RESTORE_TIMEOUT {
                return Err(format!(
                    "reading {}/{partition} up to {high} took more than {}s (at {next})",
                    self.topic,
                    RESTORE_TIMEOUT.as_secs()
                ));
            }
            match consumer.poll(Duration::from_millis(500)) {
                None => {}
                Some(Ok(m)) => {
                    apply(m.key().unwrap_or_default(), m.payload());
                    next = m.offset() + 1;
                }
                // A read_committed reader reaches the end at the last stable offset: the
                // records after it are an open transaction's (a zombie's, aborted soon).
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    let position = consumer
                        .position()
                        .ok()
                        .and_then(|p| p.elements().first().map(|e| e.offset()));
                    if let Some(Offset::Offset(o)) = position {
                        next = next.max(o);
                    }
                    if next >= high {
                        break;
                    }
                }
                Some(Err(e)) => {
                    return Err(format!("reading {}/{partition}: {e}", self.topic));
                }
            }
        }
        Ok(next)
    }

    fn max_snapshot_age_ms(&self) -> u64 {
        DELETE_RETENTION_MS / 2
    }
}

impl ClusterSink {
    /// Produces an invocation's changes and its position marker to `partition` of the
    /// changelog and awaits every acknowledgement (in the open transaction, exactly once).
    /// Returns the offset after the marker.
    pub(super) fn produce_changelog(
        &mut self,
        topic: &str,
        partition: u32,
        writes: &StateWrites,
        next: i64,
    ) -> Result<Option<i64>, OutputError> {
        let producer = self.producer()?;
        let marker = encode_position(next);
        let mut pending = Vec::with_capacity(writes.len());
        let records = crate::state::changelog_records(writes, &marker);
        for r in &records {
            let mut fr: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).partition(partition as i32);
            if let Some(k) = r.key {
                fr = fr.key(k);
            }
            if let Some(v) = r.value {
                fr = fr.payload(v);
            }
            match Self::send(&producer, fr) {
                Ok(f) => pending.push(f),
                Err(e) => {
                    let _ = self.settle(pending);
                    return Err(e);
                }
            }
        }
        let last = pending.pop();
        self.settle(pending)?;
        let Some(last) = last else { return Ok(None) };
        match self.cluster.runtime.block_on(last) {
            Ok(Ok(d)) => Ok(Some(d.offset + 1)),
            Ok(Err((e, _))) => Err(OutputError::Retry(format!(
                "produce to '{topic}' failed: {e}"
            ))),
            Err(_) => Err(OutputError::Retry("the producer was closed".into())),
        }
    }
}
