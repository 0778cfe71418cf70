//! Turning stored batches into the admin API's JSON records.

use std::collections::BTreeMap;

use base64::Engine as _;

use rill_log::Topic;

use super::api::FetchedRecord;

/// A read that could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// The log refused the read.
    #[error("partition {partition}: {source}")]
    Read {
        /// The partition.
        partition: u32,
        /// Why.
        source: rill_log::ReadError,
    },
    /// A stored batch could not be decoded (compressed with an unknown codec, or corrupt).
    #[error("partition {partition} offset {offset}: {message}")]
    Decode {
        /// The partition.
        partition: u32,
        /// Where.
        offset: i64,
        /// Why.
        message: String,
    },
}

/// Reads up to `max` records across partitions from `positions`, advancing them.
/// Transaction markers are never records. `committed` reads as a read_committed Kafka
/// consumer does: below the last stable offset, aborted transactions skipped.
pub fn collect(
    topic: &Topic,
    positions: &mut BTreeMap<u32, i64>,
    max: usize,
    committed: bool,
) -> Result<Vec<FetchedRecord>, CollectError> {
    let mut out = Vec::new();
    for p in topic.partitions() {
        if out.len() >= max {
            break;
        }
        let id = p.id();
        let Some(pos) = positions.get_mut(&id) else {
            continue;
        };
        let end = if committed {
            p.last_stable_offset()
        } else {
            p.high_watermark()
        };
        // A compacted partition can hold runs of empty batches: read on until this
        // partition gives a record or its end.
        let before = out.len();
        while *pos < end && out.len() == before {
            let at = *pos;
            read_batches(p, pos, &mut out, max, committed)?;
            if *pos == at {
                break;
            }
        }
    }
    Ok(out)
}

/// One read of `p` from `*pos`: its records, up to `max` in `out`, with `*pos` moved past
/// every batch read whole (empty ones and markers included).
fn read_batches(
    p: &rill_log::Partition,
    pos: &mut i64,
    out: &mut Vec<FetchedRecord>,
    max: usize,
    committed: bool,
) -> Result<(), CollectError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let id = p.id();
    {
        let read = if committed {
            p.read_committed(*pos, 1 << 20)
        } else {
            p.read(*pos, 1 << 20)
        }
        .map_err(|source| CollectError::Read {
            partition: id,
            source,
        })?;
        let aborted = if committed {
            p.aborted_transactions(*pos, read.next_offset)
        } else {
            Vec::new()
        };
        let bytes =
            rill_kafka::decompress_batches(&read.bytes).map_err(|e| CollectError::Decode {
                partition: id,
                offset: *pos,
                message: e.to_string(),
            })?;
        'batches: for batch in rill_log::batch::batches(&bytes) {
            let batch = batch.map_err(|e| CollectError::Decode {
                partition: id,
                offset: *pos,
                message: e.to_string(),
            })?;
            if batch.is_control() || aborted.iter().any(|a| a.covers(&batch)) {
                if out.len() >= max {
                    break 'batches;
                }
                *pos = (*pos).max(batch.last_offset() + 1);
                continue;
            }
            for rec in batch.records() {
                let rec = rec.map_err(|e| CollectError::Decode {
                    partition: id,
                    offset: *pos,
                    message: e.to_string(),
                })?;
                if rec.offset < *pos {
                    continue;
                }
                if out.len() >= max {
                    break 'batches;
                }
                let (value, value_b64) = match rec.value {
                    None => (None, None),
                    Some(v) => match std::str::from_utf8(v) {
                        Ok(s) => (Some(s.to_owned()), None),
                        Err(_) => (None, Some(b64.encode(v))),
                    },
                };
                let headers = rec
                    .headers
                    .iter()
                    .map(|h| {
                        let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                        (h.key.to_owned(), v.unwrap_or_default())
                    })
                    .collect();
                out.push(FetchedRecord {
                    partition: id,
                    offset: rec.offset,
                    timestamp: rec.timestamp_ms,
                    key: rec.key.map(|k| String::from_utf8_lossy(k).into_owned()),
                    key_b64: rec
                        .key
                        .filter(|k| std::str::from_utf8(k).is_err())
                        .map(|k| b64.encode(k)),
                    value,
                    value_b64,
                    headers,
                });
                *pos = rec.offset + 1;
            }
            // Every record of the batch was taken (or it had none left, after compaction).
            *pos = (*pos).max(batch.last_offset() + 1);
        }
    }
    Ok(())
}
