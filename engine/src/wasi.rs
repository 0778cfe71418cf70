//! A minimal WASI preview1 layer, written here rather than pulled from wasmtime-wasi so
//! that it grants exactly what Rill allows and nothing else:
//!
//! - `fd_write` to fd 1 and 2 becomes handler log lines (split on newlines; stdout at info,
//!   stderr at warn); any other fd is `EBADF`.
//! - `environ_*` exposes only the deployment's parameters; `args_*` are empty.
//! - `clock_time_get`, `clock_res_get`, `random_get`, `sched_yield` work.
//! - `proc_exit` ends the invocation with a reported exit code.
//! - `fd_prestat_get` says there are no preopened directories (`EBADF`).
//! - Every other preview1 function is linked to a stub that returns `NOTCAPABLE`
//!   (filesystem and sockets) or `NOSYS` (the rest) without trapping.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, FuncType, Linker, Val, ValType};

use crate::host::{Abort, HostState, abort, guest_slice, guest_slice_mut, push_log};
use crate::outcome::{Level, LogLine};

pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;
const ENOTCAPABLE: i32 = 76;

/// The functions implemented below; every other name gets a stub.
pub(crate) const IMPLEMENTED: &[&str] = &[
    "fd_write",
    "environ_sizes_get",
    "environ_get",
    "args_sizes_get",
    "args_get",
    "clock_time_get",
    "clock_res_get",
    "random_get",
    "proc_exit",
    "sched_yield",
    "fd_prestat_get",
];

/// Links a stub for an unimplemented preview1 function, typed as the module imports it.
pub(crate) fn link_stub(
    linker: &mut Linker<HostState>,
    name: &str,
    ty: &FuncType,
) -> Result<(), String> {
    let results: Vec<ValType> = ty.results().collect();
    if !matches!(results.as_slice(), [ValType::I32]) {
        return Err(format!(
            "not a WASI preview1 function (type {})",
            crate::abi::signature(ty)
        ));
    }
    let errno = if ["fd_", "path_", "sock_", "poll_"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        ENOTCAPABLE
    } else {
        ENOSYS
    };
    linker
        .func_new(MODULE, name, ty.clone(), move |_, _, out| {
            out[0] = Val::I32(errno);
            Ok(())
        })
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

/// Runs `f` over the guest's memory; a fault becomes the trap that ends the invocation.
fn with_mem<R>(
    caller: &mut Caller<'_, HostState>,
    f: impl FnOnce(&mut [u8], &mut HostState) -> Result<R, Abort>,
) -> wasmtime::Result<R> {
    let mem = caller
        .data()
        .memory
        .expect("memory is set right after instantiation");
    let (data, state) = mem.data_and_store_mut(&mut *caller);
    f(data, state).map_err(|a| abort(caller, a))
}

fn put_u32(mem: &mut [u8], ptr: i32, v: u32, what: &str) -> Result<(), Abort> {
    guest_slice_mut(mem, ptr, 4, what)?.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn put_u64(mem: &mut [u8], ptr: i32, v: u64, what: &str) -> Result<(), Abort> {
    guest_slice_mut(mem, ptr, 8, what)?.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> wasmtime::Result<i32> {
    if fd != 1 && fd != 2 {
        return Ok(EBADF);
    }
    let bytes = with_mem(&mut caller, |mem, _| {
        let n = iovs_len
            .checked_mul(8)
            .ok_or_else(|| Abort::Fault("fd_write: too many iovecs".into()))?;
        let list = guest_slice(mem, iovs, n, "fd_write iovecs")?.to_vec();
        let mut bytes = Vec::new();
        for iov in list.chunks_exact(8) {
            let ptr = i32::from_le_bytes(iov[..4].try_into().expect("4 bytes"));
            let len = u32::from_le_bytes(iov[4..].try_into().expect("4 bytes"));
            let len =
                i32::try_from(len).map_err(|_| Abort::Fault("fd_write: iovec too long".into()))?;
            bytes.extend_from_slice(guest_slice(mem, ptr, len, "fd_write buffer")?);
        }
        put_u32(mem, nwritten, bytes.len() as u32, "fd_write nwritten")?;
        Ok(bytes)
    })?;
    let level = if fd == 1 { Level::Info } else { Level::Warn };
    let buf = {
        let s = &mut caller.data_mut().scratch;
        let buf = if fd == 1 {
            &mut s.stdout
        } else {
            &mut s.stderr
        };
        buf.extend_from_slice(&bytes);
        std::mem::take(buf)
    };
    // Complete lines become log lines; the rest waits for more output (or the end of the
    // invocation, see `flush`). A line that never ends is cut at the log line cap.
    let mut rest: &[u8] = &buf;
    while let Some(i) = rest
        .iter()
        .position(|&b| b == b'\n')
        .or((rest.len() >= 8192).then_some(8191))
    {
        push_log(&mut caller, level, &rest[..i])?;
        rest = &rest[(i + 1).min(rest.len())..];
    }
    let s = &mut caller.data_mut().scratch;
    let slot = if fd == 1 {
        &mut s.stdout
    } else {
        &mut s.stderr
    };
    slot.extend_from_slice(rest);
    Ok(SUCCESS)
}

/// Turns partial stdout/stderr lines left at the end of an invocation into log lines.
pub(crate) fn flush(state: &mut HostState) {
    let s = &mut state.scratch;
    for (buf, level) in [
        (std::mem::take(&mut s.stdout), Level::Info),
        (std::mem::take(&mut s.stderr), Level::Warn),
    ] {
        if !buf.is_empty() {
            s.logs.push(LogLine {
                level,
                message: String::from_utf8_lossy(&buf).into_owned(),
                offset: None,
            });
        }
    }
}

fn environ_sizes_get(
    mut caller: Caller<'_, HostState>,
    count_ptr: i32,
    size_ptr: i32,
) -> wasmtime::Result<i32> {
    with_mem(&mut caller, |mem, state| {
        let size: usize = state
            .params
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum();
        put_u32(
            mem,
            count_ptr,
            state.params.len() as u32,
            "environ_sizes_get",
        )?;
        put_u32(mem, size_ptr, size as u32, "environ_sizes_get")?;
        Ok(SUCCESS)
    })
}

fn environ_get(mut caller: Caller<'_, HostState>, environ: i32, buf: i32) -> wasmtime::Result<i32> {
    with_mem(&mut caller, |mem, state| {
        let mut at = buf;
        for (i, (k, v)) in state.params.iter().enumerate() {
            put_u32(
                mem,
                environ.wrapping_add(4 * i as i32),
                at as u32,
                "environ_get",
            )?;
            let entry = format!("{k}={v}\0");
            guest_slice_mut(mem, at, entry.len() as i32, "environ_get")?
                .copy_from_slice(entry.as_bytes());
            at = at.wrapping_add(entry.len() as i32);
        }
        Ok(SUCCESS)
    })
}

fn args_sizes_get(
    mut caller: Caller<'_, HostState>,
    count_ptr: i32,
    size_ptr: i32,
) -> wasmtime::Result<i32> {
    with_mem(&mut caller, |mem, _| {
        put_u32(mem, count_ptr, 0, "args_sizes_get")?;
        put_u32(mem, size_ptr, 0, "args_sizes_get")?;
        Ok(SUCCESS)
    })
}

fn args_get(_: Caller<'_, HostState>, _argv: i32, _buf: i32) -> i32 {
    SUCCESS
}

fn clock_time_get(
    mut caller: Caller<'_, HostState>,
    id: i32,
    _precision: i64,
    out: i32,
) -> wasmtime::Result<i32> {
    let now = match id {
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
        // Monotonic, process and thread CPU clocks all read the store's monotonic clock.
        1..=3 => caller.data().started.elapsed(),
        _ => return Ok(EINVAL),
    };
    with_mem(&mut caller, |mem, _| {
        put_u64(mem, out, now.as_nanos() as u64, "clock_time_get")?;
        Ok(SUCCESS)
    })
}

fn clock_res_get(mut caller: Caller<'_, HostState>, id: i32, out: i32) -> wasmtime::Result<i32> {
    if !(0..=3).contains(&id) {
        return Ok(EINVAL);
    }
    with_mem(&mut caller, |mem, _| {
        put_u64(mem, out, 1_000, "clock_res_get")?;
        Ok(SUCCESS)
    })
}

fn random_get(mut caller: Caller<'_, HostState>, buf: i32, len: i32) -> wasmtime::Result<i32> {
    with_mem(&mut caller, |mem, _| {
        fill_random(guest_slice_mut(mem, buf, len, "random_get")?);
        Ok(SUCCESS)
    })
}

/// Fills `out` from the OS's random source, falling back to std's per-process random hash
/// keys mixed with a counter (adequate for hash seeds, which is what guests use it for).
fn fill_random(out: &mut [u8]) {
    use std::io::Read;
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(out))
        .is_ok()
    {
        return;
    }
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
}

fn proc_exit(mut caller: Caller<'_, HostState>, code: i32) -> wasmtime::Error {
    abort(&mut caller, Abort::Exit(code))
}

fn sched_yield(_: Caller<'_, HostState>) -> i32 {
    SUCCESS
}

fn fd_prestat_get(_: Caller<'_, HostState>, _fd: i32, _out: i32) -> i32 {
    EBADF
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "fd_write", fd_write)?;
    linker.func_wrap(MODULE, "environ_sizes_get", environ_sizes_get)?;
    linker.func_wrap(MODULE, "environ_get", environ_get)?;
    linker.func_wrap(MODULE, "args_sizes_get", args_sizes_get)?;
    linker.func_wrap(MODULE, "args_get", args_get)?;
    linker.func_wrap(MODULE, "clock_time_get", clock_time_get)?;
    linker.func_wrap(MODULE, "clock_res_get", clock_res_get)?;
    linker.func_wrap(MODULE, "random_get", random_get)?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |caller: Caller<'_, HostState>, code: i32| -> wasmtime::Result<()> {
            Err(proc_exit(caller, code))
        },
    )?;
    linker.func_wrap(MODULE, "sched_yield", sched_yield)?;
    linker.func_wrap(MODULE, "fd_prestat_get", fd_prestat_get)?;
    let _ = ENOSYS;
    Ok(())
}
