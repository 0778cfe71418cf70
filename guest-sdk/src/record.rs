//! Zero-copy views over the Kafka record batches (v2) the host copied into guest memory.
//!
//! Nothing here allocates: a [`Record`] borrows its key, value and headers from the input
//! buffer, and walking a batch only decodes varints. The layout is Kafka's; see
//! `docs/abi.md` for the parts the SDK relies on.

use serde::de::DeserializeOwned;

use crate::Result;

/// Size of a v2 batch header, up to and including `recordsCount`.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: `baseOffset` (8) and `batchLength` (4).
const LOG_OVERHEAD: usize = 12;
/// Attributes bit 3: timestamps are the broker's append time (`maxTimestamp`).
const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
/// Attributes bit 5: a transaction marker, never shown to handlers.
const ATTR_CONTROL: i16 = 1 << 5;

/// The input did not parse as record batches v2. The host validated the batches (CRC
/// included) before copying them, so this means a host bug or a hostile host, and the SDK
/// traps rather than guessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedBatch(pub &'static str);

/// The result of decoding part of a batch.
pub type Parse<T> = std::result::Result<T, MalformedBatch>;

impl std::fmt::Display for MalformedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed record batch: {}", self.0)
    }
}

impl std::error::Error for MalformedBatch {}

/// A cursor over bytes, decoding Kafka's big-endian integers and zigzag varints.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(MalformedBatch("length overflow"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(MalformedBatch("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Parse<u8> {
        Ok(self.take(1)?[0])
    }

    /// A zigzag varint. Inlined, with one- and two-byte values decoded without a loop: in a
    /// batch, attributes, small deltas and short lengths take one byte, and record and value
    /// lengths of 64 to 8,191 bytes and offset deltas up to 8,191 take two. In Wasm a call
    /// and every loop back-edge also pay the host's epoch check, and this function runs
    /// seven times per record.
    #[inline(always)]
    fn varlong(&mut self) -> Parse<i64> {
        let raw = match self.buf.get(self.pos..) {
            Some([b0, ..]) if *b0 < 0x80 => {
                self.pos += 1;
                u64::from(*b0)
            }
            Some([b0, b1, ..]) if *b1 < 0x80 => {
                self.pos += 2;
                u64::from(*b0 & 0x7f) | (u64::from(*b1) << 7)
            }
            _ => return self.varlong_long(),
        };
        // Zigzag: 0, -1, 1, -2, ... ↔ 0, 1, 2, 3, ...
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// [`Cursor::varlong`] for three bytes or more, or malformed input.
    #[cold]
    #[inline(never)]
    fn varlong_long(&mut self) -> Parse<i64> {
        let mut raw: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(MalformedBatch("varint too long"));
            }
        }
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// A varint length followed by that many bytes; -1 is Kafka's null.
    #[inline(always)]
    fn nullable(&mut self) -> Parse<Option<&'a [u8]>> {
        match self.varlong()? {
            -1 => Ok(None),
            n if n < 0 => Err(MalformedBatch("negative length")),
            n => Ok(Some(self.take(n as usize)?)),
        }
    }
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

/// One Kafka record batch (v2): its header fields and a way to walk its records.
#[derive(Debug, Clone, Copy)]
pub struct RecordBatch<'a> {
    bytes: &'a [u8],
    partition: u32,
}

impl<'a> RecordBatch<'a> {
    /// Parses the batch at the start of `buf`; returns it and its total size in bytes.
    pub fn parse(buf: &'a [u8], partition: u32) -> Parse<(RecordBatch<'a>, usize)> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(MalformedBatch("truncated header"));
        }
        let len = be_i32(buf, 8);
        let total = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .filter(|&t| t >= BATCH_HEADER_LEN && t <= buf.len())
            .ok_or(MalformedBatch("bad batch length"))?;
        if buf[16] != 2 {
            return Err(MalformedBatch("magic is not 2"));
        }
        let batch = RecordBatch {
            bytes: &buf[..total],
            partition,
        };
        if batch.attributes() & 0x7 != 0 {
            return Err(MalformedBatch(
                "compressed batch (the host must decompress)",
            ));
        }
        Ok((batch, total))
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        be_i64(self.bytes, 0)
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(be_i32(self.bytes, 23))
    }

    /// Raw attributes (codec, timestamp type, transactional, control bits).
    pub fn attributes(&self) -> i16 {
        i16::from_be_bytes([self.bytes[21], self.bytes[22]])
    }

    /// Timestamp of the first record, ms since the epoch.
    pub fn first_timestamp(&self) -> i64 {
        be_i64(self.bytes, 27)
    }

    /// Largest timestamp in the batch, ms since the epoch.
    pub fn max_timestamp(&self) -> i64 {
        be_i64(self.bytes, 35)
    }

    /// Number of records the header announces.
    pub fn record_count(&self) -> i32 {
        be_i32(self.bytes, 57)
    }

    /// Whether this is a transaction marker (its records are not user data).
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }

    /// The partition the batch was read from.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The records, in offset order.
    pub fn records(&self) -> RecordIter<'a> {
        RecordIter {
            cur: Cursor {
                buf: self.bytes,
                pos: BATCH_HEADER_LEN,
            },
            left: self.record_count().max(0) as u32,
            base_offset: self.base_offset(),
            first_ts: self.first_timestamp(),
            append_time: (self.attributes() & ATTR_LOG_APPEND_TIME != 0)
                .then(|| self.max_timestamp()),
            partition: self.partition,
        }
    }
}

/// Iterator over the records of one batch. Yields an error (then stops) on malformed bytes.
#[derive(Clone)]
pub struct RecordIter<'a> {
    cur: Cursor<'a>,
    left: u32,
    base_offset: i64,
    first_ts: i64,
    append_time: Option<i64>,
    partition: u32,
}

impl std::fmt::Debug for RecordIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordIter")
            .field("left", &self.left)
            .finish()
    }
}

impl<'a> RecordIter<'a> {
    #[inline(always)]
    fn next_record(&mut self) -> Parse<Record<'a>> {
        let len = self.cur.varlong()?;
        if len < 0 {
            return Err(MalformedBatch("negative record length"));
        }
        let body = self.cur.take(len as usize)?;
        let mut c = Cursor { buf: body, pos: 0 };
        let _attributes = c.u8()?;
        let ts_delta = c.varlong()?;
        let offset_delta = c.varlong()?;
        let key = c.nullable()?;
        let value = c.nullable()?;
        let count = c.varlong()?;
        if count < 0 {
            return Err(MalformedBatch("negative header count"));
        }
        let headers_start = c.pos;
        // Walk the headers once to find where they end and to validate them, so that
        // iterating them later cannot fail.
        for _ in 0..count {
            c.nullable()?.ok_or(MalformedBatch("null header key"))?;
            c.nullable()?;
        }
        Ok(Record {
            offset: self.base_offset.wrapping_add(offset_delta),
            timestamp: self
                .append_time
                .unwrap_or(self.first_ts.wrapping_add(ts_delta)),
            partition: self.partition,
            key,
            value,
            headers: Headers {
                raw: &body[headers_start..c.pos],
                count: count as u32,
            },
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Parse<Record<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = self.next_record();
        if r.is_err() {
            self.left = 0;
        }
        Some(r)
    }
}

/// Iterator over the batches in a buffer of concatenated batches.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    rest: &'a [u8],
    partition: u32,
}

impl<'a> BatchIter<'a> {
    /// Walks the concatenated batches in `buf`.
    pub fn new(buf: &'a [u8], partition: u32) -> Self {
        BatchIter {
            rest: buf,
            partition,
        }
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Parse<RecordBatch<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match RecordBatch::parse(self.rest, self.partition) {
            Ok((b, n)) => {
                self.rest = &self.rest[n..];
                Some(Ok(b))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// One record, borrowed from the input batch.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    offset: i64,
    timestamp: i64,
    partition: u32,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Headers<'a>,
}

impl<'a> Record<'a> {
    /// The record's offset in its partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's timestamp, ms since the Unix epoch (create time, or the log's append
    /// time if the topic uses it).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The partition the record was read from.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The key; `None` is Kafka's null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The key as UTF-8, if it is present and valid.
    pub fn key_str(&self) -> Option<&'a str> {
        self.key.and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value; `None` is Kafka's null (a tombstone).
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The value, with a null value read as empty.
    pub fn value_bytes(&self) -> &'a [u8] {
        self.value.unwrap_or(&[])
    }

    /// The value as UTF-8 text.
    pub fn value_str(&self) -> Result<&'a str> {
        Ok(std::str::from_utf8(self.value_bytes())?)
    }

    /// Deserializes the value as JSON. A null value is an error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        let v = self
            .value
            .ok_or_else(|| crate::Error::msg("record value is null"))?;
        Ok(serde_json::from_slice(v)?)
    }

    /// The headers.
    pub fn headers(&self) -> Headers<'a> {
        self.headers
    }

    /// The value of the first header named `key` (`Some(None)` for a null value).
    pub fn header(&self, key: &str) -> Option<Option<&'a [u8]>> {
        self.headers.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// A record's headers, decoded lazily from the batch bytes.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    raw: &'a [u8],
    count: u32,
}

impl<'a> Headers<'a> {
    /// Number of headers.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `(key, value)` pairs in order. A key that is not UTF-8 reads as `""`.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let mut c = Cursor {
            buf: self.raw,
            pos: 0,
        };
        // Validated when the record was read, so these cannot fail.
        (0..self.count).map_while(move |_| {
            let k = c.nullable().ok()??;
            let v = c.nullable().ok()?;
            Some((std::str::from_utf8(k).unwrap_or(""), v))
        })
    }
}

/// Everything one invocation hands a batch handler: the records in range of the
/// concatenated batches the host copied in.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    buf: &'a [u8],
    partition: u32,
    start: i64,
    end: i64,
}

impl<'a> Batch<'a> {
    /// A view of the batches in `buf` restricted to offsets in `[start, end)`.
    pub fn new(buf: &'a [u8], partition: u32, start: i64, end: i64) -> Self {
        Batch {
            buf,
            partition,
            start,
            end,
        }
    }

    /// The partition the records were read from.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The raw bytes: concatenated record batches v2, uncompressed.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The Kafka batches themselves, unfiltered (control batches included).
    pub fn batches(&self) -> BatchIter<'a> {
        BatchIter::new(self.buf, self.partition)
    }

    /// Offset of the first record in range, if any.
    pub fn first_offset(&self) -> Option<i64> {
        self.walk(false).next().map(|r| r.offset())
    }

    /// The records in range, in offset order, skipping transaction markers.
    ///
    /// Pulling a record marks it as the one being handled: a handler error returned after
    /// that, and log lines written meanwhile, are attributed to its offset.
    ///
    /// # Panics
    ///
    /// If the bytes are not valid record batches, which the host rules out.
    pub fn records(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        self.walk(true)
    }

    fn walk(&self, track: bool) -> impl Iterator<Item = Record<'a>> + 'a {
        let (start, end) = (self.start, self.end);
        self.batches()
            .map(|b| b.unwrap_or_else(|e| panic!("{e}")))
            .filter(move |b| !b.is_control() && b.last_offset() >= start && b.base_offset() < end)
            .flat_map(|b| b.records())
            .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
            .filter(move |r| r.offset() >= start && r.offset() < end)
            .inspect(move |r| {
                if track {
                    crate::abi::set_current(r.offset());
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's zigzag varint encoding, written independently of the decoder.
    fn encode(v: i64, out: &mut Vec<u8>) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    #[test]
    fn varlongs_of_every_length_decode_in_sequence() {
        let mut values: Vec<i64> = vec![0, -1, 1, 63, -64, 64, -65, 8191, -8192, 8192, -8193];
        values.extend([1 << 20, -(1 << 30), i64::from(i32::MAX), i64::MIN, i64::MAX]);
        values.extend((-20_000..20_000).step_by(7));
        let mut buf = Vec::new();
        for &v in &values {
            encode(v, &mut buf);
        }
        let mut c = Cursor { buf: &buf, pos: 0 };
        for &v in &values {
            assert_eq!(c.varlong(), Ok(v));
        }
        assert_eq!(c.pos, buf.len());
        assert_eq!(c.varlong(), Err(MalformedBatch("truncated")));
        // A two-byte prefix of a longer varint, and a varint longer than ten bytes.
        let mut c = Cursor {
            buf: &[0x80, 0x80],
            pos: 0,
        };
        assert_eq!(c.varlong(), Err(MalformedBatch("truncated")));
        let long = [0xff; 11];
        let mut c = Cursor { buf: &long, pos: 0 };
        assert_eq!(c.varlong(), Err(MalformedBatch("varint too long")));
    }
}
