//! The guest of `rill-bench --only avro` (docs/benchmarks.md, "Typed handlers"): every
//! record is a framed Avro `OrderCreated` (v1 or v2), decoded through the v1 reader schema
//! into a serde struct; the batch's records and `total_cents` are summed and emitted once
//! per invocation (`avro-sum`: count and sum, u64 LE), so the work cannot be skipped.
//! `rill-bench` runs the same function natively for its baseline.
//!
//! With the parameter `echo` set, it also re-emits every order to `avro-echo` with
//! `emit_avro` and the writer schema `echo.avsc` (subject `avro-echo-value`), which tests
//! the `schema_id` import.

use rill_guest::prelude::*;

rill_guest::reader_schema!(ORDER_V1, "orders-value", "../../../examples/order-created/schemas/order_v1.avsc");

rill_guest::writer_schema!(ECHO, "avro-echo-value", "echo.avsc");

#[derive(Deserialize, Serialize)]
struct Order {
    order_id: String,
    customer: String,
    total_cents: i64,
}

fn on_batch(batch: &Batch<'_>, ctx: &mut Context) -> Result<()> {
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

rill_guest::export_batch_handler!(on_batch);
