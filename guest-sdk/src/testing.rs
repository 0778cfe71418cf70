//! Native testing support: the in-process stand-in for the host, and a batch encoder.
//!
//! On non-Wasm targets the SDK's imports land here instead of in a host: emits, log lines
//! and failures are collected in thread-local buffers that a unit test inspects, and
//! parameters come from [`set_param`]. Together with [`BatchBuilder`] and [`run`] this lets
//! a handler crate test its handler with plain `cargo test`.
//!
//! ```
//! use rill_guest::prelude::*;
//! use rill_guest::testing::{self, BatchBuilder};
//!
//! fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
//!     ctx.emit("out", rec.key(), rec.value())
//! }
//!
//! let mut b = BatchBuilder::new(10);
//! b.push(Some(b"k"), Some(b"v"));
//! let out = testing::run(&b.finish(), 0, on_record);
//! assert!(out.failure.is_none());
//! assert_eq!(out.emits[0].topic, "out");
//! assert_eq!(out.emits[0].value.as_deref(), Some(&b"v"[..]));
//! ```

#[cfg(not(target_arch = "wasm32"))]
use std::cell::RefCell;

use crate::Level;
#[cfg(not(target_arch = "wasm32"))]
use crate::context::decode_headers;
#[cfg(not(target_arch = "wasm32"))]
use crate::{Context, Record, Result};

/// A record emitted through the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// Output topic.
    pub topic: String,
    /// Key (`None` = null).
    pub key: Option<Vec<u8>>,
    /// Value (`None` = null).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// What one [`run`] produced.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Emitted records, in order: those the host would append. When a record fails, the
    /// emits it made itself are left out, as the host leaves them out.
    pub emits: Vec<Emitted>,
    /// Log lines, in order.
    pub logs: Vec<(Level, String)>,
    /// The failing record's offset and message, if a record failed.
    pub failure: Option<(i64, String)>,
    /// State changes the host would apply (`None`: deleted), in key order. They are also
    /// applied to this thread's state (see [`state`]).
    pub state: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

#[derive(Default)]
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
struct Shim {
    out: Output,
    params: Vec<(String, String)>,
    /// Topics `emit` accepts; `None` accepts any.
    outputs: Option<Vec<String>>,
    /// Committed state, and the writes of the invocation running.
    state: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    writes: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The registry: schema texts by id (ids from 1), and ids by (subject, text).
    schemas: Vec<String>,
    subjects: std::collections::BTreeMap<(String, String), u32>,
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static SHIM: RefCell<Shim> = RefCell::new(Shim::default());
}

#[cfg(not(target_arch = "wasm32"))]
/// Sets a deploy-time parameter that [`Context::param`] will return on this thread.
pub fn set_param(key: &str, value: &str) {
    SHIM.with_borrow_mut(|s| {
        s.params.retain(|(k, _)| k != key);
        s.params.push((key.to_owned(), value.to_owned()));
    })
}

#[cfg(not(target_arch = "wasm32"))]
/// Restricts the topics `emit` accepts on this thread, like a deployment's `outputs`.
pub fn set_outputs(topics: Option<&[&str]>) {
    SHIM.with_borrow_mut(|s| s.outputs = topics.map(|t| t.iter().map(|&t| t.into()).collect()))
}

#[cfg(not(target_arch = "wasm32"))]
/// Sets a key of this thread's committed state, as if an earlier invocation had written it.
pub fn set_state(key: &[u8], value: Option<&[u8]>) {
    SHIM.with_borrow_mut(|s| match value {
        Some(v) => {
            s.state.insert(key.to_vec(), v.to_vec());
        }
        None => {
            s.state.remove(key);
        }
    })
}

#[cfg(not(target_arch = "wasm32"))]
/// Registers `text` under `subject` in this thread's stand-in registry (or finds it) and
/// returns its id, as a producer's serializer would. Handlers' `schema_get` and
/// `schema_id` read it; ids start at 1 and are never reused.
pub fn register_schema(subject: &str, text: &str) -> u32 {
    SHIM.with_borrow_mut(|s| {
        let key = (subject.to_owned(), text.to_owned());
        if let Some(id) = s.subjects.get(&key) {
            return *id;
        }
        s.schemas.push(text.to_owned());
        let id = s.schemas.len() as u32;
        s.subjects.insert(key, id);
        id
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn shim_schema_get(id: u32, out: &mut [u8]) -> i32 {
    SHIM.with_borrow(|s| {
        let Some(text) = (id as usize).checked_sub(1).and_then(|i| s.schemas.get(i)) else {
            return -1;
        };
        let n = text.len().min(out.len());
        out[..n].copy_from_slice(&text.as_bytes()[..n]);
        text.len() as i32
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn shim_schema_id(subject: &str, format: i32, text: &str) -> i32 {
    if !(0..=2).contains(&format) {
        return -3;
    }
    register_schema(subject, text) as i32
}

#[cfg(not(target_arch = "wasm32"))]
/// This thread's committed state: what the runs so far left, in key order.
pub fn state() -> Vec<(Vec<u8>, Vec<u8>)> {
    SHIM.with_borrow(|s| {
        s.state
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

#[cfg(not(target_arch = "wasm32"))]
/// Takes what was emitted, logged and failed on this thread since the last call.
pub fn take_output() -> Output {
    SHIM.with_borrow_mut(|s| std::mem::take(&mut s.out))
}

#[cfg(not(target_arch = "wasm32"))]
/// Runs a per-record handler over `batches` as the host would, and returns its output.
pub fn run<F>(batches: &[u8], partition: u32, f: F) -> Output
where
    F: FnMut(&Record<'_>, &mut Context) -> Result<()>,
{
    run_range(batches, partition, i64::MIN, i64::MAX, f)
}

#[cfg(not(target_arch = "wasm32"))]
/// [`run`] restricted to offsets in `[start, end)`.
pub fn run_range<F>(batches: &[u8], partition: u32, start: i64, end: i64, mut f: F) -> Output
where
    F: FnMut(&Record<'_>, &mut Context) -> Result<()>,
{
    // The same two steps as the host: ask for a buffer, copy the bytes in, then call.
    take_output();
    crate::abi::input(batches.len() as i32);
    load_input(batches);
    let len = batches.len() as i32;
    let rc = crate::abi::handle_records(len, partition as i32, start, end, &mut f);
    let failed = (rc == crate::abi::HANDLE_FAILED)
        .then(|| SHIM.with_borrow(|s| s.out.failure.clone()))
        .flatten();
    let changed = SHIM.with_borrow(|s| !s.writes.is_empty());
    match failed {
        // As the host does: state changes cannot be told apart by record, so the records
        // before the failing one run again alone, and that run's emits and changes stand.
        Some((offset, message)) if changed => {
            let logs = take_output().logs;
            if offset > start {
                let _ = crate::abi::handle_records(len, partition as i32, start, offset, &mut f);
            }
            let mut out = finish(crate::abi::HANDLE_OK);
            out.logs = logs;
            out.failure = Some((offset, message));
            out
        }
        _ => finish(rc),
    }
}

/// Runs a batch handler over `batches` as the host would, and returns its output.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_batch<F>(batches: &[u8], partition: u32, f: F) -> Output
where
    F: FnMut(&crate::Batch<'_>, &mut Context) -> Result<()>,
{
    take_output();
    crate::abi::input(batches.len() as i32);
    load_input(batches);
    let rc = crate::abi::handle_batch(
        batches.len() as i32,
        partition as i32,
        i64::MIN,
        i64::MAX,
        f,
    );
    finish(rc)
}

/// What the host keeps of an invocation: on a record error, only the emits made before the
/// failing record became current.
#[cfg(not(target_arch = "wasm32"))]
fn finish(rc: i32) -> Output {
    let mut out = take_output();
    if rc == crate::abi::HANDLE_FAILED {
        out.emits
            .truncate(usize::try_from(crate::abi::emits_before_current()).unwrap_or(0));
    }
    // The host applies the state changes of a successful invocation.
    out.state = SHIM.with_borrow_mut(|s| {
        let writes = std::mem::take(&mut s.writes);
        if rc == crate::abi::HANDLE_FAILED {
            return Vec::new();
        }
        for (k, v) in &writes {
            match v {
                Some(v) => s.state.insert(k.clone(), v.clone()),
                None => s.state.remove(k),
            };
        }
        writes.into_iter().collect()
    });
    out
}

/// Copies `batches` into the input buffer, as the host does between `rill_input` and
/// `rill_handle`.
#[cfg(not(target_arch = "wasm32"))]
fn load_input(batches: &[u8]) {
    crate::abi::with_input_buffer(|buf| buf[..batches.len()].copy_from_slice(batches));
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn shim_emit(topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, h: &[u8]) -> i32 {
    SHIM.with_borrow_mut(|s| {
        if let Some(outs) = &s.outputs
            && !outs.iter().any(|t| t == topic)
        {
            return crate::abi::EMIT_ERR_TOPIC;
        }
        let Some(headers) = decode_headers(h) else {
            return crate::abi::EMIT_ERR_INVALID;
        };
        s.out.emits.push(Emitted {
            topic: topic.to_owned(),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers,
        });
        0
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn shim_log(level: Level, msg: &str) {
    SHIM.with_borrow_mut(|s| s.out.logs.push((level, msg.to_owned())))
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn shim_fail(offset: i64, msg: &str) {
    SHIM.with_borrow_mut(|s| s.out.failure = Some((offset, msg.to_owned())))
}

#[cfg(not(target_arch = "wasm32"))]
fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= 32 << 10
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn shim_state_get(key: &[u8], out: &mut [u8]) -> i32 {
    if !valid_key(key) {
        return -3;
    }
    SHIM.with_borrow(|s| {
        let value = match s.writes.get(key) {
            Some(v) => v.as_deref(),
            None => s.state.get(key).map(Vec::as_slice),
        };
        let Some(v) = value else { return -1 };
        let n = v.len().min(out.len());
        out[..n].copy_from_slice(&v[..n]);
        v.len() as i32
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn shim_state_put(key: &[u8], value: Option<&[u8]>) -> i32 {
    if !valid_key(key) {
        return -3;
    }
    SHIM.with_borrow_mut(|s| s.writes.insert(key.to_vec(), value.map(<[u8]>::to_vec)));
    0
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn shim_state_scan(from: &[u8], to: Option<&[u8]>, out: &mut [u8]) -> i32 {
    SHIM.with_borrow(|s| {
        let mut merged: std::collections::BTreeMap<&[u8], Option<&[u8]>> = s
            .state
            .range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
            .collect();
        for (k, v) in s
            .writes
            .range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
        {
            merged.insert(k.as_slice(), v.as_deref());
        }
        let mut written = 0usize;
        for (k, v) in merged {
            if to.is_some_and(|t| k >= t) {
                break;
            }
            let Some(v) = v else { continue };
            let size = 8 + k.len() + v.len();
            if written + size > out.len() {
                return if written == 0 {
                    -(size as i32)
                } else {
                    written as i32
                };
            }
            let dst = &mut out[written..written + size];
            dst[..4].copy_from_slice(&(k.len() as u32).to_le_bytes());
            dst[4..4 + k.len()].copy_from_slice(k);
            dst[4 + k.len()..8 + k.len()].copy_from_slice(&(v.len() as u32).to_le_bytes());
            dst[8 + k.len()..].copy_from_slice(v);
            written += size;
        }
        written as i32
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn shim_param(key: &str) -> Option<String> {
    SHIM.with_borrow(|s| {
        s.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
}

/// Builds one uncompressed Kafka record batch v2, with a valid CRC-32C.
///
/// A small encoder for tests and benches that must not depend on the log crate; the log's
/// own `rill_log::batch::BatchBuilder` produces the same bytes.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_offset: i64,
    first_ts: i64,
    max_ts: i64,
    count: i32,
    body: Vec<u8>,
    rec: Vec<u8>,
}

impl BatchBuilder {
    /// An empty batch whose first record gets `base_offset`.
    pub fn new(base_offset: i64) -> Self {
        BatchBuilder {
            base_offset,
            first_ts: 0,
            max_ts: 0,
            count: 0,
            body: Vec::new(),
            rec: Vec::new(),
        }
    }

    /// Appends a record with timestamp 0 and no headers.
    pub fn push(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) -> &mut Self {
        self.push_full(key, value, &[], 0)
    }

    /// Appends a record with headers and a timestamp (ms since the epoch).
    pub fn push_full(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
        timestamp: i64,
    ) -> &mut Self {
        if self.count == 0 {
            self.first_ts = timestamp;
            self.max_ts = timestamp;
        }
        self.max_ts = self.max_ts.max(timestamp);
        let r = &mut self.rec;
        r.clear();
        r.push(0); // attributes
        varlong(r, timestamp - self.first_ts);
        varlong(r, i64::from(self.count));
        bytes(r, key);
        bytes(r, value);
        varlong(r, headers.len() as i64);
        for (k, v) in headers {
            bytes(r, Some(k.as_bytes()));
            bytes(r, *v);
        }
        varlong(&mut self.body, r.len() as i64);
        self.body.extend_from_slice(r);
        self.count += 1;
        self
    }

    /// Number of records pushed.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The batch bytes.
    pub fn finish(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(61 + self.body.len());
        b.extend_from_slice(&self.base_offset.to_be_bytes());
        b.extend_from_slice(&((49 + self.body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
        b.push(2); // magic
        b.extend_from_slice(&[0; 4]); // crc, filled below
        b.extend_from_slice(&0i16.to_be_bytes()); // attributes
        b.extend_from_slice(&(self.count - 1).max(0).to_be_bytes()); // lastOffsetDelta
        b.extend_from_slice(&self.first_ts.to_be_bytes());
        b.extend_from_slice(&self.max_ts.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
        b.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
        b.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
        b.extend_from_slice(&self.count.to_be_bytes());
        b.extend_from_slice(&self.body);
        let crc = crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

fn varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => varlong(out, -1),
    }
}

/// CRC-32C (Castagnoli), bitwise: slow but small, and only tests use it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (!(crc & 1)).wrapping_add(1));
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walker_reads_back_what_the_builder_wrote() {
        let long = vec![b'x'; 300];
        let mut b = BatchBuilder::new(1_000);
        b.push_full(
            Some(b"k"),
            Some(b"v"),
            &[("h", Some(b"1")), ("n", None)],
            1_700_000_000_000,
        );
        b.push_full(None, None, &[], 1_700_000_000_500);
        b.push_full(Some(&long), Some(&long), &[], 1_699_999_999_000);
        let mut seen = Vec::new();
        let out = run_range(
            &b.finish(),
            7,
            1_000,
            1_003,
            |rec: &Record<'_>, ctx: &mut Context| {
                let headers: Vec<_> = rec.headers().iter().collect();
                seen.push((
                    rec.offset(),
                    rec.timestamp(),
                    rec.partition(),
                    rec.key().map(<[u8]>::len),
                    rec.value().map(<[u8]>::len),
                    headers.len(),
                ));
                if rec.offset() == 1_000 {
                    assert_eq!(headers, vec![("h", Some(&b"1"[..])), ("n", None)]);
                    assert_eq!(rec.header("h"), Some(Some(&b"1"[..])));
                    ctx.forward("out", rec)?;
                }
                Ok(())
            },
        );
        assert_eq!(
            seen,
            vec![
                (1_000, 1_700_000_000_000, 7, Some(1), Some(1), 2),
                (1_001, 1_700_000_000_500, 7, None, None, 0),
                (1_002, 1_699_999_999_000, 7, Some(300), Some(300), 0),
            ]
        );
        assert_eq!(
            out.emits[0].headers,
            vec![
                ("h".to_owned(), Some(b"1".to_vec())),
                ("n".to_owned(), None)
            ]
        );
        // The range is honoured.
        let out = run_range(
            &b.finish(),
            0,
            1_001,
            1_002,
            |rec: &Record<'_>, ctx: &mut Context| ctx.emit("o", None, rec.value()),
        );
        assert_eq!(out.emits.len(), 1);
        assert_eq!(out.emits[0].value, None);
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
