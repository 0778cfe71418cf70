//! Kafka record batch v2: a borrowed view to validate and iterate, and a builder to write.
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset            i64 BE   (assigned by the log, not covered by the CRC)
//!      8     4  batchLength           i32 BE   (bytes after this field)
//!     12     4  partitionLeaderEpoch  i32 BE
//!     16     1  magic                 i8 = 2
//!     17     4  crc                   u32 BE   CRC-32C of bytes 21..end
//!     21     2  attributes            i16 BE   bits 0-2 codec, 3 timestamp type, 4 txn, 5 control
//!     23     4  lastOffsetDelta       i32 BE
//!     27     8  firstTimestamp        i64 BE
//!     35     8  maxTimestamp          i64 BE
//!     43     8  producerId            i64 BE
//!     51     2  producerEpoch         i16 BE
//!     53     4  baseSequence          i32 BE
//!     57     4  recordsCount          i32 BE
//!     61     …  records (varint-encoded, possibly compressed)
//! ```

use crate::error::BatchError;

mod builder;

pub(crate) use builder::set_base_offset;
pub use builder::{
    BatchBuilder, ProducerFields, encode, encode_into, encode_marker, set_max_timestamp,
    set_producer,
};

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset and batchLength themselves.
pub const LOG_OVERHEAD: usize = 12;
/// Byte offset where the CRC-covered part starts.
pub(crate) const CRC_START: usize = 21;
pub(crate) const TIMESTAMP_TYPE_LOG_APPEND: i16 = 1 << 3;
/// Attribute bit: the batch belongs to a transaction.
pub(crate) const ATTR_TRANSACTIONAL: i16 = 1 << 4;
/// Attribute bit: the batch is a control batch (a transaction marker).
pub(crate) const ATTR_CONTROL: i16 = 1 << 5;

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4.
    Lz4,
    /// zstd.
    Zstd,
    /// A codec id Kafka does not define (5-7).
    Unknown(u8),
}

impl Compression {
    fn from_attributes(attrs: i16) -> Self {
        match attrs & 0x7 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            // Masked to three bits, so it fits a u8.
            n => Compression::Unknown(n as u8),
        }
    }
}

/// One header of a record to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header key (UTF-8, as Kafka requires).
    pub key: &'a str,
    /// Header value; `None` is Kafka's null.
    pub value: Option<&'a [u8]>,
}

/// A record to append. Borrowed so producers can hand in slices of their own buffers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record<'a> {
    /// Key; `None` is null (and spreads round-robin when placed by key).
    pub key: Option<&'a [u8]>,
    /// Value; `None` is null (a tombstone for future compaction).
    pub value: Option<&'a [u8]>,
    /// Headers.
    pub headers: &'a [Header<'a>],
    /// Create time in ms since the epoch; `None` means now.
    pub timestamp_ms: Option<i64>,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads the total size (header included) of the batch starting at `buf`, from its first
/// 12 bytes. Used to walk segment files without reading whole batches.
pub fn batch_size(prefix: &[u8]) -> Result<usize, BatchError> {
    if prefix.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated {
            needed: LOG_OVERHEAD,
            available: prefix.len(),
        });
    }
    let len = be_i32(prefix, 8);
    // A batch can never be shorter than its header; reject before trusting the length.
    if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(len));
    }
    Ok(len as usize + LOG_OVERHEAD)
}

/// A zero-copy view of one v2 record batch.
#[derive(Debug, Clone, Copy)]
pub struct RecordBatch<'a> {
    buf: &'a [u8],
}

impl<'a> RecordBatch<'a> {
    /// Parses the batch at the start of `buf`; returns it and the bytes it spans.
    ///
    /// Checks the length and magic only; call [`crc_ok`](Self::crc_ok) or
    /// [`validate`](Self::validate) before trusting the contents.
    pub fn parse(buf: &'a [u8]) -> Result<(RecordBatch<'a>, usize), BatchError> {
        let size = batch_size(buf)?;
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let magic = buf[16] as i8;
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        if buf.len() < size {
            return Err(BatchError::Truncated {
                needed: size,
                available: buf.len(),
            });
        }
        Ok((RecordBatch { buf: &buf[..size] }, size))
    }

    /// Checks the CRC and the record count against lastOffsetDelta: a stored batch holds at
    /// most `lastOffsetDelta + 1` records. Compaction leaves fewer (it keeps a batch's
    /// offset range and drops records inside it, as Kafka's cleaner does) or none (a batch
    /// standing for records removed); a producer's batch must hold exactly that many, which
    /// [`validate_producer_batch`](Self::validate_producer_batch) checks.
    pub fn validate(&self) -> Result<(), BatchError> {
        let computed = self.computed_crc();
        if computed != self.crc() {
            return Err(BatchError::BadCrc {
                stored: self.crc(),
                computed,
            });
        }
        check_record_count(self.record_count(), self.last_offset_delta())
    }

    /// The batch bytes, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        be_i64(self.buf, 0)
    }
    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .wrapping_add(i64::from(self.last_offset_delta()))
    }
    /// lastOffsetDelta header field.
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(self.buf, 23)
    }
    /// recordsCount header field.
    pub fn record_count(&self) -> i32 {
        be_i32(self.buf, 57)
    }
    /// Timestamp of the first record.
    pub fn first_timestamp(&self) -> i64 {
        be_i64(self.buf, 27)
    }
    /// Largest timestamp in the batch.
    pub fn max_timestamp(&self) -> i64 {
        be_i64(self.buf, 35)
    }
    /// Attributes header field.
    pub fn attributes(&self) -> i16 {
        be_i16(self.buf, 21)
    }
    /// Compression codec.
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes())
    }
    /// Producer id (-1 when not idempotent).
    pub fn producer_id(&self) -> i64 {
        be_i64(self.buf, 43)
    }
    /// Producer epoch (-1 when not idempotent).
    pub fn producer_epoch(&self) -> i16 {
        be_i16(self.buf, 51)
    }
    /// Sequence number of the first record (-1 when not idempotent).
    pub fn base_sequence(&self) -> i32 {
        be_i32(self.buf, 53)
    }
    /// Whether the batch belongs to a transaction (attributes bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }
    /// Whether the batch is a control batch, a transaction marker (attributes bit 5): its
    /// record is not user data.
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }
    /// The stored CRC.
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes([self.buf[17], self.buf[18], self.buf[19], self.buf[20]])
    }
    fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.buf[CRC_START..])
    }
    /// Whether the stored CRC matches the bytes.
    pub fn crc_ok(&self) -> bool {
        self.computed_crc() == self.crc()
    }

    /// Iterates the records of an uncompressed batch. A compressed batch yields one
    /// [`BatchError::Compressed`]. Iteration stops after the first error.
    pub fn records(&self) -> Records<'a> {
        let compression = self.compression();
        Records {
            rest: &self.buf[HEADER_LEN..],
            remaining: self.record_count().max(0),
            base_offset: self.base_offset(),
            first_ts: self.first_timestamp(),
            log_append_ts: (self.attributes() & TIMESTAMP_TYPE_LOG_APPEND != 0)
                .then(|| self.max_timestamp()),
            error: (compression != Compression::None)
                .then_some(BatchError::Compressed(compression)),
            done: false,
        }
    }
}

impl<'a> RecordBatch<'a> {
    /// The records of an uncompressed batch, each with the bytes it occupies in the batch
    /// (its length varint included). Those bytes stay valid in a batch with the same base
    /// offset and firstTimestamp, which is how compaction rewrites a batch without some of
    /// its records.
    pub(crate) fn records_with_bytes(
        &self,
    ) -> impl Iterator<Item = Result<(BatchRecord<'a>, &'a [u8]), BatchError>> + 'a {
        let mut it = self.records();
        std::iter::from_fn(move || {
            let before = it.rest;
            let r = it.next()?;
            Some(r.map(|rec| {
                let used = before.len() - it.rest.len();
                (rec, &before[..used])
            }))
        })
    }
}

/// Compressed batches are not decompressed, so their recordsCount cannot be checked against
/// the records; it is only bounded by this many records per byte of compressed data, far
/// above what any codec achieves on real records (each takes at least 7 bytes uncompressed)
/// yet small enough that a tiny batch cannot claim billions of offsets.
pub const MAX_RECORDS_PER_COMPRESSED_BYTE: i64 = 1024;

impl RecordBatch<'_> {
    /// Everything the log checks before accepting a producer's batch: [`validate`]
    /// (CRC, record count), a codec Kafka defines, and:
    ///
    /// - uncompressed: every record parses and their offset deltas run 0, 1, 2, …;
    /// - compressed: `firstTimestamp <= maxTimestamp` and at most
    ///   [`MAX_RECORDS_PER_COMPRESSED_BYTE`] records per byte of data.
    ///
    /// For an uncompressed create-time batch it returns the largest record timestamp, which
    /// the caller stores as `maxTimestamp` (with [`set_max_timestamp`]) when the header says
    /// otherwise, as Kafka's LogValidator does: some producers write -1 there. A compressed
    /// batch is not decompressed here (`None`); its header must already be consistent.
    ///
    /// [`validate`]: Self::validate
    /// [`set_max_timestamp`]: crate::batch::set_max_timestamp
    pub fn validate_producer_batch(&self) -> Result<Option<i64>, BatchError> {
        self.validate()?;
        let (count, delta) = (self.record_count(), self.last_offset_delta());
        if count < 1 || delta != count - 1 {
            return Err(BatchError::BadRecordCount {
                count,
                last_offset_delta: delta,
            });
        }
        let compression = self.compression();
        if let Compression::Unknown(_) = compression {
            return Err(BatchError::BadRecord("unknown compression codec"));
        }
        let count = i64::from(self.record_count());
        if compression != Compression::None {
            if self.first_timestamp() > self.max_timestamp() {
                return Err(BatchError::BadRecord("firstTimestamp after maxTimestamp"));
            }
            let data = (self.buf.len() - HEADER_LEN) as i64;
            if count > data.max(1).saturating_mul(MAX_RECORDS_PER_COMPRESSED_BYTE) {
                return Err(BatchError::TooManyRecords { records: count });
            }
            return Ok(None);
        }
        let log_append_time = self.attributes() & TIMESTAMP_TYPE_LOG_APPEND != 0;
        let mut max_ts: Option<i64> = None;
        for (i, r) in self.records().enumerate() {
            let r = r?;
            if r.offset != self.base_offset().wrapping_add(i as i64) {
                return Err(BatchError::BadRecord(
                    "record offset deltas do not run 0, 1, 2, ...",
                ));
            }
            max_ts = Some(max_ts.map_or(r.timestamp_ms, |m| m.max(r.timestamp_ms)));
        }
        // A log-append-time batch's records all take maxTimestamp, so there is nothing to
        // compute.
        Ok(max_ts.filter(|_| !log_append_time))
    }
}

/// The record count a stored batch may have: `0..=lastOffsetDelta + 1` (see
/// [`RecordBatch::validate`]).
pub(crate) fn check_record_count(count: i32, last_offset_delta: i32) -> Result<(), BatchError> {
    if count < 0 || last_offset_delta < 0 || i64::from(count) > i64::from(last_offset_delta) + 1 {
        return Err(BatchError::BadRecordCount {
            count,
            last_offset_delta,
        });
    }
    Ok(())
}

/// Walks concatenated batches; stops after the first error.
pub fn batches(buf: &[u8]) -> Batches<'_> {
    Batches {
        rest: buf,
        failed: false,
    }
}

/// Iterator returned by [`batches`].
#[derive(Debug)]
pub struct Batches<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<RecordBatch<'a>, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match RecordBatch::parse(self.rest) {
            Ok((b, n)) => {
                self.rest = &self.rest[n..];
                Some(Ok(b))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One record inside a batch, borrowed from the batch bytes.
#[derive(Debug, Clone, Copy)]
pub struct BatchRecord<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Timestamp in ms.
    pub timestamp_ms: i64,
    /// Key, `None` when null.
    pub key: Option<&'a [u8]>,
    /// Value, `None` when null.
    pub value: Option<&'a [u8]>,
    /// Headers (already validated).
    pub headers: RecordHeaders<'a>,
}

/// The headers of a [`BatchRecord`], validated while the record was parsed.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeaders<'a> {
    raw: &'a [u8],
    count: usize,
}

impl<'a> RecordHeaders<'a> {
    /// Number of headers.
    pub fn len(&self) -> usize {
        self.count
    }
    /// Whether there is no header.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Iterates the headers.
    pub fn iter(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        let mut cur = Cursor { buf: self.raw };
        // The bytes were validated by `parse_headers`, so a failure here cannot happen; it
        // would end the iteration rather than panic.
        (0..self.count).map_while(move |_| cur.header().ok())
    }
}

/// Iterator returned by [`RecordBatch::records`].
#[derive(Debug)]
pub struct Records<'a> {
    rest: &'a [u8],
    remaining: i32,
    base_offset: i64,
    first_ts: i64,
    log_append_ts: Option<i64>,
    error: Option<BatchError>,
    done: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<BatchRecord<'a>, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.error.take() {
            self.done = true;
            return Some(Err(e));
        }
        if self.remaining == 0 {
            self.done = true;
            if !self.rest.is_empty() {
                return Some(Err(BatchError::BadRecord("bytes after the last record")));
            }
            return None;
        }
        self.remaining -= 1;
        let r = self.parse_one();
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

impl<'a> Records<'a> {
    fn parse_one(&mut self) -> Result<BatchRecord<'a>, BatchError> {
        let mut outer = Cursor { buf: self.rest };
        let len = outer.varint()?;
        let len = usize::try_from(len).map_err(|_| BatchError::BadRecord("negative length"))?;
        let body = outer.take(len)?;
        self.rest = outer.buf;
        let mut c = Cursor { buf: body };
        c.take(1)?; // record attributes, unused in v2
        let ts_delta = c.varlong()?;
        let offset_delta = c.varint()?;
        let key = c.nullable_bytes()?;
        let value = c.nullable_bytes()?;
        let headers = c.headers()?;
        if !c.buf.is_empty() {
            return Err(BatchError::BadRecord("bytes after the record's headers"));
        }
        Ok(BatchRecord {
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp_ms: self
                .log_append_ts
                .unwrap_or(self.first_ts.wrapping_add(ts_delta)),
            key,
            value,
            headers,
        })
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if self.buf.len() < n {
            return Err(BatchError::Truncated {
                needed: n,
                available: self.buf.len(),
            });
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .first()
                .ok_or(BatchError::BadRecord("truncated varint"))?;
            self.buf = &self.buf[1..];
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                // Zigzag decoding.
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err(BatchError::BadRecord("varint too long"))
    }
    fn varint(&mut self) -> Result<i32, BatchError> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| BatchError::BadRecord("varint out of i32 range"))
    }
    fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, BatchError> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }
    fn header(&mut self) -> Result<Header<'a>, BatchError> {
        let klen = self.varint()?;
        let klen = usize::try_from(klen).map_err(|_| BatchError::BadRecord("null header key"))?;
        let key = std::str::from_utf8(self.take(klen)?)
            .map_err(|_| BatchError::BadRecord("header key is not UTF-8"))?;
        let value = self.nullable_bytes()?;
        Ok(Header { key, value })
    }
    fn headers(&mut self) -> Result<RecordHeaders<'a>, BatchError> {
        let n = self.varint()?;
        let count =
            usize::try_from(n).map_err(|_| BatchError::BadRecord("negative header count"))?;
        let start = self.buf;
        for _ in 0..count {
            self.header()?;
        }
        let used = start.len() - self.buf.len();
        Ok(RecordHeaders {
            raw: &start[..used],
            count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = [
            Header {
                key: "k",
                value: Some(b"v"),
            },
            Header {
                key: "n",
                value: None,
            },
        ];
        let recs = [
            Record {
                key: Some(b"a"),
                value: Some(b"1"),
                headers: &h,
                timestamp_ms: Some(10),
            },
            Record {
                key: None,
                value: None,
                headers: &[],
                timestamp_ms: Some(5),
            },
            Record {
                key: Some(b""),
                value: Some(&[7; 300]),
                headers: &[],
                timestamp_ms: None,
            },
        ];
        let mut buf = encode(&recs, 99);
        set_base_offset(&mut buf, 40);
        let (b, n) = RecordBatch::parse(&buf).unwrap();
        assert_eq!(n, buf.len());
        b.validate().unwrap();
        assert_eq!(
            (b.base_offset(), b.last_offset(), b.record_count()),
            (40, 42, 3)
        );
        assert_eq!((b.first_timestamp(), b.max_timestamp()), (10, 99));
        let out: Vec<_> = b.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].key, Some(&b"a"[..]));
        assert_eq!(out[0].headers.iter().collect::<Vec<_>>(), h.to_vec());
        assert_eq!(
            (out[1].offset, out[1].timestamp_ms, out[1].key, out[1].value),
            (41, 5, None, None)
        );
        assert_eq!(out[2].value.unwrap().len(), 300);
        assert_eq!(out[2].timestamp_ms, 99);
    }

    #[test]
    fn rejects_garbage() {
        let buf = encode(
            &[Record {
                value: Some(b"x"),
                ..Record::default()
            }],
            1,
        );
        for cut in 0..buf.len() {
            assert!(RecordBatch::parse(&buf[..cut]).is_err());
        }
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            RecordBatch::parse(&bad).unwrap().0.validate(),
            Err(BatchError::BadCrc { .. })
        ));
    }
}
