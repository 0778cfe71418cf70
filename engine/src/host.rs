//! The host half of the ABI: the state a store carries and the `rill` imports.
//!
//! Every access to guest memory goes through [`guest_slice`] / [`guest_slice_mut`], which
//! bounds-check against the memory's current size. A bad pointer from the guest becomes a
//! [`Abort::Fault`] that ends that invocation as a trap; the host never panics on it.

use std::time::Instant;

use wasmtime::{Caller, Linker, Memory, TypedFunc};

use crate::emits::Emits;
use crate::limits::MemoryLimiter;
use crate::outcome::{Level, LogLine};
use crate::schema::SchemaHandle;
use crate::state::{StateHandle, StateWrites};
use crate::{Limits, wasi};

/// The import module of the Rill ABI.
pub(crate) const MODULE: &str = "rill";
/// The functions it provides (version 1).
pub(crate) const IMPORTS: &[&str] = &[
    "emit",
    "log",
    "fail",
    "param",
    "state_get",
    "state_put",
    "state_scan",
    "schema_get",
    "schema_id",
];
/// The imports that make a module stateful (`docs/abi.md`, "State").
pub(crate) const STATE_IMPORTS: &[&str] = &["state_get", "state_put", "state_scan"];
/// The imports of typed handlers (`docs/abi.md`, "Schemas").
pub(crate) const SCHEMA_IMPORTS: &[&str] = &["schema_get", "schema_id"];

/// `emit` return codes (documented in docs/abi.md).
pub(crate) const EMIT_ERR_TOPIC: i32 = -1;
pub(crate) const EMIT_ERR_INVALID: i32 = -3;

/// A log line longer than this is cut, so a guest cannot make the host buffer huge lines.
const MAX_LOG_LINE: usize = 8 << 10;
/// Log lines kept per invocation; the rest are counted and reported as one line.
const MAX_LOG_LINES: usize = 1000;

/// Why a host import stopped the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Abort {
    /// The emit limit was reached.
    EmitLimit,
    /// WASI `proc_exit`.
    Exit(i32),
    /// The guest passed a bad pointer or length.
    Fault(String),
}

/// What one invocation accumulates.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub(crate) emits: Emits,
    pub(crate) emit_bytes: u64,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) dropped_logs: usize,
    pub(crate) failed: Option<(i64, String)>,
    pub(crate) abort: Option<Abort>,
    /// Partial lines written to WASI stdout and stderr.
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// State changes (`state_put`), read back by `state_get` and `state_scan`.
    pub(crate) state: StateWrites,
}

/// The data of one store.
pub(crate) struct HostState {
    pub(crate) limiter: MemoryLimiter,
    pub(crate) memory: Option<Memory>,
    /// The guest's optional `rill_current_offset` export, to tag log lines.
    pub(crate) current_offset: Option<TypedFunc<(), i64>>,
    /// The guest's optional `rill_emits_before_current` export: on a record error, how many
    /// emits came before the failing record (the rest are its own and are dropped).
    pub(crate) emits_before_current: Option<TypedFunc<(), i32>>,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) outputs: Option<Vec<String>>,
    /// The partition's committed state; `None` reads as empty.
    pub(crate) state: Option<StateHandle>,
    /// Where `schema_get` and `schema_id` get schemas; `None`: no registry.
    pub(crate) schemas: Option<SchemaHandle>,
    pub(crate) limits: Limits,
    pub(crate) scratch: Scratch,
    pub(crate) started: Instant,
}

impl HostState {
    pub(crate) fn new(
        params: Vec<(String, String)>,
        outputs: Option<Vec<String>>,
        state: Option<StateHandle>,
        limits: Limits,
        max_memory: u64,
    ) -> Self {
        let limit = limits.memory_bytes.min(max_memory);
        HostState {
            limiter: MemoryLimiter {
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
                hit: false,
            },
            memory: None,
            current_offset: None,
            emits_before_current: None,
            params,
            outputs,
            state,
            schemas: None,
            limits,
            scratch: Scratch::default(),
            started: Instant::now(),
        }
    }
}

/// A guest-provided `(ptr, len)` as a checked range; `None` if it is negative or overflows.
fn range(ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let len = usize::try_from(len).ok()?;
    Some(start..start.checked_add(len)?)
}

/// The guest bytes `[ptr, ptr+len)`, or a fault naming `what`.
pub(crate) fn guest_slice<'a>(
    mem: &'a [u8],
    ptr: i32,
    len: i32,
    what: &str,
) -> Result<&'a [u8], Abort> {
    range(ptr, len).and_then(|r| mem.get(r)).ok_or_else(|| {
        Abort::Fault(format!(
            "{what}: pointer {ptr:#x} + length {len} is outside guest memory ({} bytes)",
            mem.len()
        ))
    })
}

/// Mutable variant of [`guest_slice`].
pub(crate) fn guest_slice_mut<'a>(
    mem: &'a mut [u8],
    ptr: i32,
    len: i32,
    what: &str,
) -> Result<&'a mut [u8], Abort> {
    let size = mem.len();
    range(ptr, len).and_then(|r| mem.get_mut(r)).ok_or_else(|| {
        Abort::Fault(format!(
            "{what}: pointer {ptr:#x} + length {len} is outside guest memory ({size} bytes)"
        ))
    })
}

/// Records `abort` in the store and returns the error that unwinds the guest.
pub(crate) fn abort(caller: &mut Caller<'_, HostState>, abort: Abort) -> wasmtime::Error {
    let msg = match &abort {
        Abort::EmitLimit => "emit limit reached".to_owned(),
        Abort::Exit(code) => format!("proc_exit({code})"),
        Abort::Fault(m) => m.clone(),
    };
    caller.data_mut().scratch.abort = Some(abort);
    wasmtime::Error::msg(msg)
}

pub(crate) fn memory(caller: &Caller<'_, HostState>) -> Memory {
    caller
        .data()
        .memory
        .expect("memory is set right after instantiation, before any call")
}

/// Appends a log line, tagging it with the record the guest is handling.
pub(crate) fn push_log(
    caller: &mut Caller<'_, HostState>,
    level: Level,
    msg: &[u8],
) -> wasmtime::Result<()> {
    let offset = match caller.data().current_offset.clone() {
        Some(f) => Some(f.call(&mut *caller, ())?).filter(|&o| o >= 0),
        None => None,
    };
    let scratch = &mut caller.data_mut().scratch;
    if scratch.logs.len() >= MAX_LOG_LINES {
        scratch.dropped_logs += 1;
        return Ok(());
    }
    let msg = &msg[..msg.len().min(MAX_LOG_LINE)];
    let message = String::from_utf8_lossy(msg).into_owned();
    scratch.logs.push(LogLine {
        level,
        message,
        offset,
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn emit(
    mut caller: Caller<'_, HostState>,
    topic_ptr: i32,
    topic_len: i32,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
    headers_ptr: i32,
    headers_len: i32,
) -> wasmtime::Result<i32> {
    let mem = memory(&caller);
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let data: &[u8] = data;
    let result = (|| {
        let topic = guest_slice(data, topic_ptr, topic_len, "emit topic")?;
        let key = (key_len != -1)
            .then(|| guest_slice(data, key_ptr, key_len, "emit key"))
            .transpose()?;
        let value = (value_len != -1)
            .then(|| guest_slice(data, value_ptr, value_len, "emit value"))
            .transpose()?;
        let headers = guest_slice(data, headers_ptr, headers_len, "emit headers")?;
        let Ok(topic) = std::str::from_utf8(topic) else {
            return Ok(EMIT_ERR_INVALID);
        };
        if let Some(outputs) = &state.outputs
            && !outputs.iter().any(|t| t == topic)
        {
            return Ok(EMIT_ERR_TOPIC);
        }
        let size =
            (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + headers.len()) as u64;
        let s = &mut state.scratch;
        if s.emit_bytes + size > state.limits.max_emit_bytes
            || s.emits.len() + s.state.len() >= state.limits.max_emits as usize
        {
            return Err(Abort::EmitLimit);
        }
        let Some(count) = crate::emits::validate_headers(headers) else {
            return Ok(EMIT_ERR_INVALID);
        };
        s.emit_bytes += size;
        s.emits.push(topic, key, value, headers, count);
        Ok(0)
    })();
    result.map_err(|a| abort(&mut caller, a))
}

fn log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let mem = memory(&caller);
    let msg = match guest_slice(mem.data(&caller), ptr, len, "log message") {
        Ok(m) => m.to_vec(),
        Err(a) => return Err(abort(&mut caller, a)),
    };
    push_log(&mut caller, Level::from_abi(level), &msg)
}

fn fail(
    mut caller: Caller<'_, HostState>,
    offset: i64,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<()> {
    let mem = memory(&caller);
    let msg = match guest_slice(mem.data(&caller), ptr, len, "fail message") {
        Ok(m) => String::from_utf8_lossy(&m[..m.len().min(MAX_LOG_LINE)]).into_owned(),
        Err(a) => return Err(abort(&mut caller, a)),
    };
    caller.data_mut().scratch.failed = Some((offset, msg));
    Ok(())
}

fn param(
    mut caller: Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    out_ptr: i32,
    out_cap: i32,
) -> wasmtime::Result<i32> {
    let mem = memory(&caller);
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let result = (|| {
        let key = guest_slice(data, key_ptr, key_len, "param key")?;
        let Some((_, v)) = state.params.iter().find(|(k, _)| k.as_bytes() == key) else {
            return Ok(-1);
        };
        let n = v.len().min(out_cap.max(0) as usize);
        guest_slice_mut(data, out_ptr, n as i32, "param output")?
            .copy_from_slice(&v.as_bytes()[..n]);
        Ok(v.len() as i32)
    })();
    result.map_err(|a| abort(&mut caller, a))
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "emit", emit)?;
    linker.func_wrap(MODULE, "log", log)?;
    linker.func_wrap(MODULE, "fail", fail)?;
    linker.func_wrap(MODULE, "param", param)?;
    linker.func_wrap(MODULE, "state_get", crate::state::state_get)?;
    linker.func_wrap(MODULE, "state_put", crate::state::state_put)?;
    linker.func_wrap(MODULE, "state_scan", crate::state::state_scan)?;
    linker.func_wrap(MODULE, "schema_get", crate::schema::schema_get)?;
    linker.func_wrap(MODULE, "schema_id", crate::schema::schema_id)?;
    let _ = wasi::MODULE;
    Ok(())
}
