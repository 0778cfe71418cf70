//! The admin API's request and response bodies, shared by the server and the CLI's client.
//! Documented in `docs/admin-api.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use rill_engine::Limits;

use crate::deployment::{Guarantee, OnFailure, StartFrom};

/// `POST /v1/topics`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateTopic {
    /// Topic name.
    pub name: String,
    /// Partitions; the host's default when absent.
    pub partitions: Option<u32>,
    /// `always`, `never` or `interval:MS`; the host's default when absent.
    pub flush: Option<String>,
    /// Delete segments older than this.
    pub retention_ms: Option<u64>,
    /// Delete oldest segments beyond this many bytes per partition.
    pub retention_bytes: Option<u64>,
    /// Roll segments at this size.
    pub segment_bytes: Option<u64>,
    /// `delete`, `compact` or `compact,delete` (Kafka's `cleanup.policy`); `delete` when
    /// absent.
    #[serde(default)]
    pub cleanup_policy: Option<String>,
    /// Check every non-null value against the subject `<topic>-value` of the schema
    /// registry (Confluent's `confluent.value.schema.validation`); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_schema_validation: Option<bool>,
    /// Check every non-null key against `<topic>-key`
    /// (`confluent.key.schema.validation`); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_schema_validation: Option<bool>,
    /// How long tombstones of a compacted topic are kept (Kafka's `delete.retention.ms`).
    #[serde(default)]
    pub delete_retention_ms: Option<u64>,
    /// A record is never compacted away before it is this old (`min.compaction.lag.ms`).
    #[serde(default)]
    pub min_compaction_lag_ms: Option<u64>,
}

/// A topic as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Flush policy, as text.
    pub flush: String,
    /// Retention by age.
    pub retention_ms: Option<u64>,
    /// Retention by size.
    pub retention_bytes: Option<u64>,
    /// Cleanup policy in Kafka's spelling (`delete`, `compact`, `compact,delete`).
    #[serde(default)]
    pub cleanup_policy: String,
    /// How long tombstones are kept, in ms.
    #[serde(default)]
    pub delete_retention_ms: u64,
    /// Minimum age before a record may be compacted away, in ms.
    #[serde(default)]
    pub min_compaction_lag_ms: u64,
    /// Whether values are checked against `<topic>-value`.
    #[serde(default)]
    pub value_schema_validation: bool,
    /// Whether keys are checked against `<topic>-key`.
    #[serde(default)]
    pub key_schema_validation: bool,
    /// Per partition: start offset, end offset, bytes.
    pub partition_info: Vec<PartitionSummary>,
}

/// One partition's extent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionSummary {
    /// Partition number.
    pub partition: u32,
    /// Oldest offset still stored.
    pub start: i64,
    /// High watermark.
    pub end: i64,
    /// Bytes on disk.
    pub size_bytes: u64,
}

/// One record to produce. Values and keys are UTF-8 text; binary data goes base64-encoded
/// in the `*_b64` fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProduceRecord {
    /// Key as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Key as base64, for binary keys (such as schema-framed ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_b64: Option<String>,
    /// Value as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value as base64, for binary payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    /// Explicit partition; otherwise by key (murmur2, like Kafka) or round-robin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Headers, text values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Timestamp in ms; now when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

/// `POST /v1/topics/{name}/records`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Produce {
    /// Records, appended in order (per partition).
    pub records: Vec<ProduceRecord>,
}

/// Where each produced record landed, in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Produced {
    /// `(partition, offset)` per record.
    pub offsets: Vec<(u32, i64)>,
}

/// `POST /v1/topics/{name}/fetch`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fetch {
    /// Next offset per partition. When absent, computed from `from` (or the group's commit).
    #[serde(default)]
    pub positions: Option<BTreeMap<u32, i64>>,
    /// Start when `positions` is absent: earliest, latest, OFFSET or @TIMESTAMP_MS.
    #[serde(default)]
    pub from: Option<String>,
    /// Use this group's committed offsets when `positions` is absent.
    #[serde(default)]
    pub group: Option<String>,
    /// Most records to return.
    pub max_records: usize,
    /// How long to wait when nothing is available.
    pub wait_ms: u64,
    /// Read as a read_committed Kafka consumer: only below the last stable offset, records
    /// of aborted transactions skipped.
    #[serde(default)]
    pub read_committed: bool,
}

/// A fetched record. `value` is text when the bytes are UTF-8, else `value_b64` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchedRecord {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// Timestamp, ms.
    pub timestamp: i64,
    /// Key as text (lossy for binary keys).
    pub key: Option<String>,
    /// Key as base64 when it is not UTF-8 (`key` then holds its lossy text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_b64: Option<String>,
    /// Value as text.
    pub value: Option<String>,
    /// Value as base64 when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    /// Headers (lossy text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// One key of a deployment's state (`GET /v1/deployments/{name}/state/{key}`, and the
/// entries of a scan). `value` is text when the bytes are UTF-8, else `value_b64` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateEntry {
    /// The key (lossy text for binary keys).
    pub key: String,
    /// The partition whose store holds it.
    pub partition: u32,
    /// The value as text.
    pub value: Option<String>,
    /// The value as base64 when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    /// The next source offset the partition's state reflects: the answer is the state after
    /// every record before it, and none after.
    pub position: i64,
}

/// A page of a state scan (`GET /v1/deployments/{name}/state?prefix=&after=&limit=`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateScan {
    /// Entries in key order (across partitions).
    pub entries: Vec<StateEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
    /// Partitions this host does not run (cluster mode: other hosts run them, and their
    /// state is queried there); not part of `entries`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elsewhere: Vec<u32>,
}

/// The fetch answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fetched {
    /// Records in partition order, then offset order.
    pub records: Vec<FetchedRecord>,
    /// Next offset per partition after these records.
    pub positions: BTreeMap<u32, i64>,
    /// High watermark per partition.
    pub ends: BTreeMap<u32, i64>,
}

/// `POST /v1/groups/{group}/offsets`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitOffsets {
    /// Topic.
    pub topic: String,
    /// Next offset per partition.
    pub offsets: BTreeMap<u32, i64>,
}

/// `POST /v1/deployments`
///
/// Every optional field left out takes, when a deployment of this name exists (a redeploy),
/// that deployment's value, and otherwise the host's default. So a redeploy that names only
/// the module keeps the group, the pause state, the limits and the retry settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Deploy {
    /// Deployment name.
    pub name: String,
    /// Topic to consume.
    pub topic: String,
    /// Group; the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Where a new group starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<StartFrom>,
    /// Allowed output topics (any when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<String>>,
    /// Parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<(String, String)>>,
    /// Limits; each one left out keeps its current (or default) value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsPatch>,
    /// Tries per record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// After the last try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// `at-least-once` or `exactly-once`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarantee: Option<Guarantee>,
    /// Records per invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_records: Option<u32>,
    /// Bytes read per invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_bytes: Option<usize>,
    /// Linger before a small batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linger_ms: Option<u64>,
    /// First retry delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_initial_ms: Option<u64>,
    /// Retry delay ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
    /// Deploy paused (`true`) or running (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Replay: forget the group's offsets and the deployment's state and run it again from
    /// the start of its topic (its outputs are emitted again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
    /// The module, base64.
    pub wasm_b64: String,
}

/// Per-invocation limits in a deploy request; `None` keeps the current (or default) value.
/// Same field names as [`Limits`], so a full `Limits` object is accepted too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsPatch {
    /// Memory cap in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU-time limit per invocation, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<u64>,
    /// Most bytes one invocation may emit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_emit_bytes: Option<u64>,
    /// Most records one invocation may emit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_emits: Option<u32>,
}

impl LimitsPatch {
    /// `base` with the given fields replaced.
    pub fn apply(&self, base: &Limits) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes.unwrap_or(base.memory_bytes),
            cpu_time: self
                .cpu_time
                .map(std::time::Duration::from_millis)
                .unwrap_or(base.cpu_time),
            max_emit_bytes: self.max_emit_bytes.unwrap_or(base.max_emit_bytes),
            max_emits: self.max_emits.unwrap_or(base.max_emits),
        }
    }
}

/// `GET /v1/status`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Host version.
    pub version: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Data dir.
    pub data_dir: String,
    /// Admin address.
    pub admin_addr: String,
    /// Kafka listener address, if on.
    pub kafka_addr: Option<String>,
    /// Topic count.
    pub topics: usize,
    /// Deployment count.
    pub deployments: usize,
    /// Deployments failed or retrying.
    pub unhealthy_deployments: Vec<String>,
    /// What recovery found at start-up (truncated tails, corrupt batches).
    pub recovery: Vec<String>,
    /// Deployments that could not be restored.
    pub restore_failures: Vec<(String, String)>,
    /// Cluster mode: the cluster and whether it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::ClusterStatus>,
    /// The schema registry: where, whose, and (this host's) how many subjects and schemas.
    #[serde(default)]
    pub schema_registry: Option<String>,
}

/// Any error: one line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

/// `GET /v1/groups`: one row per committed (group, topic, partition).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupLag {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Committed offset (the next to read). Kafka clients may commit -1 or -2 as reset
    /// markers; they are shown as committed.
    pub committed: i64,
    /// High watermark.
    pub end: i64,
    /// `end - committed`, where a negative committed value counts as 0.
    pub lag: i64,
}
