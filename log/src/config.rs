//! Topic configuration and flush policies, persisted in `topic.toml`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// When appended bytes are fsynced, and so what an acknowledgement means.
///
/// - `Always`: `append` returns only after the bytes are fdatasync'ed; readers see a batch only
///   once it is durable. Concurrent appenders share one fsync (group commit).
/// - `IntervalMs(n)`: `append` returns once the bytes are in the page cache and visible to
///   readers; a background flusher fsyncs dirty partitions every `n` ms. An OS crash or power
///   loss can lose up to the last `n` ms (plus one fsync) of acknowledged records.
/// - `Never`: page cache only, like Kafka's default. A process crash loses nothing; an OS crash
///   can lose whatever the kernel had not written back.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FlushPolicy {
    /// fdatasync before acknowledging, with group commit.
    Always,
    /// fdatasync in the background at this interval.
    IntervalMs(u64),
    /// Never fsync (except when a segment is sealed).
    #[default]
    Never,
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushPolicy::Always => f.write_str("always"),
            FlushPolicy::Never => f.write_str("never"),
            FlushPolicy::IntervalMs(ms) => write!(f, "interval:{ms}"),
        }
    }
}

/// Error from parsing a [`FlushPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid flush policy {0:?}: expected always, never, interval:<ms> or <ms>ms")]
pub struct ParseFlushPolicyError(String);

impl FromStr for FlushPolicy {
    type Err = ParseFlushPolicyError;
    /// Accepts `always`, `never`, `interval:<ms>` and `<ms>ms`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let err = || ParseFlushPolicyError(s.to_string());
        match t.as_str() {
            "always" => Ok(FlushPolicy::Always),
            "never" => Ok(FlushPolicy::Never),
            _ => {
                let digits = t
                    .strip_prefix("interval:")
                    .or_else(|| t.strip_suffix("ms"))
                    .ok_or_else(err)?;
                let ms: u64 = digits.trim().parse().map_err(|_| err())?;
                if ms == 0 {
                    Err(err())
                } else {
                    Ok(FlushPolicy::IntervalMs(ms))
                }
            }
        }
    }
}

/// What happens to old records of a topic (Kafka's `cleanup.policy`).
///
/// - `Delete`: whole segments go by age and size (`retention_ms`, `retention_bytes`).
/// - `Compact`: only the latest record per key is kept; a record with a null value (a
///   tombstone) deletes its key and is itself removed `delete_retention_ms` after compaction
///   reached it. Offsets never change; compacted records leave gaps.
/// - `CompactDelete`: both.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    /// Delete whole segments by age and size.
    #[default]
    Delete,
    /// Keep the latest record per key.
    Compact,
    /// Compact, and delete by age and size.
    CompactDelete,
}

impl CleanupPolicy {
    /// Whether the topic is compacted.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    /// Whether segments are deleted by age and size.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

impl fmt::Display for CleanupPolicy {
    /// Kafka's spelling: `delete`, `compact`, `compact,delete`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        })
    }
}

impl FromStr for CleanupPolicy {
    type Err = String;
    /// Accepts Kafka's lists: `delete`, `compact`, `compact,delete` (either order, spaces
    /// allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut compact, mut delete) = (false, false);
        for part in s.split(',') {
            match part.trim().to_ascii_lowercase().as_str() {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => {
                    return Err(format!(
                        "invalid cleanup policy {s:?}: expected delete, compact or compact,delete"
                    ));
                }
            }
        }
        Ok(match (compact, delete) {
            (true, true) => CleanupPolicy::CompactDelete,
            (true, false) => CleanupPolicy::Compact,
            _ => CleanupPolicy::Delete,
        })
    }
}

/// Per-topic configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TopicConfig {
    /// Number of partitions (grown, never shrunk, by
    /// [`Log::create_partitions`](crate::Log::create_partitions)).
    pub partitions: u32,
    /// Flush policy of every partition.
    pub flush: FlushPolicy,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Delete the oldest sealed segments while a partition is larger than this.
    pub retention_bytes: Option<u64>,
    /// Roll the active segment once it reaches this size (default 1 GiB; at most 2 GiB).
    pub segment_bytes: u64,
    /// Roll the active segment once it is this old (default 7 days).
    pub segment_ms: u64,
    /// Largest record batch a producer may append, in bytes, header included (Kafka's
    /// `max.message.bytes`, default [`DEFAULT_MAX_MESSAGE_BYTES`]). Batches the log encodes
    /// itself ([`Partition::append`](crate::Partition::append)) are checked record by record:
    /// each record alone must fit, so a caller batching many small records is not refused.
    /// Topics written before this setting existed read the default, as Kafka's topics do.
    pub max_message_bytes: u32,
    /// What happens to old records (Kafka's `cleanup.policy`, default delete).
    pub cleanup_policy: CleanupPolicy,
    /// How long a tombstone of a compacted topic is kept once compaction reached it, in ms
    /// (Kafka's `delete.retention.ms`, default 1 day). Consumers that read the topic from the
    /// start within this time see the deletes.
    pub delete_retention_ms: u64,
    /// A record is never compacted away before it is this old, in ms (Kafka's
    /// `min.compaction.lag.ms`, default 0).
    pub min_compaction_lag_ms: u64,
    /// Whether every non-null value appended through a door must be framed with the id of
    /// a schema registered as a version of the subject `<topic>-value`, and decode with it
    /// (Confluent Server's `confluent.value.schema.validation`, default off). The log only
    /// keeps the setting; the doors check (`rill-runtime`'s `schema::validation`).
    pub value_schema_validation: bool,
    /// The same for non-null keys and the subject `<topic>-key`
    /// (`confluent.key.schema.validation`, default off).
    pub key_schema_validation: bool,
}

/// Kafka's default `max.message.bytes`: 1 MiB plus the 12-byte log overhead (offset and
/// length) that Kafka's message-format history added to it.
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1_048_588;

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            flush: FlushPolicy::Never,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            value_schema_validation: false,
            key_schema_validation: false,
        }
    }
}

impl TopicConfig {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.partitions == 0 || self.partitions > 100_000 {
            return Err(format!(
                "partitions must be 1..=100000, got {}",
                self.partitions
            ));
        }
        // Index positions are u32, so a segment must stay well under 4 GiB.
        if !(1024..=(2u64 << 30)).contains(&self.segment_bytes) {
            return Err(format!(
                "segment_bytes must be 1 KiB..=2 GiB, got {}",
                self.segment_bytes
            ));
        }
        if self.segment_ms == 0 {
            return Err("segment_ms must be > 0".into());
        }
        // Kafka's bound: a batch size is an i32 on the wire.
        if self.max_message_bytes > i32::MAX as u32 {
            return Err(format!(
                "max_message_bytes must be at most {}, got {}",
                i32::MAX,
                self.max_message_bytes
            ));
        }
        if self.flush == FlushPolicy::IntervalMs(0) {
            return Err("flush interval must be > 0 ms".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_policy_parses_and_prints() {
        for (s, p) in [
            ("always", FlushPolicy::Always),
            ("never", FlushPolicy::Never),
            ("interval:250", FlushPolicy::IntervalMs(250)),
            ("250ms", FlushPolicy::IntervalMs(250)),
        ] {
            assert_eq!(s.parse::<FlushPolicy>().unwrap(), p);
            assert_eq!(p.to_string().parse::<FlushPolicy>().unwrap(), p);
        }
        assert!("sometimes".parse::<FlushPolicy>().is_err());
        assert!("interval:0".parse::<FlushPolicy>().is_err());
    }

    #[test]
    fn config_round_trips_through_toml() {
        let c = TopicConfig {
            partitions: 3,
            flush: FlushPolicy::IntervalMs(5),
            retention_ms: Some(1000),
            ..TopicConfig::default()
        };
        let s = toml::to_string(&c).unwrap();
        assert!(s.contains("[flush]\ninterval_ms = 5"), "{s}");
        assert_eq!(toml::from_str::<TopicConfig>(&s).unwrap(), c);
    }

    #[test]
    fn schema_validation_defaults_off_and_round_trips() {
        // A topic.toml written before the setting existed reads it as off.
        let old: TopicConfig = toml::from_str("partitions = 2").unwrap();
        assert!(!old.value_schema_validation && !old.key_schema_validation);
        let c = TopicConfig {
            value_schema_validation: true,
            key_schema_validation: true,
            ..TopicConfig::default()
        };
        let s = toml::to_string(&c).unwrap();
        assert!(s.contains("value_schema_validation = true"), "{s}");
        assert_eq!(toml::from_str::<TopicConfig>(&s).unwrap(), c);
    }
}
