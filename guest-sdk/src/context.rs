//! What a handler can do besides reading its records: emit, log, read parameters.

use std::fmt;

use serde::Serialize;

use crate::abi;
use crate::{Error, Result};

/// Severity of a log line, as the `log` import numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum Level {
    /// Very detailed tracing.
    Trace = 0,
    /// Debugging detail.
    Debug = 1,
    /// Normal operation.
    Info = 2,
    /// Something unexpected that the handler coped with.
    Warn = 3,
    /// Something failed.
    Error = 4,
}

/// The handler's side of the host: emit records, write log lines, read parameters.
///
/// One context lives for the whole instance; its scratch buffers are reused, so emitting
/// JSON does not allocate per record once they have grown.
#[derive(Debug, Default)]
pub struct Context {
    partition: u32,
    /// Serialized JSON for `emit_json`.
    json: Vec<u8>,
    /// Encoded headers for `emit_with_headers`.
    headers: Vec<u8>,
    /// Formatted text for the `log_*` helpers.
    text: String,
    /// The partition's durable state.
    state: crate::State,
}

impl Context {
    pub(crate) fn reset(&mut self, partition: u32) {
        self.partition = partition;
    }

    /// The partition this instance consumes.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Emits a record to `topic`, with no headers.
    ///
    /// The host buffers it and appends it when the invocation succeeds (or, if a later
    /// record fails, together with the commit up to that record).
    pub fn emit(&mut self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<()> {
        check(topic, abi::emit(topic, key, value, &[]))
    }

    /// Emits a record with headers (`None` values are null).
    pub fn emit_with_headers(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Result<()> {
        encode_headers(&mut self.headers, headers.len(), headers.iter().copied());
        check(topic, abi::emit(topic, key, value, &self.headers))
    }

    /// Emits `value` serialized as JSON.
    pub fn emit_json<T: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: &T,
    ) -> Result<()> {
        self.json.clear();
        serde_json::to_writer(&mut self.json, value)?;
        check(topic, abi::emit(topic, key, Some(&self.json), &[]))
    }

    /// Forwards `rec` unchanged (key, value and headers) to `topic`.
    pub fn forward(&mut self, topic: &str, rec: &crate::Record<'_>) -> Result<()> {
        let headers = rec.headers();
        if headers.is_empty() {
            return self.emit(topic, rec.key(), rec.value());
        }
        encode_headers(&mut self.headers, headers.len(), headers.iter());
        check(
            topic,
            abi::emit(topic, rec.key(), rec.value(), &self.headers),
        )
    }

    /// Writes a log line at `level`. The host tags it with the deployment, the partition
    /// and the offset of the record being handled.
    pub fn log(&mut self, level: Level, msg: impl fmt::Display) {
        use fmt::Write;
        self.text.clear();
        let _ = write!(self.text, "{msg}");
        abi::log(level, &self.text);
    }

    /// [`Context::log`] at [`Level::Trace`].
    pub fn log_trace(&mut self, msg: impl fmt::Display) {
        self.log(Level::Trace, msg)
    }

    /// [`Context::log`] at [`Level::Debug`].
    pub fn log_debug(&mut self, msg: impl fmt::Display) {
        self.log(Level::Debug, msg)
    }

    /// [`Context::log`] at [`Level::Info`].
    pub fn log_info(&mut self, msg: impl fmt::Display) {
        self.log(Level::Info, msg)
    }

    /// [`Context::log`] at [`Level::Warn`].
    pub fn log_warn(&mut self, msg: impl fmt::Display) {
        self.log(Level::Warn, msg)
    }

    /// [`Context::log`] at [`Level::Error`].
    pub fn log_error(&mut self, msg: impl fmt::Display) {
        self.log(Level::Error, msg)
    }

    /// The partition's durable keyed state (see [`crate::State`]). A module that uses it
    /// gets a store per partition, restored after restarts, and a changelog topic
    /// `<deployment>.state`.
    pub fn state(&mut self) -> &mut crate::State {
        &mut self.state
    }

    /// The deploy-time parameter `key` (`runtime deploy --env KEY=VALUE`), if set.
    pub fn param(&self, key: &str) -> Option<String> {
        abi::param(key)
    }
}

/// Turns an `emit` return code into a result naming the topic.
fn check(topic: &str, rc: i32) -> Result<()> {
    match rc {
        0 => Ok(()),
        abi::EMIT_ERR_TOPIC => Err(Error::msg(format_args!(
            "emit to topic '{topic}' refused: not an output of this deployment"
        ))),
        abi::EMIT_ERR_LIMIT => Err(Error::msg("emit limit of this invocation reached")),
        abi::EMIT_ERR_INVALID => Err(Error::msg(format_args!(
            "emit to '{topic}': invalid arguments"
        ))),
        n => Err(Error::msg(format_args!(
            "emit to '{topic}' failed with code {n}"
        ))),
    }
}

/// Encodes headers in the ABI's format: count u32 LE, then per header key_len u32 LE, key,
/// value_len i32 LE (-1 = null), value.
pub(crate) fn encode_headers<'h>(
    out: &mut Vec<u8>,
    count: usize,
    headers: impl Iterator<Item = (&'h str, Option<&'h [u8]>)>,
) {
    out.clear();
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        match v {
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&(-1i32).to_le_bytes()),
        }
    }
}

/// Decodes the ABI's header format (the inverse of `encode_headers`); `None` if malformed.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn decode_headers(mut b: &[u8]) -> Option<Vec<(String, Option<Vec<u8>>)>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = b.split_at_checked(n)?;
        *b = tail;
        Some(head)
    }
    fn u32le(b: &mut &[u8]) -> Option<u32> {
        Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?))
    }
    if b.is_empty() {
        return Some(Vec::new());
    }
    let n = u32le(&mut b)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let kl = u32le(&mut b)? as usize;
        let k = std::str::from_utf8(take(&mut b, kl)?).ok()?.to_owned();
        let vl = u32le(&mut b)? as i32;
        let v = match vl {
            -1 => None,
            n if n < 0 => return None,
            n => Some(take(&mut b, n as usize)?.to_vec()),
        };
        out.push((k, v));
    }
    b.is_empty().then_some(out)
}
