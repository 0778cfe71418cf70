//! rill-engine against hostile guests (built from `tests/guests/`) and hand-written
//! modules: every misbehaviour is a clean, reported outcome of that one invocation, the
//! host never panics, and other instances are untouched.

use std::time::{Duration, Instant};

use rill_engine::{
    DeployError, Engine, EngineConfig, InstanceConfig, InstantiateError, Limits, Outcome,
};
use rill_tests::{engine, guests, handler, values};

fn with_limits(path: &str, limits: Limits) -> rill_engine::Instance {
    let mut cfg = InstanceConfig::new("hostile", 0);
    cfg.limits = limits;
    handler(path).instantiate(cfg).expect("instantiate")
}

/// A minimal valid ABI v1 module in text form, with `body` spliced in.
fn module(body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "rill" "emit" (func $emit (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "rill_input") (param i32) (result i32) i32.const 1024)
            {body})"#
    ))
    .expect("valid WAT")
}

const VERSION_1: &str = r#"(func (export "rill_abi_version") (result i32) i32.const 1)"#;
const HANDLE_OK: &str =
    r#"(func (export "rill_handle") (param i32 i32 i64 i64) (result i32) i32.const 0)"#;

fn deploy_error(wasm: &[u8]) -> String {
    engine()
        .load(wasm)
        .expect_err("must be rejected")
        .to_string()
}

#[test]
fn deploy_rejects_bytes_that_are_not_wasm() {
    let e = engine().load(b"#!/bin/sh\necho hi").unwrap_err();
    assert!(matches!(e, DeployError::NotWasm { .. }));
    assert_eq!(
        e.to_string(),
        r##"not a WebAssembly module (starts with "#!/bin/s")"##
    );
    assert!(deploy_error(b"").contains("empty"));
    assert!(deploy_error(b"\0asm\x01\0\0\0\xff").starts_with("invalid WebAssembly module"));
}

#[test]
fn deploy_rejects_an_ungranted_import_naming_it() {
    let bytes = std::fs::read(guests::BAD_IMPORT).unwrap();
    let e = deploy_error(&bytes);
    assert!(e.starts_with("forbidden import `rill.open_socket`"), "{e}");
    let e = deploy_error(
        &wat::parse_str(r#"(module (import "env" "system" (func)) (memory (export "memory") 1))"#)
            .unwrap(),
    );
    assert!(
        e.starts_with("forbidden import `env.system`: the host provides only"),
        "{e}"
    );
    let wrong_type = wat::parse_str(format!(
        r#"(module (import "rill" "log" (func (param i32)))
            (memory (export "memory") 1)
            (func (export "rill_input") (param i32) (result i32) i32.const 0)
            {VERSION_1} {HANDLE_OK})"#
    ))
    .unwrap();
    let e = deploy_error(&wrong_type);
    assert!(
        e.starts_with("import with the wrong type") && e.contains("log"),
        "{e}"
    );
    let e = deploy_error(&wat::parse_str(r#"(module (import "rill" "mem" (memory 1)))"#).unwrap());
    assert!(e.contains("`rill.mem`") && e.contains("own memory"), "{e}");
}

#[test]
fn deploy_rejects_missing_exports_and_wrong_abi_versions() {
    assert_eq!(
        deploy_error(&module(VERSION_1)),
        "missing export `rill_handle` (expected (i32, i32, i64, i64) -> (i32)); is the handler built with rill-guest's export_handler!?"
    );
    let wrong_type = r#"(func (export "rill_handle") (param i32) (result i32) i32.const 0)"#;
    assert!(
        deploy_error(&module(&format!("{VERSION_1} {wrong_type}")))
            .starts_with("missing export `rill_handle`")
    );
    let v2 = r#"(func (export "rill_abi_version") (result i32) i32.const 2)"#;
    assert_eq!(
        deploy_error(&module(&format!("{v2} {HANDLE_OK}"))),
        "module implements Rill ABI version 2, this host supports version 1"
    );
    let h = engine()
        .load(&module(&format!("{VERSION_1} {HANDLE_OK}")))
        .expect("a minimal module deploys");
    assert_eq!(h.hash().len(), 64);
}

#[test]
fn infinite_loop_times_out_and_the_instance_recovers() {
    let limits = Limits {
        cpu_time: Duration::from_millis(50),
        ..Limits::default()
    };
    let mut inst = with_limits(guests::INFINITE_LOOP, limits);
    let t = Instant::now();
    let inv = inst.invoke(&values(0, &["x"]), 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Timeout);
    assert_eq!(inv.outcome.kind(), "timeout");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "deadline not enforced: {:?}",
        t.elapsed()
    );
    // The instance re-instantiates itself and times out again, cleanly.
    assert_eq!(
        inst.invoke(&values(0, &["x"]), 0, i64::MAX).outcome,
        Outcome::Timeout
    );
    // An empty range calls the guest without records: nothing loops.
    assert_eq!(
        inst.invoke(&values(0, &["x"]), 1, i64::MAX).outcome,
        Outcome::Ok
    );
}

#[test]
fn memory_bomb_hits_the_memory_limit_and_others_are_untouched() {
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let mut bomb = with_limits(guests::MEMORY_BOMB, limits.clone());
    let mut healthy = with_limits(guests::MEMORY_BOMB, limits);
    let inv = bomb.invoke(&values(0, &["forever"]), 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::MemoryLimit);
    assert!(inv.emits.is_empty());
    // 4 MiB fits under 16 MiB, in the bomb's fresh instance and in the other one.
    for inst in [&mut bomb, &mut healthy] {
        let inv = inst.invoke(&values(0, &["4"]), 0, i64::MAX);
        assert_eq!(inv.outcome, Outcome::Ok);
        assert_eq!(inv.emits.to_vec()[0].value.as_deref(), Some(&b"4"[..]));
    }
}

#[test]
fn deep_recursion_is_a_trap() {
    let mut inst = with_limits(guests::DEEP_RECURSION, Limits::default());
    let inv = inst.invoke(&values(0, &["x"]), 0, i64::MAX);
    let Outcome::Trap { message } = &inv.outcome else {
        panic!("{:?}", inv.outcome)
    };
    assert!(message.contains("call stack exhausted"), "{message}");
}

#[test]
fn trap_guest_tells_record_errors_from_traps() {
    let mut inst = with_limits(guests::TRAP, Limits::default());
    let inv = inst.invoke(&values(0, &["ok", "fail", "ok"]), 0, i64::MAX);
    assert_eq!(
        inv.outcome,
        Outcome::RecordFailed {
            offset: 1,
            message: "asked to fail".into()
        }
    );
    assert_eq!(inv.emits.len(), 1);
    // The failing record's own emits are dropped; those of the records before it stand.
    let inv = inst.invoke(&values(0, &["ok", "emit-then-fail", "ok"]), 0, i64::MAX);
    assert_eq!(
        inv.outcome,
        Outcome::RecordFailed {
            offset: 1,
            message: "asked to fail after emitting".into()
        }
    );
    assert_eq!(inv.emits.len(), 1, "{:?}", inv.emits);
    assert_eq!(inv.emits.to_vec()[0].value.as_deref(), Some(&b"ok"[..]));
    let inv = inst.invoke(&values(0, &["log", "trap"]), 0, i64::MAX);
    let Outcome::Trap { message } = &inv.outcome else {
        panic!("{:?}", inv.outcome)
    };
    assert!(
        message.contains("handler panicked at offset 1") && message.contains("asked to trap"),
        "{message}"
    );
    assert!(
        inv.emits.is_empty(),
        "a trap discards the invocation's emits"
    );
    assert_eq!(inv.logs[0].message, "a warning");
    assert_eq!(inv.logs[0].offset, Some(0));
    // Next invocation runs on a fresh instance.
    assert_eq!(
        inst.invoke(&values(0, &["ok"]), 0, i64::MAX).outcome,
        Outcome::Ok
    );
}

#[test]
fn emit_flood_hits_the_emit_limit_without_buffering_a_gigabyte() {
    let limits = Limits {
        max_emit_bytes: 8 << 20,
        ..Limits::default()
    };
    let mut inst = with_limits(guests::EMIT_FLOOD, limits);
    let inv = inst.invoke(&values(0, &["x"]), 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::EmitLimit);
    assert!(inv.emits.is_empty());
    let limits = Limits {
        max_emits: 3,
        ..Limits::default()
    };
    let inv = with_limits(guests::EMIT_FLOOD, limits).invoke(&values(0, &["x"]), 0, i64::MAX);
    assert_eq!(inv.outcome.kind(), "emit_limit");
}

#[test]
fn huge_data_segment_is_a_clean_instantiation_error() {
    let mut cfg = InstanceConfig::new("hostile", 0);
    cfg.limits.memory_bytes = 8 << 20;
    let e = handler(guests::HUGE_DATA).instantiate(cfg).unwrap_err();
    assert!(matches!(e, InstantiateError::MemoryLimit { .. }), "{e}");
    let mut inst = with_limits(guests::HUGE_DATA, Limits::default());
    let inv = inst.invoke(&values(0, &["x"]), 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok);
    assert_eq!(inv.emits.to_vec()[0].value.as_deref(), Some(&[7u8][..]));
}

#[test]
fn outputs_restrict_emits() {
    let mut cfg = InstanceConfig::new("t", 0);
    cfg.outputs = Some(vec!["elsewhere".into()]);
    let mut inst = handler(guests::TRAP).instantiate(cfg).unwrap();
    let inv = inst.invoke(&values(0, &["x"]), 0, i64::MAX);
    let Outcome::RecordFailed { offset: 0, message } = &inv.outcome else {
        panic!("{:?}", inv.outcome)
    };
    assert!(
        message.contains("'out'") && message.contains("not an output"),
        "{message}"
    );
}

#[test]
fn hostile_pointers_are_traps_not_host_panics() {
    let cases = [
        // emit with a topic far outside memory
        r#"(drop (call $emit (i32.const 0x7fff0000) (i32.const 100) (i32.const 0) (i32.const -1) (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 0)))"#,
        // a negative length that is not the null marker
        r#"(drop (call $emit (i32.const 0) (i32.const 1) (i32.const 0) (i32.const -7) (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 0)))"#,
        // a range that wraps around the address space
        r#"(drop (call $emit (i32.const -1) (i32.const 16) (i32.const 0) (i32.const -1) (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 0)))"#,
    ];
    for body in cases {
        let wasm = module(&format!(
            r#"{VERSION_1} (func (export "rill_handle") (param i32 i32 i64 i64) (result i32) {body} i32.const 0)"#
        ));
        let mut inst = engine()
            .load(&wasm)
            .unwrap()
            .instantiate(InstanceConfig::new("t", 0))
            .unwrap();
        let inv = inst.invoke(&values(0, &["x"]), 0, i64::MAX);
        let Outcome::Trap { message } = &inv.outcome else {
            panic!("{body}: {:?}", inv.outcome)
        };
        assert!(message.contains("outside guest memory"), "{message}");
    }
    // rill_input answering with a buffer that does not fit
    let wasm = wat::parse_str(format!(
        r#"(module (memory (export "memory") 1)
            (func (export "rill_input") (param i32) (result i32) i32.const 65530)
            {VERSION_1} {HANDLE_OK})"#
    ))
    .unwrap();
    let mut inst = engine()
        .load(&wasm)
        .unwrap()
        .instantiate(InstanceConfig::new("t", 0))
        .unwrap();
    let inv = inst.invoke(&values(0, &["0123456789"]), 0, i64::MAX);
    let Outcome::Trap { message } = &inv.outcome else {
        panic!("{:?}", inv.outcome)
    };
    assert!(message.starts_with("rill_input result"), "{message}");
}

#[test]
fn compile_cache_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(guests::FILTER).unwrap();
    let cfg = EngineConfig {
        max_instances: 4,
        cache_dir: Some(dir.path().into()),
        ..EngineConfig::default()
    };
    let first = Engine::new(cfg.clone()).unwrap();
    let h1 = first.load(&bytes).unwrap();
    drop(first);
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().starts_with(h1.hash()));
    let second = Engine::new(cfg).unwrap();
    let t = Instant::now();
    let h2 = second.load(&bytes).unwrap();
    let cached = t.elapsed();
    assert_eq!(h1.hash(), h2.hash());
    let inv = h2.instantiate(InstanceConfig::new("t", 0)).unwrap().invoke(
        &values(0, &["blue"]),
        0,
        i64::MAX,
    );
    assert_eq!(inv.emits.len(), 1);
    // A corrupt artifact is ignored and replaced, not trusted.
    let path = dir.path().join(&files[0]);
    std::fs::write(&path, b"garbage").unwrap();
    let third = Engine::new(EngineConfig {
        max_instances: 4,
        cache_dir: Some(dir.path().into()),
        ..EngineConfig::default()
    })
    .unwrap();
    assert!(third.load(&bytes).is_ok());
    eprintln!("load from cache took {cached:?}");
}
