//! The host side of Rill's WebAssembly handlers: one wasmtime engine per host, a compile
//! cache, deploy-time validation, instances with limits, and the host half of the ABI
//! (`docs/abi.md`), including a minimal WASI preview1 layer.
//!
//! The scheduler hands an [`Instance`] the bytes of one or more record batches and gets an
//! [`Invocation`] back: an [`Outcome`], the records to append, the log lines. It never sees
//! a wasmtime type, and this crate parses nothing of the log beyond batch framing.
//!
//! ```no_run
//! use rill_engine::{Engine, EngineConfig, InstanceConfig, Outcome};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(EngineConfig::default())?;
//! let handler = engine.load(&std::fs::read("notifier.wasm")?)?; // validated and compiled once
//! let mut instance = handler.instantiate(InstanceConfig::new("notifier", 0))?;
//! # let batches: Vec<u8> = Vec::new();
//! let inv = instance.invoke(&batches, 0, i64::MAX); // one copy in, one call
//! match inv.outcome {
//!     Outcome::Ok => { /* append inv.emits, then commit */ }
//!     Outcome::RecordFailed { offset, .. } => { /* emits before `offset` stand */ let _ = offset; }
//!     other => eprintln!("invocation failed: {}", other.kind()),
//! }
//! # Ok(()) }
//! ```
//!
//! Concepts:
//! - [`Engine`]: owns the wasmtime engine (pooling allocator, epoch interruption, and the
//!   thread that ticks the epoch) and the linker with the host imports.
//! - [`Handler`]: a validated, compiled module, ready to instantiate cheaply
//!   (`InstancePre`). Compiled artifacts are cached on disk, so a restart does not recompile.
//! - [`Instance`]: one per (deployment, partition), with its own memory and [`Limits`]. It
//!   re-instantiates itself after a trap, since a trapped store may be inconsistent.
#![deny(missing_docs)]

mod abi;
mod cache;
mod emits;
mod error;
mod framing;
mod host;
mod instance;
mod limits;
mod outcome;
mod schema;
mod state;
mod state_key;
mod wasi;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig};

pub use emits::{Emit, EmitRef, Emits};
pub use error::{DeployError, EngineError, InstantiateError};
pub use instance::{GuestInput, Instance, InstanceConfig};
pub use limits::Limits;
pub use outcome::{Invocation, Level, LogLine, Outcome};
pub use schema::{
    DeclaredSchema, ResolveError, SCHEMA_ERR_INVALID, SCHEMA_ERR_UNAVAILABLE, SCHEMA_ERR_UNKNOWN,
    SCHEMA_SECTION, SchemaFormat, SchemaHandle, SchemaResolver, SchemaRole, SectionError,
    declared_schemas,
};
pub use state::{MAX_STATE_KEY, StateHandle, StateView, StateWrites};
pub use state_key::{KeyBytes, StateKey};

use host::HostState;

/// The ABI version this host implements (`rill_abi_version()` must return it).
pub const ABI_VERSION: i32 = 1;

/// Engine-wide settings, fixed for the life of the host.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instances that can exist at once (the pooling allocator's slots), across all
    /// deployments. Each slot reserves address space, not memory. Default 1,000.
    pub max_instances: u32,
    /// Where compiled modules are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Resolution of the CPU deadline. Default 1 ms.
    pub epoch_tick: Duration,
    /// The largest memory any instance may have, whatever its [`Limits`]. Default 1 GiB.
    pub max_memory_bytes: u64,
    /// Write `/tmp/perf-<pid>.map` so `perf` can name the functions of compiled guests
    /// (wasmtime's perfmap profiling agent). Off by default.
    pub perf_map: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_instances: 1000,
            cache_dir: None,
            epoch_tick: Duration::from_millis(1),
            max_memory_bytes: 1 << 30,
            perf_map: false,
        }
    }
}

/// One per host: the wasmtime engine, the host imports, the epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    cfg: EngineConfig,
    /// Hex digest of the engine's compatibility hash: part of every cache key, so artifacts
    /// from another wasmtime version or configuration are never loaded.
    compat: String,
    stop: Arc<AtomicBool>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts an engine: configures wasmtime, links the host imports, starts the epoch
    /// ticker thread (it stops when the last clone of the engine is dropped).
    pub fn new(cfg: EngineConfig) -> Result<Engine, EngineError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(cfg.max_instances)
            .total_memories(cfg.max_instances)
            .total_tables(cfg.max_instances)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(cfg.max_memory_bytes as usize);
        let mut wcfg = wasmtime::Config::new();
        wcfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .parallel_compilation(true);
        if cfg.perf_map {
            wcfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine =
            wasmtime::Engine::new(&wcfg).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        if let Some(dir) = &cfg.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| EngineError::CacheDir {
                path: dir.clone(),
                source,
            })?;
        }
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        wasi::add_to_linker(&mut linker).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        let compat = cache::compat_hash(&engine);
        let stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), cfg.epoch_tick, stop.clone())?;
        Ok(Engine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                cfg,
                compat,
                stop,
            }),
        })
    }

    /// Validates and compiles a module (or loads its compiled artifact from the cache).
    ///
    /// Rejects, with a message naming the problem: bytes that are not Wasm, invalid Wasm, a
    /// missing or mistyped export, a wrong ABI version, and any import the host does not
    /// grant.
    pub fn load(&self, wasm: &[u8]) -> Result<Handler, DeployError> {
        abi::check_magic(wasm)?;
        let hash = cache::sha256_hex(wasm);
        let module = self.compile(wasm, &hash)?;
        abi::load(self.clone(), module, hash)
    }

    fn compile(&self, wasm: &[u8], hash: &str) -> Result<Module, DeployError> {
        let inner = &self.inner;
        let Some(dir) = &inner.cfg.cache_dir else {
            return Module::new(&inner.engine, wasm)
                .map_err(|e| DeployError::Invalid(format!("{e:#}")));
        };
        cache::load_or_compile(&inner.engine, dir, hash, &inner.compat, wasm)
    }

    /// The configuration the engine was started with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }
}

fn spawn_ticker(
    engine: wasmtime::Engine,
    tick: Duration,
    stop: Arc<AtomicBool>,
) -> Result<(), EngineError> {
    std::thread::Builder::new()
        .name("rill-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .map(|_| ())
        .map_err(|e| EngineError::Config(format!("cannot start the epoch thread: {e}")))
}

/// What kind of module a handler is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuestKind {
    /// A core module importing only `rill` functions (e.g. `wasm32-unknown-unknown`).
    Core,
    /// A module that also imports WASI preview1 (`wasm32-wasip1`).
    Wasi,
}

/// A validated, compiled handler module. Cheap to clone; instantiate it once per partition.
#[derive(Clone)]
pub struct Handler {
    inner: Arc<abi::Loaded>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("hash", &self.inner.hash)
            .field("kind", &self.inner.kind)
            .finish_non_exhaustive()
    }
}

impl Handler {
    /// The hex SHA-256 of the module's bytes.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// Whether it is a core or a WASI module.
    pub fn target(&self) -> GuestKind {
        self.inner.kind
    }

    /// Whether the module imports the state functions (`state_get`, `state_put`,
    /// `state_scan`): its deployment then gets a durable store per partition.
    pub fn uses_state(&self) -> bool {
        self.inner.stateful
    }

    /// Whether the module imports the schema functions (`schema_get`, `schema_id`): it is a
    /// typed handler, whose instances need a [`SchemaResolver`].
    pub fn uses_schemas(&self) -> bool {
        self.inner.typed
    }

    /// Creates an instance with its own memory and limits.
    pub fn instantiate(&self, cfg: InstanceConfig) -> Result<Instance, InstantiateError> {
        Instance::new(self.clone(), cfg)
    }
}
