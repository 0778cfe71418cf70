//! Durable state (docs/benchmarks.md, "Durable state"), each figure against its baseline in
//! the same run:
//!
//! 1. **get+put in the guest** (`tests/guests/state-bench`, through `rill_engine` in this
//!    process): per record one `get` and one `put` of an 8-byte key drawn from 100,000 (and
//!    then from 1,000), the value 16 bytes, over a store that already holds every key. The
//!    same guest with `mode=none` does the same work without the state calls; the difference
//!    per record is the cost of a get+put. Baselines: the same get+insert on a native
//!    `BTreeMap` (`Vec<u8>` keys, and `StateKey`s), and the engine's own structures
//!    (`StateWrites` over the store) without Wasm.
//! 2. **One key updated per record, end to end**: a host drains the same keyed records with
//!    the stateless filter, with `order-totals` (JSON, `get_json` + `put_json`) and with the
//!    state-bench guest (raw 16-byte values); records/s.
//! 3. **Restore of 1,000,000 keys** through a host: the state-bench guest writes 1,000,000
//!    distinct keys, the host is restarted, and the worker's `state restored` line gives the
//!    time, from the changelog alone (snapshot deleted) and from the snapshot (empty tail).
//!    Baseline: a raw sequential read of the changelog's segment files (and of the snapshot).
//!
//! Every figure is the median of its rounds (the machine may be shared).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use rill_engine::{
    Engine, EngineConfig, InstanceConfig, KeyBytes, Outcome, StateHandle, StateKey, StateView,
};
use serde_json::{Value, json};

use crate::host::Host;
use crate::report::{Report, Row};
use crate::workload::{self, poll};
use crate::{Ctx, Progress};

/// Keys the engine figure draws from.
const KEY_SPACE: u64 = 100_000;
/// Records per invocation (the host's default `max_batch_records`).
const PER_BATCH: u64 = 1_000;

/// The engine's view of the committed state, as `runtime`'s `PartitionStore` keeps it (that
/// one is `pub(crate)`): a `BTreeMap` of [`StateKey`]s behind a `RwLock`, updated in place
/// once an invocation's writes are "durable".
#[derive(Debug, Default)]
struct Store(RwLock<BTreeMap<StateKey, Vec<u8>>>);

impl StateView for Store {
    fn get(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) {
        f(self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(KeyBytes::new(key))
            .map(Vec::as_slice))
    }

    fn scan(&self, from: &[u8], to: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
        use std::ops::Bound;
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        let upper = to.map_or(Bound::Unbounded, |t| Bound::Excluded(KeyBytes::new(t)));
        for (k, v) in map.range::<KeyBytes, _>((Bound::Included(KeyBytes::new(from)), upper)) {
            if !f(k.as_bytes(), v) {
                return;
            }
        }
    }
}

impl Store {
    /// `PartitionStore::apply`: values replaced in place, new keys inserted.
    fn apply(&self, writes: &rill_engine::StateWrites) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        for (k, v) in writes.iter() {
            match v {
                Some(v) => match map.get_mut(KeyBytes::new(k)) {
                    Some(old) => {
                        old.clear();
                        old.extend_from_slice(v);
                    }
                    None => {
                        map.insert(StateKey::new(k), v.to_vec());
                    }
                },
                None => {
                    map.remove(KeyBytes::new(k));
                }
            }
        }
    }
}

/// The key of record `i`: 8 bytes, drawn from `space` keys by a fixed permutation.
fn key(i: u64, space: u64) -> [u8; 8] {
    let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) % space;
    let mut out = *b"k0000000";
    out[1..].copy_from_slice(format!("{k:07}").as_bytes());
    out
}

fn value16(count: u64, sum: u64) -> Vec<u8> {
    let mut v = count.to_le_bytes().to_vec();
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

fn decode16(v: Option<&[u8]>) -> (u64, u64) {
    match v {
        Some(v) if v.len() == 16 => (
            u64::from_le_bytes(v[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(v[8..].try_into().expect("8 bytes")),
        ),
        _ => (0, 0),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Figure 1: ns per get+put in the guest, against native: with 100,000 keys (the store
/// larger than the L2 cache, so the map's lookups dominate) and with 1,000 (in cache, so the
/// engine's own cost shows).
pub fn engine_ops(ctx: &Ctx, pb: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let wasm = std::fs::read(rill_tests::guests::STATE_BENCH).context("state-bench.wasm")?;
    let engine = Engine::new(EngineConfig {
        max_instances: 4,
        ..EngineConfig::default()
    })?;
    let handler = engine.load(&wasm)?;
    for space in [KEY_SPACE, 1_000] {
        ops_at(ctx, pb, report, &handler, space)?;
    }
    Ok(())
}

fn ops_at(
    ctx: &Ctx,
    pb: &Progress,
    report: &mut Report,
    handler: &rill_engine::Handler,
    space: u64,
) -> anyhow::Result<()> {
    let q = ctx.quick;
    let records: u64 = if q { 20_000 } else { 1_000_000 };
    let rounds = if q { 1 } else { ctx.rounds.max(5) };
    // 8-byte keys, 8-byte values (the guest adds their length to its sum).
    let keys: Vec<[u8; 8]> = (0..records).map(|i| key(i, space)).collect();
    let batches: Vec<Vec<u8>> = keys
        .chunks(PER_BATCH as usize)
        .map(|chunk| {
            let recs: Vec<rill_log::Record<'_>> = chunk
                .iter()
                .map(|k| rill_log::Record {
                    key: Some(k),
                    value: Some(b"12345678"),
                    ..Default::default()
                })
                .collect();
            rill_log::batch::encode(&recs, 0)
        })
        .collect();
    let initial_vec: BTreeMap<Vec<u8>, Vec<u8>> = (0..space)
        .map(|k| {
            let mut key = *b"k0000000";
            key[1..].copy_from_slice(format!("{k:07}").as_bytes());
            (key.to_vec(), value16(0, 0))
        })
        .collect();
    let initial: BTreeMap<StateKey, Vec<u8>> = initial_vec
        .iter()
        .map(|(k, v)| (StateKey::new(k), v.clone()))
        .collect();

    let instance = |mode: &str, store: &Arc<Store>| {
        let mut cfg = InstanceConfig::new("state-bench", 0);
        cfg.params = vec![("mode".into(), mode.into())];
        cfg.state = Some(StateHandle(store.clone()));
        handler.instantiate(cfg)
    };

    // One pass of the guest over every batch: (invoke time, apply time), summed.
    let guest_pass = |mode: &str| -> anyhow::Result<(Duration, Duration)> {
        let store = Arc::new(Store(RwLock::new(initial.clone())));
        let mut inst = instance(mode, &store)?;
        let (mut invoke, mut apply) = (Duration::ZERO, Duration::ZERO);
        for b in &batches {
            let t = Instant::now();
            let inv = inst.invoke(b, 0, i64::MAX);
            invoke += t.elapsed();
            anyhow::ensure!(inv.outcome == Outcome::Ok, "{:?}", inv.outcome);
            let t = Instant::now();
            store.apply(&inv.state);
            apply += t.elapsed();
        }
        if mode == "get-put" {
            let total: u64 = store
                .0
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .map(|v| decode16(Some(v)).0)
                .sum();
            anyhow::ensure!(total == records, "guest counted {total} of {records}");
        }
        Ok((invoke, apply))
    };
    // The same get + insert natively, on a `BTreeMap<Vec<u8>, Vec<u8>>` holding the same
    // keys, keys taken from the same array.
    let native_pass = || -> Duration {
        let mut map = initial_vec.clone();
        let t = Instant::now();
        for k in &keys {
            let (c, s) = decode16(map.get(&k[..]).map(Vec::as_slice));
            let v = std::hint::black_box(value16(c + 1, s + 8));
            match map.get_mut(&k[..]) {
                Some(old) => {
                    old.clear();
                    old.extend_from_slice(&v);
                }
                None => {
                    map.insert(k.to_vec(), v);
                }
            }
        }
        let e = t.elapsed();
        std::hint::black_box(&map);
        e
    };
    // The same on a map of `StateKey`s (the store's own map type).
    let native_keyed_pass = || -> Duration {
        let mut map = initial.clone();
        let t = Instant::now();
        for k in &keys {
            let k = KeyBytes::new(k);
            let (c, s) = decode16(map.get(k).map(Vec::as_slice));
            let v = std::hint::black_box(value16(c + 1, s + 8));
            match map.get_mut(k) {
                Some(old) => {
                    old.clear();
                    old.extend_from_slice(&v);
                }
                None => {
                    map.insert(StateKey::new(k.as_bytes()), v);
                }
            }
        }
        let e = t.elapsed();
        std::hint::black_box(&map);
        e
    };
    // The engine's structures without Wasm: per record, the overlay then the view, a put
    // into a fresh `StateWrites` per 1,000 records (applied to the store, untimed).
    let structures_pass = || -> Duration {
        let store = Store(RwLock::new(initial.clone()));
        let mut elapsed = Duration::ZERO;
        for chunk in keys.chunks(PER_BATCH as usize) {
            let t = Instant::now();
            let mut writes = rill_engine::StateWrites::default();
            for k in chunk {
                let (c, s) = match writes.get(k) {
                    Some(v) => decode16(v),
                    None => {
                        let mut got = (0, 0);
                        store.get(k, &mut |v| got = decode16(v));
                        got
                    }
                };
                writes.put(k, Some(&value16(c + 1, s + 8)));
            }
            elapsed += t.elapsed();
            store.apply(&writes);
        }
        elapsed
    };

    let per = |d: Duration| d.as_nanos() as f64 / records as f64;
    let (mut with, mut without, mut apply, mut native, mut keyed, mut structures) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for round in 1..=rounds {
        pb.phase(
            &format!("state: engine ops, {space} keys, round {round} of {rounds}"),
            0,
        );
        let (i, a) = guest_pass("get-put")?;
        with.push(per(i));
        apply.push(per(a));
        without.push(per(guest_pass("none")?.0));
        native.push(per(native_pass()));
        keyed.push(per(native_keyed_pass()));
        structures.push(per(structures_pass()));
    }
    let (with, without, apply, native, keyed, structures) = (
        median(with),
        median(without),
        median(apply),
        median(native),
        median(keyed),
        median(structures),
    );
    let op = with - without;
    let setup = format!(
        "{records} records in invocations of {PER_BATCH}, 8 B keys drawn from {space} \
         (all present), 16 B values, median of {rounds}"
    );
    report.push(
        Row::new(
            "state",
            "get+put in the guest (with state − mode=none)",
            &setup,
        )
        .value(format!(
            "{op:.0} ns/op ({with:.0} − {without:.0} ns/record)"
        ))
        .target("≤ 200 ns", op <= 200.0),
    );
    report.push(
        Row::new(
            "state",
            "  baseline: native get+insert, BTreeMap<Vec<u8>, Vec<u8>> (BTreeMap<StateKey, _>)",
            &setup,
        )
        .value(format!("{native:.0} ns/op ({keyed:.0} ns/op)")),
    );
    report.push(
        Row::new(
            "state",
            "  breakdown: StateWrites over the store, no Wasm",
            &setup,
        )
        .value(format!("{structures:.0} ns/op")),
    );
    report.push(
        Row::new(
            "state",
            "  breakdown: apply to the store (host side)",
            &setup,
        )
        .value(format!("{apply:.0} ns/key")),
    );
    Ok(())
}

/// Records `from..to` keyed `user-NNNNN` (as order-totals' customers), record `i` to
/// partition `i % partitions`; values as the throughput run's.
fn keyed_body(from: u64, to: u64, partitions: u32, key: &dyn Fn(u64) -> String) -> Value {
    let records: Vec<Value> = (from..to)
        .map(|i| {
            json!({"key": key(i), "value": workload::value(i),
                   "partition": (i % u64::from(partitions)) as u32})
        })
        .collect();
    json!({ "records": records })
}

fn produce_keyed(
    c: &rill_runtime::admin::client::Client,
    topic: &str,
    n: u64,
    partitions: u32,
    key: &dyn Fn(u64) -> String,
    pb: &Progress,
) -> anyhow::Result<()> {
    let per_request = (PER_BATCH * u64::from(partitions)).min(n.max(1));
    let path = format!("/v1/topics/{topic}/records");
    let mut from = 0;
    while from < n {
        let to = (from + per_request).min(n);
        let _: Value = c.post(&path, &keyed_body(from, to, partitions, key))?;
        pb.set(to);
        from = to;
    }
    Ok(())
}

fn deploy(
    c: &rill_runtime::admin::client::Client,
    wasm: &[u8],
    name: &str,
    topic: &str,
    outputs: &[&str],
    paused: bool,
) -> anyhow::Result<()> {
    let _: Value = c
        .post(
            "/v1/deployments",
            &json!({
                "name": name,
                "topic": topic,
                "from": {"kind": "earliest"},
                "outputs": outputs,
                "paused": paused,
                "wasm_b64": base64::engine::general_purpose::STANDARD.encode(wasm),
            }),
        )
        .with_context(|| format!("cannot deploy {name}"))?;
    Ok(())
}

/// Resumes `name` and waits until it handled all `n` records; the elapsed time.
fn drain(
    c: &rill_runtime::admin::client::Client,
    pb: &Progress,
    name: &str,
    n: u64,
    pause: bool,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let _: Value = c.post(&format!("/v1/deployments/{name}/resume"), &json!({}))?;
    let info = poll(
        Duration::from_secs(900),
        Duration::from_millis(2),
        "a deployment to drain its topic",
        || {
            let i = workload::info(c, name)?;
            pb.set(i.records_in);
            Ok((i.lag == 0 && i.records_in >= n).then_some(i))
        },
    )?;
    let elapsed = t.elapsed();
    anyhow::ensure!(
        info.errors == 0 && info.dead_lettered == 0,
        "{name}: {} errors, {} dead-lettered: {:?}",
        info.errors,
        info.dead_lettered,
        info.last_error
    );
    if pause {
        let _: Value = c.post(&format!("/v1/deployments/{name}/pause"), &json!({}))?;
    }
    Ok(elapsed)
}

/// Figure 2: records/s of handlers updating one key per record against the filter.
pub fn end_to_end(ctx: &Ctx, pb: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let n = (ctx.records / 2).max(1_000);
    let partitions = ctx.partitions;
    let dir = ctx.tmp.path().join("state-e2e");
    let host = Host::start(&ctx.bin, &dir)?;
    let c = host.client();
    workload::create_topic(&c, "orders", partitions, "never")?;
    workload::create_topic(&c, "blue", 1, "never")?;
    pb.phase("state: producing keyed records", n);
    let user = |i: u64| format!("user-{:05}", i % KEY_SPACE);
    produce_keyed(&c, "orders", n, partitions, &user, pb)?;
    let guests: [(&str, Vec<u8>, &[&str]); 3] = [
        ("filter", ctx.wasm.clone(), &["blue"]),
        (
            "order-totals",
            std::fs::read(rill_tests::guests::ORDER_TOTALS)?,
            &[],
        ),
        (
            "state-bench",
            std::fs::read(rill_tests::guests::STATE_BENCH)?,
            &[],
        ),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); guests.len()];
    for round in 1..=ctx.rounds {
        for (g, (name, wasm, outputs)) in guests.iter().enumerate() {
            let dep = format!("{name}-{round}");
            deploy(&c, wasm, &dep, "orders", outputs, true)?;
            pb.phase(
                &format!("state: {name}, round {round} of {}", ctx.rounds),
                n,
            );
            let d = drain(&c, pb, &dep, n, true)?;
            rates[g].push(n as f64 / d.as_secs_f64());
        }
    }
    let setup = format!(
        "{n} keyed records (100 B JSON, keys from {KEY_SPACE}), {partitions} partitions, \
         median of {}",
        ctx.rounds
    );
    let filter = median(rates[0].clone());
    report.push(Row::new("state", "filter, stateless (baseline)", &setup).rate(filter));
    for (g, figure) in [
        (1, "order-totals: get_json + put_json per record"),
        (2, "state-bench: get + put (16 B) per record"),
    ] {
        let r = median(rates[g].clone());
        report.push(Row::new("state", figure, &setup).value(format!(
            "{} ({:+.1} % vs filter)",
            crate::report::rate(r),
            (r / filter - 1.0) * 100.0
        )));
    }
    Ok(())
}

/// Every file under `dir` whose name ends with `suffix`, recursively.
fn files_under(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            files_under(&p, suffix, out)?;
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads `files` sequentially in 4 MiB steps; bytes and seconds.
fn raw_read(files: &[PathBuf]) -> anyhow::Result<(u64, f64)> {
    use std::io::Read;
    let mut buf = vec![0u8; 4 << 20];
    let mut bytes = 0u64;
    let t = Instant::now();
    for f in files {
        let mut file = std::fs::File::open(f)?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    Ok((bytes, t.elapsed().as_secs_f64()))
}

/// The `elapsed_ms` and `keys` of the last `state restored` line in the host's log.
fn restored_line(log: &Path, after: usize) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .get(after..)?
        .lines()
        .rfind(|l| l.contains("state restored"))?;
    // Without the terminal colours tracing may add around field names.
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(ch);
        }
    }
    let line = plain.as_str();
    let field = |name: &str| -> Option<u64> {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((
        field("elapsed_ms")?,
        field("keys")?,
        field("from_snapshot")?,
    ))
}

/// Figure 3: restore of 1,000,000 keys through a host restart.
pub fn restore(ctx: &Ctx, pb: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let q = ctx.quick;
    let n: u64 = if q { 20_000 } else { 1_000_000 };
    let rounds = if q { 1 } else { ctx.rounds.max(3) };
    let dir = ctx.tmp.path().join("state-restore");
    let mut host = Host::start(&ctx.bin, &dir)?;
    let c = host.client();
    workload::create_topic(&c, "keys", 1, "never")?;
    pb.phase("state: producing distinct keys", n);
    produce_keyed(&c, "keys", n, 1, &|i| format!("k{i:07}"), pb)?;
    let wasm = std::fs::read(rill_tests::guests::STATE_BENCH)?;
    deploy(&c, &wasm, "restore", "keys", &[], true)?;
    pb.phase("state: writing the keys", n);
    drain(&c, pb, "restore", n, false)?;
    host.stop()?;
    let mut snapshots = Vec::new();
    files_under(&dir.join("state"), ".snapshot", &mut snapshots)?;
    let mut segments = Vec::new();
    files_under(&dir, ".log", &mut segments)?;
    segments.retain(|p| p.to_string_lossy().contains("restore.state"));
    anyhow::ensure!(!segments.is_empty(), "no changelog segments under {dir:?}");

    let log = dir.with_extension("host.log");
    let restart = |host: &mut Host, drop_snapshot: bool| -> anyhow::Result<(u64, u64, u64)> {
        if drop_snapshot {
            for s in &snapshots {
                let _ = std::fs::remove_file(s);
            }
        }
        let at = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        host.set_log_filter("warn,rill_runtime::scheduler=info");
        host.spawn()?;
        let r = poll(
            Duration::from_secs(300),
            Duration::from_millis(5),
            "the state restored line",
            || Ok(restored_line(&log, at)),
        )?;
        host.stop()?;
        anyhow::ensure!(r.1 == n, "restored {} keys, expected {n}", r.1);
        Ok(r)
    };
    let (mut changelog, mut snapshot, mut raw, mut raw_snap) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        pb.phase(&format!("state: restores, round {round} of {rounds}"), 0);
        raw.push(raw_read(&segments)?);
        let r = restart(&mut host, true)?;
        anyhow::ensure!(r.2 == 0, "restored from a snapshot that was deleted");
        changelog.push(r.0 as f64);
        // The clean stop after it wrote a snapshot of every key.
        raw_snap.push(raw_read(&snapshots)?);
        let r = restart(&mut host, false)?;
        anyhow::ensure!(
            r.2 == n,
            "restored {} keys from the snapshot, expected {n}",
            r.2
        );
        snapshot.push(r.0 as f64);
    }
    let setup = format!("{n} distinct 8 B keys, 16 B values, 1 partition, median of {rounds}");
    let raw_row = |reads: Vec<(u64, f64)>| {
        let bytes = reads[0].0;
        let secs = median(reads.iter().map(|r| r.1).collect());
        let mib = bytes as f64 / f64::from(1 << 20);
        format!(
            "{mib:.1} MiB in {:.3} s ({:.0} MiB/s, page cache)",
            secs,
            mib / secs
        )
    };
    let (cl, sn) = (median(changelog), median(snapshot));
    report.push(
        Row::new("state", "restore from the changelog only", &setup)
            .value(format!("{:.2} s", cl / 1000.0))
            .target("≤ 2 s", cl <= 2000.0),
    );
    report.push(
        Row::new("state", "  baseline: raw read of its segments", &setup).value(raw_row(raw)),
    );
    report.push(
        Row::new("state", "restore from a snapshot, empty tail", &setup)
            .value(format!("{:.2} s", sn / 1000.0))
            .target("≤ 2 s", sn <= 2000.0),
    );
    report.push(
        Row::new("state", "  baseline: raw read of the snapshot", &setup).value(raw_row(raw_snap)),
    );
    Ok(())
}
