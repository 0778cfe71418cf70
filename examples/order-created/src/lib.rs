//! `order-created`: a typed handler. It declares `schemas/order_v1.avsc` as its reader
//! schema for the subject `orders-value`, so the host refuses to deploy it if a registered
//! version is one v1 cannot read, and it reads every record through v1 whatever version
//! wrote it (v2 renamed `customer` to `customer_name` and added `currency`; the alias in
//! v1 is the reader side of that rename). One JSON line per order goes to `order-lines`
//! (parameter `output`).

use rill_guest::prelude::*;

rill_guest::reader_schema!(pub ORDER_V1, "orders-value", "schemas/order_v1.avsc");

/// An order as the v1 reader schema sees it.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct OrderCreated {
    /// The order.
    pub order_id: String,
    /// Who placed it (`customer_name` in v2).
    pub customer: String,
    /// Its total, in cents.
    pub total_cents: i64,
}

/// Decodes the order through v1 and emits it as a JSON line.
pub fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let order: OrderCreated = rec.decode_avro(&ORDER_V1)?;
    let topic = ctx.param("output").unwrap_or_else(|| "order-lines".into());
    ctx.emit_json(&topic, rec.key(), &order)
}

rill_guest::export_handler!(on_record);
