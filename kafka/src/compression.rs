//! Rewriting compressed record batches as uncompressed ones, for consumers that walk records
//! in place (the host's Wasm guests).
//!
//! Only the records section of a batch is compressed; the 61-byte header is not. So the
//! uncompressed equivalent is the same header with the codec bits cleared, a new
//! batchLength, the decompressed records and a fresh CRC-32C: offsets, timestamps,
//! producer fields, keys, values and headers are exactly those the producer sent.

use std::borrow::Cow;
use std::io::Read;

use rill_log::{Compression, RecordBatch};

use crate::error::DecompressError;

/// The largest a single batch may decompress to with [`decompress_batches`]: a guard against
/// decompression bombs, well above the log's default 64 MiB batch limit.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 256 << 20;

const HEADER_LEN: usize = rill_log::batch::HEADER_LEN;
/// Bytes before the batchLength count starts: baseOffset and batchLength.
const LOG_OVERHEAD: usize = 12;
const ATTRIBUTES: usize = 21;
const CRC: usize = 17;

/// Rewrites every compressed v2 batch in `bytes` into the equivalent uncompressed batch.
///
/// Uncompressed batches are copied as they are; if no batch is compressed, `bytes` is
/// returned borrowed without any copy. Each batch may decompress to at most
/// [`DEFAULT_MAX_DECOMPRESSED`] bytes; see [`decompress_batches_with_limit`].
///
/// ```
/// # fn f(stored: &[u8]) -> Result<(), rill_kafka::DecompressError> {
/// let plain = rill_kafka::decompress_batches(stored)?;
/// for batch in rill_log::batches(&plain) {
///     for record in batch?.records() {
///         let _value = record?.value;
///     }
/// }
/// # Ok(()) }
/// ```
pub fn decompress_batches(bytes: &[u8]) -> Result<Cow<'_, [u8]>, DecompressError> {
    decompress_batches_with_limit(bytes, DEFAULT_MAX_DECOMPRESSED)
}

/// [`decompress_batches`] with an explicit per-batch limit on decompressed size.
pub fn decompress_batches_with_limit(
    bytes: &[u8],
    limit: usize,
) -> Result<Cow<'_, [u8]>, DecompressError> {
    // First pass: only look at headers, so the common all-uncompressed case costs nothing.
    let mut any = false;
    for b in rill_log::batches(bytes) {
        if b?.compression() != Compression::None {
            any = true;
            break;
        }
    }
    if !any {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    for b in rill_log::batches(bytes) {
        let b = b?;
        let raw = b.as_bytes();
        match b.compression() {
            Compression::None => out.extend_from_slice(raw),
            c => rewrite(&b, c, limit, &mut out)?,
        }
    }
    Ok(Cow::Owned(out))
}

fn rewrite(
    b: &RecordBatch<'_>,
    codec: Compression,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecompressError> {
    let raw = b.as_bytes();
    let payload = raw.get(HEADER_LEN..).unwrap_or_default();
    let records = decompress(codec, payload, limit)?;
    let start = out.len();
    out.extend_from_slice(&raw[..HEADER_LEN]);
    out.extend_from_slice(&records);
    let batch_len = i32::try_from(out.len() - start - LOG_OVERHEAD)
        .map_err(|_| DecompressError::TooLarge { limit })?;
    out[start + 8..start + 12].copy_from_slice(&batch_len.to_be_bytes());
    let attrs = i16::from_be_bytes([raw[ATTRIBUTES], raw[ATTRIBUTES + 1]]) & !0x7;
    out[start + ATTRIBUTES..start + ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + ATTRIBUTES..]);
    out[start + CRC..start + CRC + 4].copy_from_slice(&crc.to_be_bytes());
    // Prove the result is a well-formed batch whose records parse, so a bad payload is
    // reported here rather than by whoever walks the records later.
    let (nb, _) = RecordBatch::parse(&out[start..])?;
    nb.validate()?;
    for r in nb.records() {
        r?;
    }
    Ok(())
}

/// The records of the single batch `raw` as (offset, timestamp), decompressing it if needed.
fn record_times(raw: &[u8]) -> Result<Vec<(i64, i64)>, DecompressError> {
    let plain = decompress_batches(raw)?;
    let mut out = Vec::new();
    for b in rill_log::batches(&plain) {
        for r in b?.records() {
            let r = r?;
            out.push((r.offset, r.timestamp_ms));
        }
    }
    Ok(out)
}

/// Gives each compressed create-time batch in `buf` whose header is inconsistent
/// (`maxTimestamp < firstTimestamp`, such as the -1 some producers write) the largest
/// timestamp of its records, with a fresh CRC. Kafka's LogValidator decompresses every
/// compressed batch and rewrites maxTimestamp; we decompress only these, so well-formed
/// compressed batches are still stored without being decompressed. (The log itself
/// recomputes maxTimestamp for uncompressed batches.) A batch that does not parse or
/// decompress is left alone for the log to refuse.
pub(crate) fn fix_compressed_max_timestamps(buf: &mut [u8]) {
    const LOG_APPEND_TIME: i16 = 1 << 3;
    let mut at = 0;
    while at < buf.len() {
        let Ok((b, size)) = RecordBatch::parse(&buf[at..]) else {
            return;
        };
        let broken = b.compression() != Compression::None
            && b.attributes() & LOG_APPEND_TIME == 0
            && b.max_timestamp() < b.first_timestamp()
            && b.crc_ok();
        let max = broken
            .then(|| record_times(b.as_bytes()).ok())
            .flatten()
            .and_then(|rs| rs.into_iter().map(|(_, ts)| ts).max());
        if let Some(max) = max {
            rill_log::batch::set_max_timestamp(&mut buf[at..], max);
        }
        at += size;
    }
}

/// For a timestamp lookup that landed on `hit` = (offset, timestamp) in a compressed batch
/// (where the log answers the batch's base offset), the exact first record at or after
/// `ts_ms`, as Kafka answers by decompressing. `batch` holds the batch at `hit`'s offset;
/// anything else, or a failure to decompress, keeps `hit`.
pub(crate) fn exact_timestamp_hit(batch: &[u8], hit: (i64, i64), ts_ms: i64) -> (i64, i64) {
    let Ok((b, size)) = RecordBatch::parse(batch) else {
        return hit;
    };
    if b.compression() == Compression::None || b.base_offset() != hit.0 {
        return hit;
    }
    record_times(&batch[..size])
        .ok()
        .and_then(|rs| rs.into_iter().find(|&(_, ts)| ts >= ts_ms))
        .unwrap_or(hit)
}

/// Reads `r` to the end, failing if it yields more than `limit` bytes.
fn read_limited(
    r: impl Read,
    limit: usize,
    codec: &'static str,
) -> Result<Vec<u8>, DecompressError> {
    let mut v = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut v)
        .map_err(|e| DecompressError::Codec {
            codec,
            reason: e.to_string(),
        })?;
    if v.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(v)
}

/// Kafka's snappy framing (from the Java client's xerial library): a 16-byte magic header,
/// then blocks of big-endian u32 length + raw snappy. Producers may also send raw snappy.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

fn snappy(payload: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let err = |e: String| DecompressError::Codec {
        codec: "snappy",
        reason: e,
    };
    let raw_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), DecompressError> {
        let n = snap::raw::decompress_len(block).map_err(|e| err(e.to_string()))?;
        if out.len() + n > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        let at = out.len();
        out.resize(at + n, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[at..])
            .map_err(|e| err(e.to_string()))?;
        Ok(())
    };
    let mut out = Vec::new();
    if !payload.starts_with(XERIAL_MAGIC) {
        raw_block(payload, &mut out)?;
        return Ok(out);
    }
    let mut rest = payload
        .get(16..)
        .ok_or_else(|| err("truncated xerial header".into()))?;
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .ok_or_else(|| err("truncated block length".into()))?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let block = rest
            .get(4..4 + len)
            .ok_or_else(|| err("truncated block".into()))?;
        raw_block(block, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

fn decompress(
    codec: Compression,
    payload: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    match codec {
        Compression::None => Ok(payload.to_vec()),
        Compression::Gzip => read_limited(flate2::read::GzDecoder::new(payload), limit, "gzip"),
        // Kafka's lz4 is the LZ4 frame format.
        Compression::Lz4 => {
            let d = lz4::Decoder::new(payload).map_err(|e| DecompressError::Codec {
                codec: "lz4",
                reason: e.to_string(),
            })?;
            read_limited(d, limit, "lz4")
        }
        Compression::Zstd => {
            let d =
                zstd::stream::read::Decoder::new(payload).map_err(|e| DecompressError::Codec {
                    codec: "zstd",
                    reason: e.to_string(),
                })?;
            read_limited(d, limit, "zstd")
        }
        Compression::Snappy => snappy(payload, limit),
        Compression::Unknown(n) => Err(DecompressError::UnknownCodec(n)),
        #[allow(unreachable_patterns)]
        _ => Err(DecompressError::UnknownCodec(7)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression as KCompression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn records() -> Vec<Record> {
        (0..50)
            .map(|i| {
                let mut headers = IndexMap::new();
                headers.insert(
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from(format!("hv{i}"))),
                );
                Record {
                    transactional: false,
                    control: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: -1,
                    timestamp: 1_700_000_000_000 + i,
                    key: Some(Bytes::from(format!("key-{i}"))),
                    value: if i % 7 == 0 {
                        None
                    } else {
                        Some(Bytes::from(format!("value {i} ").repeat(5)))
                    },
                    headers,
                    delete_horizon: false,
                }
            })
            .collect()
    }

    fn encode(c: KCompression) -> Vec<u8> {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records(),
            &RecordEncodeOptions {
                version: 2,
                compression: c,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    /// offset, timestamp, key, value, header count.
    type Flat = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>, usize);

    fn flatten(bytes: &[u8]) -> Vec<Flat> {
        let mut v = Vec::new();
        for b in rill_log::batches(bytes) {
            let b = b.unwrap();
            assert!(b.crc_ok());
            for r in b.records() {
                let r = r.unwrap();
                v.push((
                    r.offset,
                    r.timestamp_ms,
                    r.key.map(<[u8]>::to_vec),
                    r.value.map(<[u8]>::to_vec),
                    r.headers.len(),
                ));
            }
        }
        v
    }

    #[test]
    fn every_codec_round_trips_to_the_same_records() {
        let plain = encode(KCompression::None);
        let expected = flatten(&plain);
        assert_eq!(expected.len(), 50);
        for c in [
            KCompression::Gzip,
            KCompression::Snappy,
            KCompression::Lz4,
            KCompression::Zstd,
        ] {
            let mut both = encode(c);
            both.extend_from_slice(&plain);
            let out = decompress_batches(&both).unwrap();
            assert!(matches!(out, Cow::Owned(_)));
            let got = flatten(&out);
            assert_eq!(&got[..50], &expected[..], "{c:?}");
            assert_eq!(&got[50..], &expected[..], "{c:?}");
        }
    }

    #[test]
    fn uncompressed_input_is_borrowed() {
        let plain = encode(KCompression::None);
        assert!(matches!(
            decompress_batches(&plain).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn limit_and_garbage_are_errors_not_panics() {
        let gz = encode(KCompression::Gzip);
        assert!(matches!(
            decompress_batches_with_limit(&gz, 10),
            Err(DecompressError::TooLarge { .. })
        ));
        // Corrupt the compressed payload and fix the CRC so only the codec can notice.
        for c in [
            KCompression::Gzip,
            KCompression::Snappy,
            KCompression::Lz4,
            KCompression::Zstd,
        ] {
            let mut b = encode(c);
            for x in &mut b[HEADER_LEN + 2..] {
                *x ^= 0x5a;
            }
            let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
            b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
            assert!(decompress_batches(&b).is_err(), "{c:?}");
        }
        assert!(decompress_batches(&[1, 2, 3]).is_err());
    }
}
