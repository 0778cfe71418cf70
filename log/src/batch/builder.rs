//! Encoding records into a v2 batch.

use super::{CRC_START, HEADER_LEN, LOG_OVERHEAD, Record};

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn varlong_len(v: i64) -> usize {
    (64 - (zigzag(v) | 1).leading_zeros() as usize).div_ceil(7)
}

fn nullable_len(b: Option<&[u8]>) -> usize {
    b.map_or(1, |b| varlong_len(b.len() as i64) + b.len())
}

/// Bytes of a record after its length prefix.
fn body_len(r: &Record<'_>, ts_delta: i64, offset_delta: i64) -> usize {
    1 + varlong_len(ts_delta)
        + varlong_len(offset_delta)
        + nullable_len(r.key)
        + nullable_len(r.value)
        + varlong_len(r.headers.len() as i64)
        + r.headers
            .iter()
            .map(|h| nullable_len(Some(h.key.as_bytes())) + nullable_len(h.value))
            .sum::<usize>()
}

/// Writes into a slice sized in advance, so encoding a record is a run of plain stores
/// rather than a capacity check per byte.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl SliceWriter<'_> {
    fn varlong(&mut self, v: i64) {
        let mut z = zigzag(v);
        while z >= 0x80 {
            self.buf[self.pos] = (z as u8) | 0x80;
            self.pos += 1;
            z >>= 7;
        }
        self.buf[self.pos] = z as u8;
        self.pos += 1;
    }
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn nullable(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.varlong(-1),
            Some(b) => {
                self.varlong(b.len() as i64);
                self.bytes(b);
            }
        }
    }
}

/// Builds one uncompressed v2 batch (create-time timestamps, no producer id) into a buffer
/// the caller may reuse, so encoding allocates nothing once the buffer has grown.
#[derive(Debug)]
pub struct BatchBuilder<B: AsMut<Vec<u8>> = Vec<u8>> {
    buf: B,
    count: i32,
    first_ts: i64,
    max_ts: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::with_capacity(256)
    }
    /// An empty builder with room for `bytes` of batch.
    pub fn with_capacity(bytes: usize) -> Self {
        BatchBuilder::into_buffer(Vec::with_capacity(bytes.max(HEADER_LEN)))
    }
}

impl<B: AsMut<Vec<u8>>> BatchBuilder<B> {
    /// A builder writing into `buf`, which is cleared first.
    pub fn into_buffer(mut buf: B) -> Self {
        let v = buf.as_mut();
        v.clear();
        v.resize(HEADER_LEN, 0);
        BatchBuilder {
            buf,
            count: 0,
            first_ts: 0,
            max_ts: i64::MIN,
        }
    }
    /// Number of records pushed.
    pub fn len(&self) -> usize {
        self.count as usize
    }
    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Appends a record; `now_ms` stands in for a missing timestamp.
    pub fn push(&mut self, r: &Record<'_>, now_ms: i64) {
        self.push_all(std::slice::from_ref(r), now_ms);
    }

    /// Appends records. All are sized first so the buffer grows once and each record is a
    /// run of plain stores, which matters for small records, where per-record overhead
    /// rivals the cost of writing the bytes.
    pub fn push_all(&mut self, records: &[Record<'_>], now_ms: i64) {
        let Some(first) = records.first() else { return };
        if self.count == 0 {
            self.first_ts = first.timestamp_ms.unwrap_or(now_ms);
        }
        let (first_ts, count) = (self.first_ts, i64::from(self.count));
        let deltas = |i: usize, r: &Record<'_>| {
            (
                r.timestamp_ms.unwrap_or(now_ms).wrapping_sub(first_ts),
                count + i as i64,
            )
        };
        let mut total = 0;
        for (i, r) in records.iter().enumerate() {
            let (ts_delta, offset_delta) = deltas(i, r);
            let body = body_len(r, ts_delta, offset_delta);
            total += varlong_len(body as i64) + body;
        }
        let out = self.buf.as_mut();
        let start = out.len();
        out.resize(start + total, 0);
        let mut w = SliceWriter {
            buf: &mut out[start..],
            pos: 0,
        };
        for (i, r) in records.iter().enumerate() {
            let (ts_delta, offset_delta) = deltas(i, r);
            self.max_ts = self.max_ts.max(r.timestamp_ms.unwrap_or(now_ms));
            w.varlong(body_len(r, ts_delta, offset_delta) as i64);
            w.bytes(&[0]); // record attributes
            w.varlong(ts_delta);
            w.varlong(offset_delta);
            w.nullable(r.key);
            w.nullable(r.value);
            w.varlong(r.headers.len() as i64);
            for h in r.headers {
                w.nullable(Some(h.key.as_bytes()));
                w.nullable(h.value);
            }
        }
        debug_assert_eq!(w.pos, w.buf.len());
        self.count += records.len() as i32;
    }
    /// Writes the header (base offset 0) and CRC; returns the buffer holding the batch.
    pub fn finish(mut self) -> B {
        let (count, first_ts) = (self.count, self.first_ts);
        let max_ts = if count == 0 { first_ts } else { self.max_ts };
        let b = self.buf.as_mut();
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[..8].copy_from_slice(&0i64.to_be_bytes());
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
        b[16] = 2;
        b[21..23].copy_from_slice(&0i16.to_be_bytes());
        b[23..27].copy_from_slice(&(count - 1).max(0).to_be_bytes());
        b[27..35].copy_from_slice(&first_ts.to_be_bytes());
        b[35..43].copy_from_slice(&max_ts.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // producerId
        b[51..53].copy_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes()); // baseSequence
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        self.buf
    }
}

/// Encodes `records` as one batch with base offset 0.
pub fn encode(records: &[Record<'_>], now_ms: i64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(records, now_ms, &mut out);
    out
}

/// Encodes `records` as one batch with base offset 0 into `out` (cleared first).
pub fn encode_into(records: &[Record<'_>], now_ms: i64, out: &mut Vec<u8>) {
    let est: usize = records
        .iter()
        .map(|r| 24 + r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len))
        .sum();
    out.reserve(HEADER_LEN + est);
    let mut b = BatchBuilder::into_buffer(out);
    b.push_all(records, now_ms);
    b.finish();
}

/// Overwrites the `maxTimestamp` of the batch at the start of `buf` and recomputes its CRC,
/// which covers the header from the attributes on. The log calls it for a producer batch
/// whose header disagrees with its records (Kafka's LogValidator does the same); the Kafka
/// door, for a compressed one it decompressed to find the value.
///
/// # Panics
///
/// If `buf` is shorter than its batch header or than the batch its length field announces.
pub fn set_max_timestamp(buf: &mut [u8], max_timestamp: i64) {
    let end = LOG_OVERHEAD + i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    buf[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..end]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Overwrites the base offset of the batch at the start of `buf` (not covered by the CRC).
pub(crate) fn set_base_offset(buf: &mut [u8], base: i64) {
    buf[..8].copy_from_slice(&base.to_be_bytes());
}

/// The producer fields of a batch: who wrote it, in which epoch, its first sequence number,
/// and whether it belongs to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence number of the first record (-1 for none).
    pub base_sequence: i32,
    /// Sets the transactional attribute bit.
    pub transactional: bool,
}

/// Stamps the batch at the start of `buf` with `p` (producer id, epoch, base sequence and
/// the transactional bit) and recomputes its CRC.
///
/// # Panics
///
/// If `buf` is shorter than its batch header or than the batch its length field announces.
pub fn set_producer(buf: &mut [u8], p: ProducerFields) {
    let end = LOG_OVERHEAD + i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    let mut attrs = i16::from_be_bytes([buf[21], buf[22]]);
    if p.transactional {
        attrs |= super::ATTR_TRANSACTIONAL;
    } else {
        attrs &= !super::ATTR_TRANSACTIONAL;
    }
    buf[21..23].copy_from_slice(&attrs.to_be_bytes());
    buf[43..51].copy_from_slice(&p.producer_id.to_be_bytes());
    buf[51..53].copy_from_slice(&p.epoch.to_be_bytes());
    buf[53..57].copy_from_slice(&p.base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..end]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// A control batch ending a transaction, Kafka's format: one record whose key is
/// `version: i16 = 0, type: i16` (0 abort, 1 commit) and whose value is
/// `version: i16 = 0, coordinatorEpoch: i32`; attributes transactional and control.
pub fn encode_marker(
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    now_ms: i64,
) -> Vec<u8> {
    let key = [0u8, 0, 0, u8::from(commit)];
    let mut value = [0u8; 6];
    value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    let rec = Record {
        key: Some(&key),
        value: Some(&value),
        headers: &[],
        timestamp_ms: Some(now_ms),
    };
    let mut buf = encode(std::slice::from_ref(&rec), now_ms);
    let attrs = super::ATTR_TRANSACTIONAL | super::ATTR_CONTROL;
    buf[21..23].copy_from_slice(&attrs.to_be_bytes());
    set_producer(
        &mut buf,
        ProducerFields {
            producer_id,
            epoch,
            base_sequence: -1,
            transactional: true,
        },
    );
    buf
}
