//! The compile cache: precompiled artifacts on disk, keyed by the module's SHA-256 and the
//! engine's compatibility hash, so a restart deserializes (~50 µs) instead of recompiling
//! (~20 ms per module).

use std::hash::{Hash, Hasher};
use std::path::Path;

use sha2::{Digest, Sha256};
use wasmtime::Module;

use crate::DeployError;

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short, stable digest of everything that makes an artifact loadable by this engine
/// (wasmtime version, compiler settings, target).
pub(crate) fn compat_hash(engine: &wasmtime::Engine) -> String {
    // SipHash with fixed keys: stable across runs of one binary. If a new Rust changes it,
    // the only effect is a cache miss.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

pub(crate) fn load_or_compile(
    engine: &wasmtime::Engine,
    dir: &Path,
    hash: &str,
    compat: &str,
    wasm: &[u8],
) -> Result<Module, DeployError> {
    let path = dir.join(format!("{hash}-{compat}.cwasm"));
    // Read into memory rather than `deserialize_file`: that one maps the file, and a file
    // truncated under the mapping (by anyone) would kill the host with SIGBUS.
    if let Ok(bytes) = std::fs::read(&path) {
        // SAFETY: deserializing runs the artifact's machine code later, so it must come from
        // a trusted compile. This file is one this engine wrote (the name carries the
        // module's hash and the engine's compatibility hash, and wasmtime checks its own
        // header and version); anyone able to replace it could as well replace the host
        // binary.
        match unsafe { Module::deserialize(engine, &bytes) } {
            Ok(m) => return Ok(m),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cached artifact: {e:#}")
            }
        }
    }
    let module = Module::new(engine, wasm).map_err(|e| DeployError::Invalid(format!("{e:#}")))?;
    // A failure to cache is not a failure to deploy: log it and carry on.
    if let Err(e) = store(&module, dir, &path) {
        tracing::warn!(path = %path.display(), "cannot cache compiled module: {e:#}");
    }
    Ok(module)
}

/// Writes the artifact atomically (temp file then rename), so a crash never leaves a torn
/// artifact under the final name.
fn store(module: &Module, dir: &Path, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = module.serialize()?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().unwrap_or_default().display(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
