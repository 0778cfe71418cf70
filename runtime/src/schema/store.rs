//! Where the registry keeps its changes: the compacted topic `_schemas` of the host's log
//! (one partition, fsynced at every write), in records shaped like Confluent's own
//! `_schemas` topic. Its format is described in docs/schemas.md.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use rill_log::batch::Record;
use rill_log::{CleanupPolicy, FlushPolicy, Log, TopicConfig};
use rill_schema::SchemaType;

use super::client::Reference;

/// The topic the registry's changes live in.
pub const TOPIC: &str = "_schemas";

/// A version as stored (Confluent's `SCHEMA` record value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredVersion {
    /// The subject.
    pub subject: String,
    /// The version.
    pub version: i32,
    /// The global id.
    pub id: u32,
    /// AVRO when absent.
    #[serde(default, skip_serializing_if = "is_avro")]
    pub schema_type: SchemaType,
    /// The text.
    pub schema: String,
    /// What it refers to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// Soft-deleted.
    #[serde(default)]
    pub deleted: bool,
}

fn is_avro(t: &SchemaType) -> bool {
    *t == SchemaType::Avro
}

/// One change to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A version registered, or its `deleted` flag changed.
    Version(StoredVersion),
    /// A version permanently deleted.
    Forget {
        /// The subject.
        subject: String,
        /// The version.
        version: i32,
    },
    /// The global (`None` subject) or a subject's level set, or (`None` level) removed.
    Level {
        /// The subject.
        subject: Option<String>,
        /// The level.
        level: Option<rill_schema::CompatibilityLevel>,
    },
    /// The next id to hand out.
    NextId(u32),
}

/// The registry's durable storage.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Every change, oldest first (after compaction, the last of each key).
    fn replay(&self) -> Result<Vec<Change>, String>;
    /// Writes `changes` atomically and durably.
    fn append(&self, changes: &[Change]) -> Result<(), String>;
}

impl Change {
    /// The record key: changes with the same key replace each other.
    pub fn key(&self) -> Vec<u8> {
        self.to_record().0
    }

    /// The record key and value (`None`: a tombstone).
    pub fn to_record(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let (key, value) = match self {
            Change::Version(v) => (
                json!({"keytype": "SCHEMA", "subject": v.subject, "version": v.version, "magic": 1}),
                Some(serde_json::to_value(v).unwrap_or(Value::Null)),
            ),
            Change::Forget { subject, version } => (
                json!({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}),
                None,
            ),
            Change::Level { subject, level } => (
                json!({"keytype": "CONFIG", "subject": subject, "magic": 0}),
                level.map(|l| json!({"compatibilityLevel": l.as_str()})),
            ),
            Change::NextId(n) => (
                json!({"keytype": "RILL_NEXT_ID", "magic": 0}),
                Some(json!({"nextId": n})),
            ),
        };
        (
            key.to_string().into_bytes(),
            value.map(|v| v.to_string().into_bytes()),
        )
    }

    /// Reads a record back; `Ok(None)` for record kinds the registry does not use.
    pub fn from_record(key: &[u8], value: Option<&[u8]>) -> Result<Option<Change>, String> {
        let key: Value =
            serde_json::from_slice(key).map_err(|e| format!("a key that is not JSON: {e}"))?;
        let value: Option<Value> = value
            .map(serde_json::from_slice)
            .transpose()
            .map_err(|e| format!("a value that is not JSON: {e}"))?;
        let subject = key
            .get("subject")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(match key.get("keytype").and_then(Value::as_str) {
            Some("SCHEMA") => match value {
                Some(v) => Some(Change::Version(
                    serde_json::from_value(v).map_err(|e| format!("a SCHEMA record: {e}"))?,
                )),
                None => Some(Change::Forget {
                    subject: subject.ok_or("a SCHEMA tombstone without a subject")?,
                    version: key
                        .get("version")
                        .and_then(Value::as_i64)
                        .ok_or("a SCHEMA tombstone without a version")?
                        as i32,
                }),
            },
            Some("CONFIG") => {
                let level = match value {
                    None => None,
                    Some(v) => Some(
                        v.get("compatibilityLevel")
                            .and_then(Value::as_str)
                            .ok_or("a CONFIG record without compatibilityLevel")?
                            .parse()?,
                    ),
                };
                Some(Change::Level { subject, level })
            }
            Some("RILL_NEXT_ID") => value
                .and_then(|v| v.get("nextId").and_then(Value::as_u64))
                .map(|n| Change::NextId(n as u32)),
            _ => None,
        })
    }
}

/// The store in the host's own log.
#[derive(Debug)]
pub struct LogStore {
    log: Arc<Log>,
}

impl LogStore {
    /// The store over `log`. The `_schemas` topic is created at the first write, so a host
    /// whose registry is never used has no extra topic.
    pub fn new(log: Arc<Log>) -> LogStore {
        LogStore { log }
    }

    /// The config `_schemas` is created with: compacted, fsynced at every write, room for
    /// the largest schema the REST API takes (16 MiB bodies).
    fn config() -> TopicConfig {
        TopicConfig {
            partitions: 1,
            flush: FlushPolicy::Always,
            cleanup_policy: CleanupPolicy::Compact,
            max_message_bytes: 17 << 20,
            ..TopicConfig::default()
        }
    }

    fn partition(&self, create: bool) -> Result<Option<Arc<rill_log::Partition>>, String> {
        let topic = match self.log.topic(TOPIC) {
            // Created by something else (a Kafka client's auto-create) before the registry's
            // first write: while it is empty, it is made again with the registry's config.
            Some(t)
                if create
                    && !Self::fits(t.config())
                    && t.partitions().iter().all(|p| p.high_watermark() == 0) =>
            {
                tracing::warn!(
                    "topic {TOPIC} existed, empty, with another config: made again for the schema registry"
                );
                self.log
                    .delete_topic(TOPIC)
                    .map_err(|e| format!("cannot replace topic {TOPIC}: {e}"))?;
                self.log
                    .create_topic(TOPIC, Self::config())
                    .map_err(|e| format!("cannot create topic {TOPIC}: {e}"))?
            }
            Some(t) => {
                if !Self::fits(t.config()) {
                    tracing::warn!(
                        "topic {TOPIC} is not compacted with flush = always: the schema registry's writes may not survive a machine crash"
                    );
                }
                t
            }
            None if create => self
                .log
                .create_topic(TOPIC, Self::config())
                .map_err(|e| format!("cannot create topic {TOPIC}: {e}"))?,
            None => return Ok(None),
        };
        topic
            .partition(0)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("topic {TOPIC} has no partition 0"))
    }

    fn fits(config: &TopicConfig) -> bool {
        config.flush == FlushPolicy::Always && config.cleanup_policy == CleanupPolicy::Compact
    }
}

impl Store for LogStore {
    fn replay(&self) -> Result<Vec<Change>, String> {
        let Some(p) = self.partition(false)? else {
            return Ok(Vec::new());
        };
        let end = p.high_watermark();
        let mut at = p.log_start_offset();
        let mut out = Vec::new();
        while at < end {
            let read = p
                .read(at, 4 << 20)
                .map_err(|e| format!("reading {TOPIC} at {at}: {e}"))?;
            if read.next_offset <= at {
                break;
            }
            for batch in rill_log::batch::batches(&read.bytes) {
                let batch = batch.map_err(|e| format!("{TOPIC} at {at}: {e}"))?;
                if batch.is_control() {
                    continue;
                }
                for rec in batch.records() {
                    let rec = rec.map_err(|e| format!("{TOPIC} at {at}: {e}"))?;
                    if rec.offset < at {
                        continue;
                    }
                    let key = rec.key.unwrap_or_default();
                    match Change::from_record(key, rec.value) {
                        Ok(Some(c)) => out.push(c),
                        Ok(None) => {}
                        Err(e) => tracing::warn!("{TOPIC} offset {}: skipped {e}", rec.offset),
                    }
                }
            }
            at = read.next_offset;
        }
        Ok(out)
    }

    fn append(&self, changes: &[Change]) -> Result<(), String> {
        let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            changes.iter().map(Change::to_record).collect();
        let records: Vec<Record<'_>> = encoded
            .iter()
            .map(|(k, v)| Record {
                key: Some(k),
                value: v.as_deref(),
                headers: &[],
                timestamp_ms: None,
            })
            .collect();
        let p = self
            .partition(true)?
            .ok_or_else(|| format!("topic {TOPIC} is missing"))?;
        p.append(&records)
            .map(|_| ())
            .map_err(|e| format!("writing to {TOPIC}: {e}"))
    }
}
