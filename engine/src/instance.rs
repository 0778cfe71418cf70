//! Instances and invocations: one store per (deployment, partition), one call per batch.

use std::time::{Duration, Instant};

use wasmtime::{Memory, Store, Trap, TypedFunc};

use crate::host::{Abort, HostState, Scratch};
use crate::outcome::{Invocation, Level, LogLine, Outcome};
use crate::schema::SchemaHandle;
use crate::state::StateHandle;
use crate::{Handler, InstantiateError, Limits, framing, wasi};

/// What an instance is for and what it may do.
#[derive(Debug, Clone)]
pub struct InstanceConfig {
    /// Deployment name, for log context.
    pub deployment: String,
    /// The partition this instance consumes (passed to the guest with every batch).
    pub partition: u32,
    /// Deploy-time parameters (`--env K=V`): the `param` import, and the environment of a
    /// WASI module.
    pub params: Vec<(String, String)>,
    /// Topics the handler may emit to; `None` allows any topic.
    pub outputs: Option<Vec<String>>,
    /// Limits of this instance.
    pub limits: Limits,
    /// The partition's committed state, read by `state_get` and `state_scan`; `None` reads
    /// as empty (writes are still returned in [`Invocation::state`]).
    pub state: Option<StateHandle>,
    /// Where the `schema_get` and `schema_id` imports get schemas; `None`: no registry (they
    /// return an error code and log why).
    pub schemas: Option<SchemaHandle>,
}

impl InstanceConfig {
    /// A config with no parameters, any output topic and default limits.
    pub fn new(deployment: impl Into<String>, partition: u32) -> Self {
        InstanceConfig {
            deployment: deployment.into(),
            partition,
            params: Vec::new(),
            outputs: None,
            limits: Limits::default(),
            state: None,
            schemas: None,
        }
    }
}

/// A live store with the exports the host calls.
pub(crate) struct Live {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: wasmtime::Instance,
    memory: Memory,
    input: TypedFunc<i32, i32>,
    handle: TypedFunc<(i32, i32, i64, i64), i32>,
}

impl Live {
    pub(crate) fn new(handler: &Handler, cfg: &InstanceConfig) -> Result<Live, InstantiateError> {
        let loaded = &handler.inner;
        let engine = &loaded.engine.inner;
        let state = HostState::new(
            cfg.params.clone(),
            cfg.outputs.clone(),
            cfg.state.clone(),
            cfg.limits.clone(),
            engine.cfg.max_memory_bytes,
        );
        let mut state = state;
        state.schemas = cfg.schemas.clone();
        let mut store = Store::new(&engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        // Start functions and `_initialize` get the same deadline as an invocation.
        store.set_epoch_deadline(deadline_ticks(&cfg.limits, engine.cfg.epoch_tick));
        let instance = loaded.pre.instantiate(&mut store).map_err(|e| {
            let msg = format!("{e:#}");
            if store.data().limiter.hit {
                InstantiateError::MemoryLimit {
                    limit: cfg.limits.memory_bytes,
                }
            } else if msg.contains("maximum concurrent") || msg.contains("pooling") {
                InstantiateError::PoolExhausted(msg)
            } else {
                InstantiateError::Other(msg)
            }
        })?;
        let get = |store: &mut Store<HostState>, name: &str| {
            instance
                .get_export(&mut *store, name)
                .ok_or_else(|| InstantiateError::Other(format!("export `{name}` vanished")))
        };
        let memory = get(&mut store, "memory")?
            .into_memory()
            .ok_or_else(|| InstantiateError::Other("`memory` is not a memory".into()))?;
        let typed = |e: wasmtime::Error| InstantiateError::Other(format!("{e:#}"));
        let input = instance
            .get_typed_func(&mut store, "rill_input")
            .map_err(typed)?;
        let handle = instance
            .get_typed_func(&mut store, "rill_handle")
            .map_err(typed)?;
        let current = instance
            .get_typed_func::<(), i64>(&mut store, "rill_current_offset")
            .ok();
        let emits_before = instance
            .get_typed_func::<(), i32>(&mut store, "rill_emits_before_current")
            .ok();
        let state = store.data_mut();
        state.memory = Some(memory);
        state.current_offset = current;
        state.emits_before_current = emits_before;
        // WASI reactors (and some toolchains' cdylibs) run their constructors here.
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ())
                .map_err(|e| InstantiateError::Other(format!("_initialize failed: {e:#}")))?;
        }
        Ok(Live {
            store,
            instance,
            memory,
            input,
            handle,
        })
    }
}

/// Ticks of the epoch clock for a deadline: rounded up, plus one because the current tick
/// may be about to end.
fn deadline_ticks(limits: &Limits, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    (limits.cpu_time.as_nanos().div_ceil(tick) as u64).saturating_add(1)
}

/// A handler instantiated for one partition. `Send`, not `Sync`: one worker drives it.
pub struct Instance {
    handler: Handler,
    cfg: InstanceConfig,
    /// `None` after a trap: the store may be inconsistent, so the next invocation starts from
    /// a fresh instance (the guest's in-memory state is lost, as documented).
    live: Option<Live>,
    deadline: u64,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("deployment", &self.cfg.deployment)
            .field("partition", &self.cfg.partition)
            .field("live", &self.live.is_some())
            .finish_non_exhaustive()
    }
}

impl Instance {
    pub(crate) fn new(handler: Handler, cfg: InstanceConfig) -> Result<Instance, InstantiateError> {
        let live = Live::new(&handler, &cfg)?;
        let deadline = deadline_ticks(&cfg.limits, handler.inner.engine.inner.cfg.epoch_tick);
        Ok(Instance {
            handler,
            cfg,
            live: Some(live),
            deadline,
        })
    }

    /// The configuration it was created with.
    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    /// Runs the handler over `batches` (concatenated, uncompressed record batches v2, as
    /// stored), restricted to records with offsets in `[start_offset, end_offset)`.
    ///
    /// The bytes are copied into guest memory once and the guest is called once. Never
    /// panics on guest behaviour: every failure is an [`Outcome`]. A caller that can write
    /// the batches straight into guest memory (a read from the log) uses
    /// [`Instance::input`] instead and saves the copy.
    pub fn invoke(&mut self, batches: &[u8], start_offset: i64, end_offset: i64) -> Invocation {
        let mut input = self.input();
        if let Some(dst) = input.buffer(batches.len()) {
            dst[..batches.len()].copy_from_slice(batches);
        }
        input.invoke(batches.len(), start_offset, end_offset)
    }

    /// Starts an invocation whose input is written straight into the guest's memory:
    /// [`GuestInput::buffer`], fill it, then [`GuestInput::invoke`].
    pub fn input(&mut self) -> GuestInput<'_> {
        GuestInput {
            instance: self,
            started: Instant::now(),
            buf: None,
            failed: None,
        }
    }

    /// The live store, instantiating one if the last invocation trapped.
    fn live(&mut self) -> Result<&mut Live, Outcome> {
        if self.live.is_none() {
            let live = Live::new(&self.handler, &self.cfg).map_err(|e| match e {
                InstantiateError::MemoryLimit { .. } => Outcome::MemoryLimit,
                e => Outcome::Trap {
                    message: format!("cannot re-instantiate: {e}"),
                },
            })?;
            self.live = Some(live);
        }
        let live = self.live.as_mut().expect("set just above");
        live.store.data_mut().limiter.hit = false;
        live.store.set_epoch_deadline(self.deadline);
        Ok(live)
    }

    /// Asks the guest for an input buffer of `len` bytes (`rill_input`); its pointer, checked
    /// to lie inside guest memory.
    fn request_input(&mut self, len: usize) -> Result<i32, Outcome> {
        let Ok(len) = i32::try_from(len) else {
            return Err(Outcome::Trap {
                message: format!("input of {len} bytes exceeds 2 GiB"),
            });
        };
        let live = self.live()?;
        let store = &mut live.store;
        let result = live.input.call(&mut *store, len).and_then(|ptr| {
            let mem = live.memory.data_mut(&mut *store);
            match crate::host::guest_slice_mut(mem, ptr, len, "rill_input result") {
                Ok(_) => Ok(ptr),
                Err(a) => Err(store_abort(store, a)),
            }
        });
        match result {
            Ok(ptr) => Ok(ptr),
            Err(e) => {
                let state = store.data_mut();
                let outcome = classify(e, state.limiter.hit, &state.scratch);
                // A trapped store may be inconsistent; start fresh next time.
                self.live = None;
                Err(outcome)
            }
        }
    }

    /// Calls `rill_handle` on the first `len` bytes of the input buffer.
    fn handle(&mut self, len: usize, start: i64, end: i64) -> (Outcome, Scratch) {
        let partition = self.cfg.partition as i32;
        let live = match self.live() {
            Ok(live) => live,
            Err(outcome) => return (outcome, Scratch::default()),
        };
        let store = &mut live.store;
        let result = live
            .handle
            .call(&mut *store, (len as i32, partition, start, end));
        // On a record error, the failing record's own emits must not be appended (on any
        // of its tries): keep those made before it became current, if the guest says.
        let keep = match (&result, store.data().emits_before_current.clone()) {
            (Ok(1), Some(f)) => f
                .call(&mut *store, ())
                .ok()
                .and_then(|n| usize::try_from(n).ok()),
            _ => None,
        };
        let state = store.data_mut();
        wasi::flush(state);
        let mut scratch = std::mem::take(&mut state.scratch);
        if let Some(n) = keep {
            scratch.emits.truncate(n);
        }
        let outcome = match result {
            Ok(0) => Outcome::Ok,
            Ok(_) => match &scratch.failed {
                Some((offset, message)) => Outcome::RecordFailed {
                    offset: *offset,
                    message: message.clone(),
                },
                None => Outcome::Trap {
                    message: "rill_handle reported a failure without calling `fail`".into(),
                },
            },
            Err(e) => classify(e, state.limiter.hit, &scratch),
        };
        let (outcome, scratch) = match outcome {
            Outcome::RecordFailed { offset, .. } if !scratch.state.is_empty() => {
                self.state_before_failure(len, start, offset, outcome, scratch)
            }
            outcome => (outcome, scratch),
        };
        if outcome.is_invocation_failure() {
            // A trapped store may be inconsistent; start fresh next time.
            self.live = None;
        }
        (outcome, scratch)
    }

    /// A record failed in an invocation that changed state. Unlike emits, state changes
    /// cannot be told apart by record (a later record may overwrite an earlier one's), so
    /// the records before the failing one run again on their own, from the same committed
    /// state, and that run's emits and changes are the ones kept. The first run's logs stay
    /// (they say why the record failed).
    fn state_before_failure(
        &mut self,
        len: usize,
        start: i64,
        failed: i64,
        outcome: Outcome,
        mut scratch: Scratch,
    ) -> (Outcome, Scratch) {
        scratch.state.clear();
        scratch.emits.clear();
        scratch.emit_bytes = 0;
        if failed <= start {
            return (outcome, scratch);
        }
        let partition = self.cfg.partition as i32;
        let Some(live) = self.live.as_mut() else {
            return (outcome, scratch);
        };
        let store = &mut live.store;
        let again = live
            .handle
            .call(&mut *store, (len as i32, partition, start, failed));
        let state = store.data_mut();
        wasi::flush(state);
        let mut rerun = std::mem::take(&mut state.scratch);
        match again {
            Ok(0) => {
                scratch.emits = std::mem::take(&mut rerun.emits);
                scratch.state = std::mem::take(&mut rerun.state);
                (outcome, scratch)
            }
            Ok(_) => (
                Outcome::Trap {
                    message: format!(
                        "records {start}..{failed} failed when run again without record {failed} \
                         (the handler is not deterministic)"
                    ),
                },
                scratch,
            ),
            Err(e) => {
                let hit = state.limiter.hit;
                (classify(e, hit, &rerun), scratch)
            }
        }
    }
}

/// One invocation's input, written straight into the guest's memory (see
/// [`Instance::input`]).
///
/// ```no_run
/// # fn f(instance: &mut rill_engine::Instance, batches: &[u8]) {
/// let mut input = instance.input();
/// if let Some(buf) = input.buffer(batches.len()) {
///     buf[..batches.len()].copy_from_slice(batches); // or a read from the log
/// }
/// let invocation = input.invoke(batches.len(), 0, i64::MAX);
/// # }
/// ```
pub struct GuestInput<'a> {
    instance: &'a mut Instance,
    started: Instant,
    /// Pointer and length of the buffer the guest handed out last.
    buf: Option<(i32, usize)>,
    /// Why the guest could not hand out a buffer: the invocation's outcome.
    failed: Option<Outcome>,
}

impl std::fmt::Debug for GuestInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInput")
            .field("buf", &self.buf)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl GuestInput<'_> {
    /// The guest's input buffer, at least `len` bytes long (`rill_input(len)`). Asking again
    /// replaces the buffer: its earlier contents are not kept. `None` if the guest failed to
    /// provide one; [`GuestInput::invoke`] then reports why.
    pub fn buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.failed.is_some() {
            return None;
        }
        match self.instance.request_input(len) {
            Ok(ptr) => {
                self.buf = Some((ptr, len));
                self.filled(len)
            }
            Err(outcome) => {
                self.buf = None;
                self.failed = Some(outcome);
                None
            }
        }
    }

    /// The first `len` bytes of the current buffer, if it is that long.
    pub fn filled(&mut self, len: usize) -> Option<&mut [u8]> {
        let (ptr, cap) = self.buf?;
        if len > cap {
            return None;
        }
        let live = self.instance.live.as_mut()?;
        let mem = live.memory.data_mut(&mut live.store);
        crate::host::guest_slice_mut(mem, ptr, len as i32, "input").ok()
    }

    /// Calls the handler on the first `len` bytes of the buffer (concatenated, uncompressed
    /// record batches v2), restricted to records with offsets in `[start_offset,
    /// end_offset)`. Never panics on guest behaviour: every failure is an [`Outcome`].
    pub fn invoke(mut self, len: usize, start_offset: i64, end_offset: i64) -> Invocation {
        let (outcome, scratch) = match (self.failed.take(), self.buf) {
            (Some(outcome), _) => (outcome, Scratch::default()),
            (None, Some((_, cap))) if len <= cap => {
                self.instance.handle(len, start_offset, end_offset)
            }
            (None, _) => (
                Outcome::Trap {
                    message: format!("invoked on {len} bytes of input that was never provided"),
                },
                Scratch::default(),
            ),
        };
        let records_seen = match (&outcome, self.filled(len)) {
            (Outcome::Ok, Some(b)) => framing::records_in_range(b, start_offset, end_offset),
            (Outcome::RecordFailed { offset, .. }, Some(b)) => {
                framing::records_in_range(b, start_offset, end_offset.min(offset.saturating_add(1)))
            }
            _ => 0,
        };
        let mut emits = scratch.emits;
        let mut state = scratch.state;
        if outcome.is_invocation_failure() {
            emits.clear();
            state.clear();
        }
        let mut logs = scratch.logs;
        if scratch.dropped_logs > 0 {
            logs.push(LogLine {
                level: Level::Warn,
                message: format!(
                    "{} more log lines dropped (limit per invocation reached)",
                    scratch.dropped_logs
                ),
                offset: None,
            });
        }
        Invocation {
            outcome,
            emits,
            state,
            logs,
            records_seen,
            elapsed: self.started.elapsed(),
        }
    }
}

fn store_abort(store: &mut Store<HostState>, a: Abort) -> wasmtime::Error {
    let msg = match &a {
        Abort::Fault(m) => m.clone(),
        other => format!("{other:?}"),
    };
    store.data_mut().scratch.abort = Some(a);
    wasmtime::Error::msg(msg)
}

/// Tells the ways a call can fail apart: the host's own reasons first (recorded in the store
/// when an import stopped the guest), then the memory cap, then wasmtime's trap code.
fn classify(e: wasmtime::Error, memory_hit: bool, scratch: &Scratch) -> Outcome {
    match &scratch.abort {
        Some(Abort::EmitLimit) => return Outcome::EmitLimit,
        Some(Abort::Exit(code)) => return Outcome::Exit { code: *code },
        Some(Abort::Fault(m)) => return Outcome::Trap { message: m.clone() },
        None => {}
    }
    let trap = e.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return Outcome::Timeout;
    }
    if memory_hit {
        return Outcome::MemoryLimit;
    }
    let base = match trap {
        Some(t) => t.to_string(),
        None => format!("{e:#}"),
    };
    // The SDK's panic hook logs the panic message just before the trap; it says more than
    // "unreachable executed".
    let panic = scratch
        .logs
        .iter()
        .rev()
        .find(|l| l.level == Level::Error && l.message.starts_with("handler panicked"));
    let message = match panic {
        Some(p) => format!("{} ({base})", p.message),
        None => base,
    };
    Outcome::Trap { message }
}
