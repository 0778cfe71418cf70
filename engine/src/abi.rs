//! Deploy-time checks of a module against the ABI (version 1, `docs/abi.md`): magic bytes,
//! imports, exports and the ABI version the module reports.

use wasmtime::{ExternType, FuncType, InstancePre, Module, Val, ValType};

use crate::host::{self, HostState};
use crate::instance::Live;
use crate::{ABI_VERSION, DeployError, Engine, GuestKind, Handler, InstanceConfig, wasi};

/// A module that passed every check, ready to instantiate.
pub(crate) struct Loaded {
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) hash: String,
    pub(crate) kind: GuestKind,
    /// It imports the state functions.
    pub(crate) stateful: bool,
    /// It imports the schema functions.
    pub(crate) typed: bool,
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";

pub(crate) fn check_magic(wasm: &[u8]) -> Result<(), DeployError> {
    if wasm.starts_with(WASM_MAGIC) {
        return Ok(());
    }
    let prefix: String = wasm
        .iter()
        .take(8)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    let prefix = if wasm.is_empty() {
        "nothing: the file is empty".to_owned()
    } else {
        format!("\"{prefix}\"")
    };
    Err(DeployError::NotWasm { prefix })
}

fn name(v: &ValType) -> &'static str {
    match v {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "ref",
    }
}

/// A function type as `(i32, i64) -> i32`, the notation the docs use.
pub(crate) fn signature(ft: &FuncType) -> String {
    let params: Vec<_> = ft.params().map(|v| name(&v)).collect();
    let results: Vec<_> = ft.results().map(|v| name(&v)).collect();
    format!("({}) -> ({})", params.join(", "), results.join(", "))
}

/// The exports the host calls, with their types.
const EXPORTS: &[(&str, &str)] = &[
    ("rill_abi_version", "() -> (i32)"),
    ("rill_input", "(i32) -> (i32)"),
    ("rill_handle", "(i32, i32, i64, i64) -> (i32)"),
];

pub(crate) fn load(engine: Engine, module: Module, hash: String) -> Result<Handler, DeployError> {
    let mut linker = engine.inner.linker.clone();
    let mut kind = GuestKind::Core;
    let mut stateful = false;
    let mut typed = false;
    for import in module.imports() {
        let (m, n) = (import.module(), import.name());
        let forbid = |reason: String| DeployError::ForbiddenImport {
            module: m.into(),
            name: n.into(),
            reason,
        };
        let ExternType::Func(ft) = import.ty() else {
            return Err(forbid(
                "only functions are imported; the module must define its own memory".into(),
            ));
        };
        match m {
            host::MODULE => {
                if !host::IMPORTS.contains(&n) {
                    return Err(forbid(format!(
                        "not a function of Rill ABI v{ABI_VERSION} (it provides {})",
                        host::IMPORTS.join(", ")
                    )));
                }
                stateful |= host::STATE_IMPORTS.contains(&n);
                typed |= host::SCHEMA_IMPORTS.contains(&n);
            }
            wasi::MODULE => {
                kind = GuestKind::Wasi;
                if !wasi::IMPLEMENTED.contains(&n) {
                    wasi::link_stub(&mut linker, n, &ft).map_err(forbid)?;
                }
            }
            _ => {
                return Err(forbid(format!(
                    "the host provides only `{}` and `{}` imports",
                    host::MODULE,
                    wasi::MODULE
                )));
            }
        }
    }
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => {}
        _ => {
            return Err(DeployError::MissingExport {
                name: "memory",
                expected: "a memory",
            });
        }
    }
    for &(name, expected) in EXPORTS {
        match module.get_export(name) {
            Some(ExternType::Func(ft)) if signature(&ft) == expected => {}
            _ => return Err(DeployError::MissingExport { name, expected }),
        }
    }
    let pre = linker
        .instantiate_pre(&module)
        .map_err(|e| DeployError::ImportType(format!("{e:#}")))?;
    let handler = Handler {
        inner: std::sync::Arc::new(Loaded {
            engine: engine.clone(),
            pre,
            hash,
            kind,
            stateful,
            typed,
        }),
    };
    check_version(&handler)?;
    Ok(handler)
}

/// Instantiates the module once in a throwaway store and asks it for its ABI version. This
/// also proves, at deploy, that the module can be instantiated at all.
fn check_version(handler: &Handler) -> Result<(), DeployError> {
    let mut cfg = InstanceConfig::new("deploy-check", 0);
    cfg.limits.memory_bytes = handler.inner.engine.inner.cfg.max_memory_bytes;
    let mut live = Live::new(handler, &cfg).map_err(|e| DeployError::Instantiate(e.to_string()))?;
    let mut out = [Val::I32(0)];
    let f = live
        .instance
        .get_func(&mut live.store, "rill_abi_version")
        .expect("checked above");
    live.store.set_epoch_deadline(1000);
    f.call(&mut live.store, &[], &mut out)
        .map_err(|e| DeployError::Instantiate(format!("rill_abi_version() failed: {e:#}")))?;
    match out[0] {
        Val::I32(ABI_VERSION) => Ok(()),
        Val::I32(found) => Err(DeployError::AbiVersion {
            found,
            supported: ABI_VERSION,
        }),
        _ => unreachable!("type checked above"),
    }
}
