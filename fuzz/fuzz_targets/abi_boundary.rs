//! The guest-ABI boundary, from both sides.
//!
//! 1. Batch encoding: records made from the input are encoded with the log's encoder; the
//!    batch must parse, validate and give back exactly those records (what guests are fed).
//! 2. Hostile imports: a hand-written module (WAT) reads "ops" from its input and calls
//!    `rill.emit`, `log`, `fail` and `param` with the fuzzed pointers and lengths. The host
//!    must never panic: every call is either honoured within the limits or ends the
//!    invocation as a trap, and the instance works again afterwards.

#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use rill_engine::{Engine, EngineConfig, Handler, Instance, InstanceConfig, Limits, Outcome};
use rill_log::{Header, Record};

/// Ops are 36 bytes at the input buffer (address 1024): a selector word (low 2 bits: emit,
/// log, fail, param) and 8 little-endian i32 arguments, used as the import's arguments.
const WAT: &str = r#"
(module
  (import "rill" "emit" (func $emit (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "rill" "log" (func $log (param i32 i32 i32)))
  (import "rill" "fail" (func $fail (param i64 i32 i32)))
  (import "rill" "param" (func $param (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "rill_abi_version") (result i32) (i32.const 1))
  (func (export "rill_input") (param $len i32) (result i32) (i32.const 1024))
  (func (export "rill_handle") (param $len i32) (param $part i32) (param $start i64) (param $end i64) (result i32)
    (local $i i32) (local $at i32) (local $ret i32)
    (block $done
      (loop $next
        (br_if $done (i32.gt_u (i32.add (i32.mul (local.get $i) (i32.const 36)) (i32.const 36)) (local.get $len)))
        (br_if $done (i32.ge_u (local.get $i) (i32.const 64)))
        (local.set $at (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 36))))
        (block $out
          (block $b3 (block $b2 (block $b1 (block $b0
            (br_table $b0 $b1 $b2 $b3 $b3 (i32.and (i32.load (local.get $at)) (i32.const 3))))
            (drop (call $emit
              (i32.load offset=4 (local.get $at)) (i32.load offset=8 (local.get $at))
              (i32.load offset=12 (local.get $at)) (i32.load offset=16 (local.get $at))
              (i32.load offset=20 (local.get $at)) (i32.load offset=24 (local.get $at))
              (i32.load offset=28 (local.get $at)) (i32.load offset=32 (local.get $at))))
            (br $out))
            (call $log (i32.load offset=4 (local.get $at)) (i32.load offset=8 (local.get $at))
              (i32.load offset=12 (local.get $at)))
            (br $out))
            (call $fail (i64.load offset=4 (local.get $at)) (i32.load offset=12 (local.get $at))
              (i32.load offset=16 (local.get $at)))
            (local.set $ret (i32.const 1))
            (br $out))
          (drop (call $param (i32.load offset=4 (local.get $at)) (i32.load offset=8 (local.get $at))
            (i32.load offset=12 (local.get $at)) (i32.load offset=16 (local.get $at)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $ret)))
"#;

fn handler() -> &'static Handler {
    static H: OnceLock<Handler> = OnceLock::new();
    H.get_or_init(|| {
        let engine = Engine::new(EngineConfig {
            max_instances: 4,
            max_memory_bytes: 1 << 24,
            ..EngineConfig::default()
        })
        .expect("engine");
        engine.load(&wat::parse_str(WAT).expect("valid WAT")).expect("module loads")
    })
}

/// One instance per limits variant, reused across runs as the scheduler reuses them.
fn instance(variant: usize) -> std::sync::MutexGuard<'static, Instance> {
    static I: OnceLock<Vec<Mutex<Instance>>> = OnceLock::new();
    let all = I.get_or_init(|| {
        (0..2)
            .map(|v| {
                let mut cfg = InstanceConfig::new("fuzz", 0);
                cfg.params = vec![("K".into(), "value".into())];
                if v == 1 {
                    // Tight limits, to exercise the emit-limit path and an output allow-list.
                    cfg.limits = Limits { max_emit_bytes: 256, max_emits: 3, ..Limits::default() };
                    cfg.outputs = Some(vec!["out".into()]);
                }
                Mutex::new(handler().instantiate(cfg).expect("instantiate"))
            })
            .collect()
    });
    all[variant].lock().unwrap_or_else(|e| e.into_inner())
}

fn encoding_round_trip(data: &[u8]) {
    // Records: each chunk of up to 40 bytes; its first byte picks null key/value and
    // splits key from value; a second header when the chunk is long.
    let chunks: Vec<&[u8]> = data.chunks(40).take(50).collect();
    let headers: Vec<Vec<Header<'_>>> = chunks
        .iter()
        .map(|c| {
            if c.len() > 30 {
                vec![Header { key: "h", value: Some(&c[30..]) }, Header { key: "n", value: None }]
            } else {
                Vec::new()
            }
        })
        .collect();
    let records: Vec<Record<'_>> = chunks
        .iter()
        .zip(&headers)
        .enumerate()
        .map(|(i, (c, h))| {
            let flags = c.first().copied().unwrap_or(0);
            let split = (flags as usize >> 2).min(c.len());
            Record {
                key: (flags & 1 == 0).then(|| &c[..split]),
                value: (flags & 2 == 0).then(|| &c[split..]),
                headers: h,
                timestamp_ms: Some(i64::from(flags) * 1000 - 5000 + i as i64),
            }
        })
        .collect();
    if records.is_empty() {
        return;
    }
    let bytes = rill_log::batch::encode(&records, 1_700_000_000_000);
    let (batch, n) = rill_log::RecordBatch::parse(&bytes).expect("encoded batch parses");
    assert_eq!(n, bytes.len());
    batch.validate().expect("encoded batch validates");
    assert_eq!(batch.record_count() as usize, records.len());
    for (got, want) in batch.records().zip(&records) {
        let got = got.expect("record parses");
        assert_eq!(got.key, want.key);
        assert_eq!(got.value, want.value);
        assert_eq!(Some(got.timestamp_ms), want.timestamp_ms);
        let hs: Vec<Header<'_>> = got.headers.iter().collect();
        assert_eq!(hs.len(), want.headers.len());
        for (a, b) in hs.iter().zip(want.headers) {
            assert_eq!((a.key, a.value), (b.key, b.value));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    encoding_round_trip(data);
    let Some((&variant, ops)) = data.split_first() else { return };
    let variant = usize::from(variant & 1);
    let mut inst = instance(variant);
    let start = 0;
    let inv = inst.invoke(ops, start, start + 1000);
    let limits = if variant == 1 { (256, 3) } else { (16 << 20, 100_000) };
    match &inv.outcome {
        Outcome::Ok | Outcome::RecordFailed { .. } => {
            assert!(inv.emits.len() <= limits.1);
            let bytes: usize = inv
                .emits
                .iter()
                .map(|e| {
                    e.key.map_or(0, <[u8]>::len)
                        + e.value.map_or(0, <[u8]>::len)
                        + e.headers().map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len)).sum::<usize>()
                })
                .sum();
            assert!(bytes <= limits.0, "{bytes} emitted bytes over the limit");
            if variant == 1 {
                assert!(inv.emits.iter().all(|e| e.topic == "out"), "emit outside the allow-list");
            }
        }
        Outcome::Trap { .. } | Outcome::EmitLimit => assert!(inv.emits.is_empty()),
        other => panic!("unexpected outcome {other:?}"),
    }
    assert!(inv.logs.len() <= 1001);
    // Whatever happened, the instance serves the next invocation.
    let again = inst.invoke(&[], 0, 1);
    assert!(matches!(again.outcome, Outcome::Ok), "{:?}", again.outcome);
});
