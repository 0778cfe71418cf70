//! Appending what a handler emitted, and dead-lettering what it could not handle.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use rill_engine::Emits;
use rill_log::{Header, Log, Record, Topic, TopicConfig, TopicError};

use crate::deployment::DeploymentSpec;
use crate::metrics::DeploymentMetrics;

/// A worker's view of the topics it writes to, with topics looked up once and cached.
pub(super) struct Outputs {
    log: Arc<Log>,
    topics: HashMap<String, Arc<Topic>>,
    /// Flush policy for topics this deployment creates (its source topic's).
    create_config: TopicConfig,
}

impl Outputs {
    pub(super) fn new(log: Arc<Log>, create_config: TopicConfig) -> Self {
        Outputs {
            log,
            topics: HashMap::new(),
            create_config,
        }
    }

    /// The topic, created with one partition if it does not exist yet.
    fn topic(&mut self, name: &str) -> Result<Arc<Topic>, String> {
        if let Some(t) = self.topics.get(name) {
            return Ok(t.clone());
        }
        let topic = match self.log.topic(name) {
            Some(t) => t,
            None => match self.log.create_topic(name, self.create_config.clone()) {
                Ok(t) => t,
                Err(TopicError::AlreadyExists(_)) => self
                    .log
                    .topic(name)
                    .ok_or_else(|| format!("topic '{name}' vanished while being created"))?,
                Err(e) => return Err(format!("cannot create output topic '{name}': {e}")),
            },
        };
        self.topics.insert(name.to_owned(), topic.clone());
        Ok(topic)
    }

    /// Appends emits, one batch per (topic, partition), keeping their order per key.
    pub(super) fn append(
        &mut self,
        emits: &Emits,
        metrics: &DeploymentMetrics,
    ) -> Result<(), String> {
        if emits.is_empty() {
            return Ok(());
        }
        // Each distinct topic is looked up once per invocation, not once per record.
        let topics = emits
            .topics()
            .iter()
            .map(|t| self.topic(t))
            .collect::<Result<Vec<_>, _>>()?;
        // Headers of every record, flat, so a record borrows its run of them.
        let mut headers: Vec<Header<'_>> = Vec::new();
        let mut runs: Vec<std::ops::Range<usize>> = Vec::with_capacity(emits.len());
        for e in emits.iter() {
            let start = headers.len();
            headers.extend(e.headers().map(|(key, value)| Header { key, value }));
            runs.push(start..headers.len());
        }
        // Group by destination, preserving emit order inside each group. Handlers mostly
        // write to one destination, so the common case is a single group.
        let mut groups: Vec<(usize, u32, Vec<Record<'_>>)> = Vec::new();
        for (e, run) in emits.iter().zip(&runs) {
            let topic = &topics[e.topic_index];
            let p = if topic.partitions().len() == 1 {
                0
            } else {
                topic.partition_for_key(e.key)
            };
            let record = Record {
                key: e.key,
                value: e.value,
                headers: &headers[run.clone()],
                timestamp_ms: None,
            };
            match groups
                .iter_mut()
                .find(|(t, gp, _)| *t == e.topic_index && *gp == p)
            {
                Some((_, _, records)) => records.push(record),
                None => groups.push((e.topic_index, p, vec![record])),
            }
        }
        for (t, p, records) in groups {
            let topic = &topics[t];
            let partition = topic
                .partition(p)
                .ok_or_else(|| format!("topic '{}' has no partition {p}", topic.name()))?;
            partition
                .append(&records)
                .map_err(|e| format!("append to {}/{p} failed: {e}", topic.name()))?;
            metrics.records_out.fetch_add(records.len() as u64, Relaxed);
        }
        Ok(())
    }

    /// Appends the record at `offset` (found in `batches`) to `<deployment>.dlq`, with the
    /// failure described in its headers.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dead_letter(
        &mut self,
        spec: &DeploymentSpec,
        partition: u32,
        offset: i64,
        batches: &[u8],
        kind: &str,
        message: &str,
        attempts: u32,
    ) -> Result<(), String> {
        let dlq = self.topic(&format!("{}.dlq", spec.name))?;
        let found = find_record(batches, offset);
        let (key, value, orig_headers) = match &found {
            Some((k, v, h)) => (k.as_deref(), v.as_deref(), h.as_slice()),
            None => (None, None, &[][..]),
        };
        let partition_s = partition.to_string();
        let offset_s = offset.to_string();
        let attempts_s = attempts.to_string();
        let mut headers = vec![
            Header {
                key: "rill.error",
                value: Some(message.as_bytes()),
            },
            Header {
                key: "rill.error.kind",
                value: Some(kind.as_bytes()),
            },
            Header {
                key: "rill.source.topic",
                value: Some(spec.topic.as_bytes()),
            },
            Header {
                key: "rill.source.partition",
                value: Some(partition_s.as_bytes()),
            },
            Header {
                key: "rill.source.offset",
                value: Some(offset_s.as_bytes()),
            },
            Header {
                key: "rill.attempts",
                value: Some(attempts_s.as_bytes()),
            },
        ];
        if found.is_none() {
            headers.push(Header {
                key: "rill.record.missing",
                value: Some(b"true"),
            });
        }
        headers.extend(orig_headers.iter().map(|(k, v)| Header {
            key: k.as_str(),
            value: v.as_deref(),
        }));
        let record = Record {
            key,
            value,
            headers: &headers,
            timestamp_ms: None,
        };
        let p = dlq.partition_for_key(key);
        dlq.partition(p)
            .ok_or_else(|| "dead-letter topic has no partitions".to_string())?
            .append(&[record])
            .map_err(|e| format!("append to dead-letter topic failed: {e}"))?;
        Ok(())
    }
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
