//! Typed handlers (docs/benchmarks.md, "Typed handlers"): Avro decode inside a Wasm handler
//! against the same decode natively, records/s, both in this run.
//!
//! The workload is framed Avro `OrderCreated` records (examples/order-created/schemas), in
//! batches of 1,000. The guest (`tests/guests/avro-bench`) decodes each through the v1
//! reader schema into a serde struct with `rill_guest::avro` and sums `total_cents`; it runs
//! through `rill_engine` in this process with a resolver over an in-memory registry. The
//! baseline is the very same handler function compiled natively, run over the same batches
//! by `rill_guest::testing::run_batch` (the SDK's native shim answers `schema_get`). Two
//! workloads: v1 records (writer = reader: no resolution) and v2 records read as v1 (the
//! renamed field through the reader's alias, the added field skipped; since v1's fields are
//! unchanged in v2 the SDK skips the resolution step).
//!
//! Every rate is the median of its rounds; the ratio is the median of the rounds' ratios
//! (Wasm and native run back to back in each round, so both see the same machine).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rill_engine::{
    Engine, EngineConfig, InstanceConfig, Outcome, ResolveError, SchemaFormat, SchemaHandle,
    SchemaResolver,
};
use rill_guest::avro::apache_avro::{self, types::Value};
use rill_guest::prelude::*;

use crate::report::{Report, Row};
use crate::{Ctx, Progress};

const V1: &str = include_str!("../../examples/order-created/schemas/order_v1.avsc");
const V2: &str = include_str!("../../examples/order-created/schemas/order_v2.avsc");
/// Records per invocation (the host's default `max_batch_records`).
const PER_BATCH: usize = 1_000;

rill_guest::reader_schema!(
    ORDER_V1,
    "orders-value",
    "../examples/order-created/schemas/order_v1.avsc"
);

rill_guest::writer_schema!(
    ECHO,
    "avro-echo-value",
    "../tests/guests/avro-bench/echo.avsc"
);

#[derive(Deserialize, Serialize)]
struct Order {
    order_id: String,
    customer: String,
    total_cents: i64,
}

/// The guest's handler, compiled natively (tests/guests/avro-bench/src/lib.rs).
fn on_batch(batch: &Batch<'_>, ctx: &mut rill_guest::Context) -> rill_guest::Result<()> {
    let echo = ctx.param("echo").is_some();
    let (mut count, mut sum) = (0u64, 0i64);
    for rec in batch.records() {
        let o: Order = rec.decode_avro(&ORDER_V1)?;
        if echo {
            ctx.emit_avro("avro-echo", rec.key(), &ECHO, &o)?;
        }
        count += 1;
        sum = sum.wrapping_add(o.total_cents);
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&count.to_le_bytes());
    out[8..].copy_from_slice(&sum.to_le_bytes());
    ctx.emit("avro-sum", None, Some(&out))
}

/// The registry of the Wasm run: id 1 is v1, id 2 is v2.
struct Registry;

impl SchemaResolver for Registry {
    fn schema(&self, id: u32) -> Result<Arc<str>, ResolveError> {
        match id {
            1 => Ok(V1.into()),
            2 => Ok(V2.into()),
            _ => Err(ResolveError::Unknown(format!(
                "schema id {id} is not registered"
            ))),
        }
    }
    fn schema_id(&self, _: &str, _: SchemaFormat, _: &str) -> Result<u32, ResolveError> {
        Err(ResolveError::Unknown("read-only".into()))
    }
}

/// `records` framed orders of schema `id` (1: v1, 2: v2), in batches.
fn batches(records: usize, id: u32) -> Vec<Vec<u8>> {
    let (text, name) = if id == 1 {
        (V1, "customer")
    } else {
        (V2, "customer_name")
    };
    let schema = apache_avro::Schema::parse_str(text).expect("schema");
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .expect("writer");
    let values: Vec<Vec<u8>> = (0..records)
        .map(|i| {
            let mut fields = vec![
                (
                    "order_id".to_owned(),
                    Value::String(format!("order-{i:08}")),
                ),
                (
                    name.to_owned(),
                    Value::String(format!("customer-{}", i % 977)),
                ),
                ("total_cents".to_owned(), Value::Long((i % 10_000) as i64)),
            ];
            if id == 2 {
                fields.push(("currency".to_owned(), Value::String("EUR".into())));
            }
            let mut v = vec![0];
            v.extend(id.to_be_bytes());
            v.extend(
                writer
                    .write_value_to_vec(Value::Record(fields))
                    .expect("encode"),
            );
            v
        })
        .collect();
    values
        .chunks(PER_BATCH)
        .map(|chunk| {
            let recs: Vec<rill_log::Record<'_>> = chunk
                .iter()
                .map(|v| rill_log::Record {
                    value: Some(v),
                    ..Default::default()
                })
                .collect();
            rill_log::batch::encode(&recs, 0)
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(ctx: &Ctx, pb: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let q = ctx.quick;
    let records: usize = if q { 20_000 } else { 500_000 };
    let rounds = if q { 1 } else { ctx.rounds.max(9) };
    let wasm = std::fs::read(rill_tests::guests::AVRO_BENCH).context("avro-bench.wasm")?;
    let engine = Engine::new(EngineConfig {
        max_instances: 4,
        ..EngineConfig::default()
    })?;
    let handler = engine.load(&wasm)?;
    rill_guest::testing::register_schema("orders-value", V1);
    rill_guest::testing::register_schema("orders-value", V2);
    let expected_sum: i64 = (0..records).map(|i| (i % 10_000) as i64).sum();
    for (id, label) in [
        (1u32, "v1 records (no resolution)"),
        (2, "v2 records read as v1"),
    ] {
        let input = batches(records, id);
        let check = |count: u64, sum: i64| -> anyhow::Result<()> {
            anyhow::ensure!(
                count == records as u64 && sum == expected_sum,
                "decoded {count} records summing {sum}, expected {records} and {expected_sum}"
            );
            Ok(())
        };
        let mut wasm_times = Vec::new();
        let mut native_times = Vec::new();
        for round in 0..rounds {
            pb.phase(&format!("avro {label}: round {}", round + 1), 2);
            let cfg = InstanceConfig {
                schemas: Some(SchemaHandle(Arc::new(Registry))),
                ..InstanceConfig::new("avro-bench", 0)
            };
            let mut inst = handler.instantiate(cfg)?;
            // Warm the instance's schema caches, as a running deployment has them.
            let _ = inst.invoke(&input[0], 0, i64::MAX);
            let (mut count, mut sum) = (0u64, 0i64);
            let t = Instant::now();
            for b in &input {
                let inv = inst.invoke(b, 0, i64::MAX);
                anyhow::ensure!(
                    inv.outcome == Outcome::Ok,
                    "guest: {} {:?}",
                    inv.outcome,
                    inv.logs
                );
                let v = inv.emits.to_vec()[0].value.clone().unwrap_or_default();
                count += u64::from_le_bytes(v[..8].try_into()?);
                sum += i64::from_le_bytes(v[8..16].try_into()?);
            }
            wasm_times.push(t.elapsed());
            check(count, sum)?;
            pb.set(1);

            let _ = rill_guest::testing::run_batch(&input[0], 0, on_batch);
            let (mut count, mut sum) = (0u64, 0i64);
            let t = Instant::now();
            for b in &input {
                let out = rill_guest::testing::run_batch(b, 0, on_batch);
                anyhow::ensure!(out.failure.is_none(), "native: {:?}", out.failure);
                let v = out.emits[0].value.clone().unwrap_or_default();
                count += u64::from_le_bytes(v[..8].try_into()?);
                sum += i64::from_le_bytes(v[8..16].try_into()?);
            }
            native_times.push(t.elapsed());
            check(count, sum)?;
            pb.set(2);
        }
        // The machine is shared: the ratio is taken within each round (Wasm and native back
        // to back), and its median reported.
        let mut ratios: Vec<f64> = wasm_times
            .iter()
            .zip(&native_times)
            .map(|(w, n)| w.as_secs_f64() / n.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ratios.len() / 2];
        let (w, n) = (median(wasm_times), median(native_times));
        let per_s = |d: Duration| records as f64 / d.as_secs_f64();
        let setup = format!("{records} records, {PER_BATCH}/batch, median of {rounds}");
        report.push(Row::new("avro", &format!("native decode, {label}"), &setup).rate(per_s(n)));
        report.push(
            Row::new("avro", &format!("Wasm decode, {label}"), &setup)
                .rate(per_s(w))
                .target(
                    &format!("≤ 1.3× native (median of per-round ratios: {ratio:.2}×)"),
                    ratio <= 1.3,
                ),
        );
    }
    Ok(())
}
