//! The ABI (version 1, see `docs/abi.md`): the host imports, the input buffer, and the
//! driver the export macros call. This module holds every `unsafe` of the SDK.
//!
//! On `wasm32` the imports come from the host module `rill`. Elsewhere they are replaced by
//! an in-process shim (see [`crate::testing`]) so handler crates compile, document and
//! unit-test natively.

use std::cell::{Cell, RefCell};

use crate::context::Context;
use crate::record::{Batch, BatchIter, Record};
use crate::{Level, Result};

/// The ABI version this SDK implements; the host checks `rill_abi_version()` against it.
pub const ABI_VERSION: i32 = 1;

/// `rill_handle` result: every record in range was handled.
pub const HANDLE_OK: i32 = 0;
/// `rill_handle` result: a record failed and `fail` was called with its offset.
pub const HANDLE_FAILED: i32 = 1;

/// `emit` result: the topic is not one this deployment may write to.
pub const EMIT_ERR_TOPIC: i32 = -1;
/// `emit` result: the per-invocation emit limit was reached (the host normally traps).
pub const EMIT_ERR_LIMIT: i32 = -2;
/// `emit` result: the arguments were malformed (bad UTF-8, bad header encoding).
pub const EMIT_ERR_INVALID: i32 = -3;

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "rill")]
    unsafe extern "C" {
        #[allow(clippy::too_many_arguments)]
        pub fn emit(
            topic_ptr: *const u8,
            topic_len: i32,
            key_ptr: *const u8,
            key_len: i32,
            value_ptr: *const u8,
            value_len: i32,
            headers_ptr: *const u8,
            headers_len: i32,
        ) -> i32;
        pub fn log(level: i32, ptr: *const u8, len: i32);
        pub fn fail(offset: i64, msg_ptr: *const u8, msg_len: i32);
        pub fn param(key_ptr: *const u8, key_len: i32, out_ptr: *mut u8, out_cap: i32) -> i32;
        pub fn state_get(key_ptr: *const u8, key_len: i32, out_ptr: *mut u8, out_cap: i32) -> i32;
        pub fn state_put(
            key_ptr: *const u8,
            key_len: i32,
            value_ptr: *const u8,
            value_len: i32,
        ) -> i32;
        pub fn state_scan(
            from_ptr: *const u8,
            from_len: i32,
            to_ptr: *const u8,
            to_len: i32,
            out_ptr: *mut u8,
            out_cap: i32,
        ) -> i32;
        pub fn schema_get(id: i32, out_ptr: *mut u8, out_cap: i32) -> i32;
        pub fn schema_id(
            subject_ptr: *const u8,
            subject_len: i32,
            format: i32,
            schema_ptr: *const u8,
            schema_len: i32,
        ) -> i32;
    }
}

/// A nullable slice as the ABI's (pointer, length) pair, -1 meaning null.
fn nullable(s: Option<&[u8]>) -> (*const u8, i32) {
    match s {
        Some(s) => (s.as_ptr(), s.len() as i32),
        None => (std::ptr::null(), -1),
    }
}

/// Calls the `emit` import. `headers` is already in the ABI's header encoding.
pub(crate) fn emit(topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[u8]) -> i32 {
    #[cfg(target_arch = "wasm32")]
    {
        let (kp, kl) = nullable(key);
        let (vp, vl) = nullable(value);
        // SAFETY: every pointer/length pair describes a live slice borrowed for the call;
        // the host only reads them, bounds-checked against this module's memory.
        count_emit(unsafe {
            imports::emit(
                topic.as_ptr(),
                topic.len() as i32,
                kp,
                kl,
                vp,
                vl,
                headers.as_ptr(),
                headers.len() as i32,
            )
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = nullable;
        count_emit(crate::testing::shim_emit(topic, key, value, headers))
    }
}

/// Calls the `log` import.
pub(crate) fn log(level: Level, msg: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: a live slice, only read by the host.
    unsafe {
        imports::log(level as i32, msg.as_ptr(), msg.len() as i32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::shim_log(level, msg)
}

/// Calls the `fail` import.
pub(crate) fn fail(offset: i64, msg: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: a live slice, only read by the host.
    unsafe {
        imports::fail(offset, msg.as_ptr(), msg.len() as i32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::shim_fail(offset, msg)
}

/// Calls the `param` import: the deploy-time parameter `key`, if set.
pub(crate) fn param(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        let mut out: Vec<u8> = vec![0; 128];
        loop {
            // SAFETY: `out` is a live, writable buffer of `out.len()` bytes; the host writes
            // at most that many bytes into it (bounds-checked on its side).
            let n = unsafe {
                imports::param(
                    key.as_ptr(),
                    key.len() as i32,
                    out.as_mut_ptr(),
                    out.len() as i32,
                )
            };
            if n < 0 {
                return None;
            }
            let n = n as usize;
            if n <= out.len() {
                out.truncate(n);
                return Some(String::from_utf8_lossy(&out).into_owned());
            }
            out.resize(n, 0);
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::shim_param(key)
}

/// Calls the `state_get` import: the value's length (its first `out.len()` bytes copied
/// into `out`), `-1` if none, `-3` for an invalid key.
pub(crate) fn state_get(key: &[u8], out: &mut [u8]) -> i32 {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: `key` is a live slice the host only reads; `out` a live, writable buffer of
    // `out.len()` bytes the host writes at most that many bytes into (bounds-checked).
    unsafe {
        imports::state_get(
            key.as_ptr(),
            key.len() as i32,
            out.as_mut_ptr(),
            out.len() as i32,
        )
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::shim_state_get(key, out)
}

/// Calls the `state_put` import (`None` deletes): `0`, or `-3` for an invalid key.
pub(crate) fn state_put(key: &[u8], value: Option<&[u8]>) -> i32 {
    #[cfg(target_arch = "wasm32")]
    {
        let (vp, vl) = nullable(value);
        // SAFETY: live slices, only read by the host.
        unsafe { imports::state_put(key.as_ptr(), key.len() as i32, vp, vl) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::shim_state_put(key, value)
}

/// Calls the `state_scan` import over `[from, to)`: bytes of whole entries written to
/// `out`, `0` at the end, or minus the size the next entry needs.
pub(crate) fn state_scan(from: &[u8], to: Option<&[u8]>, out: &mut [u8]) -> i32 {
    #[cfg(target_arch = "wasm32")]
    {
        let (tp, tl) = nullable(to);
        // SAFETY: `from` and `to` are live slices the host only reads; `out` a live,
        // writable buffer of `out.len()` bytes (bounds-checked by the host).
        unsafe {
            imports::state_scan(
                from.as_ptr(),
                from.len() as i32,
                tp,
                tl,
                out.as_mut_ptr(),
                out.len() as i32,
            )
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::shim_state_scan(from, to, out)
}

/// Calls the `schema_get` import: the length of the writer schema of `id` (its first
/// `out.len()` bytes copied into `out`), or a negative code.
pub(crate) fn schema_get(id: u32, out: &mut [u8]) -> i32 {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: `out` is a live, writable buffer of `out.len()` bytes; the host writes at most
    // that many bytes into it (bounds-checked on its side).
    unsafe {
        imports::schema_get(id as i32, out.as_mut_ptr(), out.len() as i32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::shim_schema_get(id, out)
}

/// Calls the `schema_id` import: the id of `text` under `subject`, or a negative code.
pub(crate) fn schema_id(subject: &str, format: i32, text: &str) -> i32 {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: live slices, only read by the host.
    unsafe {
        imports::schema_id(
            subject.as_ptr(),
            subject.len() as i32,
            format,
            text.as_ptr(),
            text.len() as i32,
        )
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::shim_schema_id(subject, format, text)
}

thread_local! {
    /// The one input buffer, reused across invocations so nothing is allocated per call.
    /// (On wasm32 without threads a `thread_local!` is a plain static.)
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The record being handled, for `rill_current_offset` and failure reports; -1 = none.
    static CURRENT: Cell<i64> = const { Cell::new(-1) };
    /// The context, kept so its scratch buffers are reused across invocations.
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
    /// Emits the host accepted in this invocation, and how many of them came before the
    /// record being handled: on a record error the host keeps only those
    /// (`rill_emits_before_current`).
    static EMITTED: Cell<i32> = const { Cell::new(0) };
    static EMITTED_BEFORE_CURRENT: Cell<i32> = const { Cell::new(0) };
}

/// Body of the `rill_input` export: a pointer to a guest buffer of at least `len` bytes.
#[doc(hidden)]
pub fn input(len: i32) -> i32 {
    INPUT.with_borrow_mut(|buf| {
        let len = len.max(0) as usize;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf.as_mut_ptr() as usize as i32
    })
}

/// Lends the input buffer (native testing only).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn with_input_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    INPUT.with_borrow_mut(|b| f(b))
}

/// Body of the `rill_current_offset` export: the offset of the record being handled.
#[doc(hidden)]
pub fn current_offset() -> i64 {
    CURRENT.get()
}

/// Body of the `rill_emits_before_current` export: how many of this invocation's accepted
/// emits were made before the record being handled became current. When that record
/// fails, its own emits are not appended, on any try.
#[doc(hidden)]
pub fn emits_before_current() -> i32 {
    EMITTED_BEFORE_CURRENT.get()
}

/// Marks `offset` as the record being handled.
pub(crate) fn set_current(offset: i64) {
    CURRENT.set(offset);
    EMITTED_BEFORE_CURRENT.set(EMITTED.get());
}

/// Counts an emit the host accepted.
pub(crate) fn count_emit(rc: i32) -> i32 {
    if rc == 0 {
        EMITTED.set(EMITTED.get().wrapping_add(1));
    }
    rc
}

/// Installs, once, a panic hook that reports the panic message as an error log line: with
/// `panic = "abort"` a panic is otherwise a bare `unreachable` trap on the host.
fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        #[cfg(target_arch = "wasm32")]
        std::panic::set_hook(Box::new(|info| {
            let msg = format!("handler panicked at offset {}: {info}", CURRENT.get());
            log(Level::Error, &msg);
        }));
    });
}

/// Runs `body` over the input buffer's first `len` bytes with the reusable context.
fn with_input(len: i32, partition: i32, body: impl FnOnce(&[u8], &mut Context) -> i32) -> i32 {
    install_panic_hook();
    // Take the buffer out of its cell while the handler runs, so a handler can never observe
    // it borrowed; put it back afterwards so its allocation is reused.
    let buf = INPUT.take();
    let mut ctx = CONTEXT.take().unwrap_or_default();
    ctx.reset(partition as u32);
    EMITTED.set(0);
    EMITTED_BEFORE_CURRENT.set(0);
    let len = (len.max(0) as usize).min(buf.len());
    let rc = body(&buf[..len], &mut ctx);
    CONTEXT.set(Some(ctx));
    INPUT.set(buf);
    CURRENT.set(-1);
    rc
}

fn malformed(e: impl std::fmt::Display) -> ! {
    let msg = e.to_string();
    log(Level::Error, &msg);
    panic!("{msg}")
}

/// Reports a handler error for `offset` and returns [`HANDLE_FAILED`].
fn report(offset: i64, e: &crate::Error) -> i32 {
    fail(offset, e.message());
    HANDLE_FAILED
}

/// Calls `f` for every record in `[start, end)` of the batches in `buf`.
pub(crate) fn for_each_record(
    buf: &[u8],
    partition: u32,
    start: i64,
    end: i64,
    mut f: impl FnMut(&Record<'_>) -> Result<()>,
) -> std::result::Result<(), (i64, crate::Error)> {
    for batch in BatchIter::new(buf, partition) {
        let batch = batch.unwrap_or_else(|e| malformed(e));
        if batch.is_control() || batch.last_offset() < start || batch.base_offset() >= end {
            continue;
        }
        for rec in batch.records() {
            let rec = rec.unwrap_or_else(|e| malformed(e));
            if rec.offset() < start || rec.offset() >= end {
                continue;
            }
            set_current(rec.offset());
            if let Err(e) = f(&rec) {
                return Err((rec.offset(), e));
            }
        }
    }
    Ok(())
}

/// Body of `rill_handle` for a per-record handler ([`crate::export_handler!`]).
#[doc(hidden)]
pub fn handle_records<F>(len: i32, partition: i32, start: i64, end: i64, mut f: F) -> i32
where
    F: FnMut(&Record<'_>, &mut Context) -> Result<()>,
{
    with_input(len, partition, |buf, ctx| {
        match for_each_record(buf, partition as u32, start, end, |rec| f(rec, ctx)) {
            Ok(()) => HANDLE_OK,
            Err((offset, e)) => report(offset, &e),
        }
    })
}

/// Body of `rill_handle` for a batch handler ([`crate::export_batch_handler!`]).
#[doc(hidden)]
pub fn handle_batch<F>(len: i32, partition: i32, start: i64, end: i64, mut f: F) -> i32
where
    F: FnMut(&Batch<'_>, &mut Context) -> Result<()>,
{
    with_input(len, partition, |buf, ctx| {
        let batch = Batch::new(buf, partition as u32, start, end);
        // Until the handler pulls a record, a failure is charged to the first one in range.
        set_current(batch.first_offset().unwrap_or(start));
        match f(&batch, ctx) {
            Ok(()) => HANDLE_OK,
            Err(e) => report(CURRENT.get(), &e),
        }
    })
}
