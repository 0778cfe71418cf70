//! The fulfillment enricher: maps each order to a fulfillment request on topic
//! `fulfillment`, carrying everything the warehouse consumer needs so it never has to look
//! the order up again: the items, the shipping address, and a priority derived from the
//! order's total.
//!
//! Input value (JSON):
//! `{"order_id":7,"customer":{"name":"Ada","address":{...}},"items":[{"sku":"A1","qty":2}],"total_cents":25000}`
//!
//! Parameters: `EXPRESS_CENTS` (default 20000): orders at or above it ship with priority
//! `express`, others `standard`. An order without items is a record error: it cannot be
//! fulfilled, and the host's retry/dead-letter policy takes over.

use rill_guest::prelude::*;

#[derive(Deserialize, Serialize)]
struct Item {
    sku: String,
    qty: u32,
}

#[derive(Deserialize, Serialize)]
struct Address {
    line1: String,
    city: String,
    postcode: String,
    country: String,
}

#[derive(Deserialize)]
struct Customer {
    name: String,
    address: Address,
}

#[derive(Deserialize)]
struct Order {
    order_id: u64,
    customer: Customer,
    items: Vec<Item>,
    total_cents: u64,
}

#[derive(Serialize)]
struct Fulfillment<'a> {
    order_id: u64,
    ship_to: &'a str,
    address: &'a Address,
    items: &'a [Item],
    priority: &'static str,
    /// When the order was placed (the record's timestamp), so the warehouse can measure lag.
    ordered_at_ms: i64,
}

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let order: Order = rec.json()?;
    if order.items.is_empty() {
        rill_guest::bail!("order {} has no items", order.order_id);
    }
    let express_cents = match ctx.param("EXPRESS_CENTS") {
        Some(v) => v
            .parse::<u64>()
            .map_err(|e| Error::msg(format!("EXPRESS_CENTS: {e}")))?,
        None => 20_000,
    };
    let priority = if order.total_cents >= express_cents {
        "express"
    } else {
        "standard"
    };
    let out = Fulfillment {
        order_id: order.order_id,
        ship_to: &order.customer.name,
        address: &order.customer.address,
        items: &order.items,
        priority,
        ordered_at_ms: rec.timestamp(),
    };
    // Keyed by order id so every update to one order lands on one fulfillment partition.
    let key = order.order_id.to_string();
    ctx.emit_json("fulfillment", Some(key.as_bytes()), &out)?;
    Ok(())
}

rill_guest::export_handler!(on_record);
