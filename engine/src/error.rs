//! Typed errors, split by operation. Every message is one line.

/// Starting the engine failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// wasmtime rejected the configuration (for example, no room for the instance pool).
    #[error("wasm engine configuration rejected: {0}")]
    Config(String),
    /// The compile cache directory could not be created.
    #[error("compile cache dir {path}: {source}")]
    CacheDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A module was rejected at deploy. Nothing was deployed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The bytes are not a WebAssembly binary.
    #[error("not a WebAssembly module (starts with {prefix})")]
    NotWasm {
        /// The first bytes, hex-escaped for the message.
        prefix: String,
    },
    /// wasmtime could not validate or compile the module.
    #[error("invalid WebAssembly module: {0}")]
    Invalid(String),
    /// A required export is missing or has the wrong type.
    #[error(
        "missing export `{name}` (expected {expected}); is the handler built with rill-guest's export_handler!?"
    )]
    MissingExport {
        /// The export's name.
        name: &'static str,
        /// Its expected type.
        expected: &'static str,
    },
    /// The module was built for another ABI version.
    #[error("module implements Rill ABI version {found}, this host supports version {supported}")]
    AbiVersion {
        /// What `rill_abi_version()` returned.
        found: i32,
        /// What the host supports.
        supported: i32,
    },
    /// The module imports something the host does not provide.
    #[error("forbidden import `{module}.{name}`: {reason}")]
    ForbiddenImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// An import has a name the host provides but the wrong type.
    #[error("import with the wrong type: {0}")]
    ImportType(String),
    /// Instantiating the module to check it failed (for example its start function trapped,
    /// or its initial memory exceeds the engine's maximum).
    #[error("module cannot be instantiated: {0}")]
    Instantiate(String),
}

/// Creating an instance failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstantiateError {
    /// The module's initial memory (its data, its declared minimum) exceeds the memory limit.
    #[error("module needs more memory than its limit of {limit} bytes")]
    MemoryLimit {
        /// The limit.
        limit: u64,
    },
    /// Every slot of the engine's instance pool is in use.
    #[error("instance pool exhausted ({0})")]
    PoolExhausted(String),
    /// Any other instantiation failure, such as a trap in a start function.
    #[error("instantiation failed: {0}")]
    Other(String),
}
