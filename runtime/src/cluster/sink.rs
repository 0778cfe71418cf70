//! Outputs and dead letters produced to the cluster: every record of an invocation is
//! sent, then every acknowledgement (acks=all, idempotent producer) awaited, before the
//! worker commits the input offset.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use rill_engine::Emits;

use super::Cluster;
use crate::metrics::DeploymentMetrics;
use crate::scheduler::{DeadLetter, DeadLetterRecord, OutputError, Sink};

/// A worker's outputs in cluster mode. Topics it writes to are checked (and created with one
/// partition if missing) once.
pub(crate) struct ClusterSink {
    cluster: Arc<Cluster>,
    known: HashSet<String>,
}

impl ClusterSink {
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        ClusterSink {
            cluster,
            known: HashSet::new(),
        }
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
    fn send(&self, record: FutureRecord<'_, [u8], [u8]>) -> Result<DeliveryFuture, OutputError> {
        let mut record = record;
        loop {
            match self.cluster.producer.send_result(record) {
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
    fn settle(&self, pending: Vec<DeliveryFuture>) -> Result<(), OutputError> {
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
            match self.send(r) {
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
        let f = self.send(r)?;
        self.settle(vec![f])
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
