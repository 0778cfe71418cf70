//! The engine's costs, each against its baseline in the same run (docs/benchmarks.md):
//!
//! - `filter/native` vs `filter/wasm`: the reference filter (forward records containing
//!   "blue") over 1,000,000 JSON records of ~100 B in batches of 1,000. Natively, the same
//!   code: the guest SDK's batch walker and the filter's function compiled for the host,
//!   fed by the same copy of the same batch bytes, emitting into host-side buffers. In Wasm,
//!   `examples/filter` through `Instance::invoke`, epoch interruption on.
//! - `invoke/empty`: the fixed cost of one invocation (empty input).
//! - `instantiate/cached`: creating an instance of a loaded module (pooling allocator).
//! - `load/from_cache`: `Engine::load` of a module whose artifact is in the compile cache.
//!
//! Run: `cargo bench -p rill-engine --bench engine`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memchr::memmem::Finder;
use rill_engine::{Engine, EngineConfig, InstanceConfig};
use rill_guest::prelude::*;
use rill_guest::testing::{self, BatchBuilder};

const RECORDS: usize = 1_000_000;
const PER_BATCH: usize = 1_000;

/// The filter handler, verbatim from `examples/filter/src/lib.rs`.
fn on_batch(batch: &Batch<'_>, ctx: &mut Context) -> Result<()> {
    let finder = Finder::new(b"blue");
    for rec in batch.records() {
        if finder.find(rec.value_bytes()).is_some() {
            ctx.forward("blue", &rec)?;
        }
    }
    Ok(())
}

/// Builds `examples/filter` with the toolchain script (a no-op when it is up to date).
fn filter_wasm() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf();
    let target_dir = root.join("target/wasm");
    let status = Command::new("bash")
        .arg(root.join("scripts/wasm-build.sh"))
        .args(["--target", "wasm32-unknown-unknown", "--target-dir"])
        .arg(&target_dir)
        .args(["--", "--manifest-path"])
        .arg(root.join("examples/Cargo.toml"))
        .args(["-p", "filter"])
        .status()
        .expect("run scripts/wasm-build.sh");
    assert!(
        status.success(),
        "building examples/filter failed; run scripts/wasm-build.sh --setup"
    );
    let path: PathBuf = target_dir.join("wasm32-unknown-unknown/release/filter.wasm");
    std::fs::read(&path).expect("filter.wasm")
}

/// 1,000 batches of 1,000 JSON records of about 100 bytes; one in ten mentions "blue".
fn batches() -> Vec<Vec<u8>> {
    let colours = [
        "red", "green", "amber", "violet", "black", "white", "grey", "pink", "teal",
    ];
    (0..RECORDS / PER_BATCH)
        .map(|b| {
            let mut builder = BatchBuilder::new((b * PER_BATCH) as i64);
            for i in 0..PER_BATCH {
                let n = b * PER_BATCH + i;
                let colour = if n.is_multiple_of(10) { "blue" } else { colours[n % colours.len()] };
                let value = format!(
                    r#"{{"id":{n:>8},"user":"u{:05}","colour":"{colour:<6}","qty":{:>3},"note":"lorem ipsum"}}"#,
                    n % 10_007,
                    n % 997
                );
                builder.push(Some(format!("k{n}").as_bytes()), Some(value.as_bytes()));
            }
            builder.finish()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = batches();
    let value_bytes: usize = data.iter().map(Vec::len).sum::<usize>() / RECORDS;
    eprintln!(
        "{RECORDS} records in {} batches, {value_bytes} B per record on the wire",
        data.len()
    );
    let wasm = filter_wasm();

    let engine = Engine::new(EngineConfig {
        max_instances: 16,
        ..EngineConfig::default()
    })
    .expect("engine");
    let handler = engine.load(&wasm).expect("load filter");
    let mut instance = handler
        .instantiate(InstanceConfig::new("bench", 0))
        .expect("instantiate");

    // The two sides must agree before their speed means anything.
    let native_emits: usize = data
        .iter()
        .map(|b| testing::run_batch(b, 0, on_batch).emits.len())
        .sum();
    let wasm_emits: usize = data
        .iter()
        .map(|b| instance.invoke(b, 0, i64::MAX).emits.len())
        .sum();
    assert_eq!(native_emits, wasm_emits);
    assert_eq!(native_emits, RECORDS / 10);

    let mut g = c.benchmark_group("filter");
    g.sample_size(10)
        .throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("native", |b| {
        b.iter(|| {
            for batch in &data {
                black_box(testing::run_batch(batch, 0, on_batch));
            }
        })
    });
    g.bench_function("wasm", |b| {
        b.iter(|| {
            for batch in &data {
                black_box(instance.invoke(batch, 0, i64::MAX));
            }
        })
    });
    g.finish();

    c.bench_function("invoke/empty", |b| {
        b.iter(|| black_box(instance.invoke(&[], 0, i64::MAX)))
    });
    c.bench_function("instantiate/cached", |b| {
        b.iter(|| {
            black_box(
                handler
                    .instantiate(InstanceConfig::new("bench", 1))
                    .expect("instantiate"),
            )
        })
    });

    let dir = tempfile_dir();
    let cfg = EngineConfig {
        max_instances: 16,
        cache_dir: Some(dir.clone()),
        ..EngineConfig::default()
    };
    Engine::new(cfg.clone())
        .expect("engine")
        .load(&wasm)
        .expect("populate the cache");
    let cached = Engine::new(cfg).expect("engine");
    c.bench_function("load/from_cache", |b| {
        b.iter(|| black_box(cached.load(&wasm).expect("load")))
    });
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rill-engine-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

criterion_group!(benches, bench);
criterion_main!(benches);
