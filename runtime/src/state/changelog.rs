//! The changelog of a deployment's state: records, the position marker, and replaying it.
//!
//! Format (docs/state.md): one record per changed key, the key as is and the new value (a
//! null value deletes: a tombstone, which compaction removes after the topic's
//! `delete_retention_ms`), then one *position marker*: empty key, value the next source
//! offset as 8 bytes big-endian. State keys are never empty, so the marker's key is its own;
//! compaction keeps the latest marker of each partition.

use std::sync::Arc;

use rill_engine::StateWrites;
use rill_log::{Log, Record};

/// What a replay calls with each record: its key and value (`None`: a tombstone).
pub(crate) type Apply<'a> = dyn FnMut(&[u8], Option<&[u8]>) + 'a;

/// Where a store is restored from.
pub(crate) trait Changelog: Send + Sync {
    /// The first and the next offset of the changelog's `partition` (`(0, 0)` if it does
    /// not exist yet).
    fn bounds(&self, partition: u32) -> Result<(i64, i64), String>;
    /// Calls `apply` with every record of `partition` from `from` to its end, in order
    /// (committed records only), and returns the offset after the last one read.
    fn replay(&self, partition: u32, from: i64, apply: &mut Apply<'_>) -> Result<i64, String>;
    /// A snapshot older than this may miss a delete whose tombstone compaction removed
    /// since: it is not used.
    fn max_snapshot_age_ms(&self) -> u64;
}

/// The value of a position marker.
pub(crate) fn encode_position(next: i64) -> [u8; 8] {
    next.to_be_bytes()
}

/// The next source offset in a position marker's value.
pub(crate) fn decode_position(value: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(value.try_into().ok()?))
}

/// An invocation's changes as changelog records, ending with the position marker
/// (`marker` is [`encode_position`] of the next source offset).
pub(crate) fn changelog_records<'a>(writes: &'a StateWrites, marker: &'a [u8]) -> Vec<Record<'a>> {
    let mut records: Vec<Record<'a>> = writes
        .iter()
        .map(|(key, value)| Record {
            key: Some(key),
            value,
            headers: &[],
            timestamp_ms: None,
        })
        .collect();
    records.push(Record {
        key: Some(&[]),
        value: Some(marker),
        headers: &[],
        timestamp_ms: None,
    });
    records
}

/// The changelog in the host's own log.
pub(crate) struct LogChangelog {
    pub log: Arc<Log>,
    pub topic: String,
    /// Read committed records only (exactly-once deployments write it in transactions).
    pub committed: bool,
}

impl LogChangelog {
    /// The changelog's `partition`; `None` if the topic does not exist (yet).
    fn partition(&self, partition: u32) -> Result<Option<Arc<rill_log::Partition>>, String> {
        let Some(topic) = self.log.topic(&self.topic) else {
            return Ok(None);
        };
        let p = topic
            .partition(partition)
            .ok_or_else(|| format!("changelog '{}' has no partition {partition}", self.topic))?;
        Ok(Some(p.clone()))
    }

    /// Where a replay stops: the end, or for a read_committed one the last stable offset.
    fn end(&self, p: &rill_log::Partition) -> i64 {
        if self.committed {
            p.last_stable_offset()
        } else {
            p.high_watermark()
        }
    }
}

/// Bytes read from the changelog per step of a replay.
const REPLAY_READ: usize = 4 << 20;

impl Changelog for LogChangelog {
    fn bounds(&self, partition: u32) -> Result<(i64, i64), String> {
        Ok(match self.partition(partition)? {
            Some(p) => (p.log_start_offset(), self.end(&p)),
            None => (0, 0),
        })
    }

    fn replay(&self, partition: u32, from: i64, apply: &mut Apply<'_>) -> Result<i64, String> {
        let Some(p) = self.partition(partition)? else {
            return Ok(from);
        };
        let end = self.end(&p);
        let mut at = from.max(p.log_start_offset());
        while at < end {
            let read = if self.committed {
                p.read_committed(at, REPLAY_READ)
            } else {
                p.read(at, REPLAY_READ)
            }
            .map_err(|e| format!("reading changelog {}/{partition} at {at}: {e}", self.topic))?;
            if read.next_offset <= at {
                break;
            }
            let aborted = if self.committed {
                p.aborted_transactions(at, read.next_offset)
            } else {
                Vec::new()
            };
            for batch in rill_log::batch::batches(&read.bytes) {
                let batch = batch
                    .map_err(|e| format!("changelog {}/{partition} at {at}: {e}", self.topic))?;
                if batch.is_control() || aborted.iter().any(|a| a.covers(&batch)) {
                    continue;
                }
                for rec in batch.records() {
                    let rec = rec.map_err(|e| {
                        format!("changelog {}/{partition} at {at}: {e}", self.topic)
                    })?;
                    if rec.offset < at || rec.offset >= end {
                        continue;
                    }
                    apply(rec.key.unwrap_or_default(), rec.value);
                }
            }
            at = read.next_offset.min(end);
        }
        Ok(at.max(from))
    }

    fn max_snapshot_age_ms(&self) -> u64 {
        self.log
            .topic(&self.topic)
            .map_or(u64::MAX, |t| t.config().delete_retention_ms / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_ends_the_records_and_round_trips() {
        let mut w = StateWrites::default();
        w.put(b"b", Some(b"2"));
        w.put(b"a", None);
        let marker = encode_position(42);
        let r = changelog_records(&w, &marker);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].key, Some(&b"a"[..]));
        assert_eq!(r[0].value, None);
        assert_eq!(r[2].key, Some(&b""[..]));
        assert_eq!(decode_position(r[2].value.unwrap()), Some(42));
    }
}
