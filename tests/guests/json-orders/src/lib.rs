//! A JSON Schema typed handler (docs/schemas.md, "Typed handlers"). It declares `order.json`
//! as its reader schema for `json-orders-value`, so the host refuses to deploy it if a
//! registered version writes orders it cannot read, and `shipment.json` as its writer schema
//! for `json-shipments-value`. Each framed JSON order becomes a framed JSON shipment on
//! `json-shipments`, framed with the id the registry gives `shipment.json`, so Confluent's
//! `JSONDeserializer` reads it back by that id.

use rill_guest::prelude::*;

rill_guest::reader_schema!(ORDER, "json-orders-value", "order.json");
rill_guest::writer_schema!(SHIPMENT, "json-shipments-value", "shipment.json");

#[derive(Deserialize)]
struct Order {
    order_id: String,
    total_cents: i64,
}

#[derive(Serialize)]
struct Shipment<'a> {
    order_id: &'a str,
    cents: i64,
    express: bool,
}

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let order: Order = rec.decode_json_schema()?;
    let shipment = Shipment {
        order_id: &order.order_id,
        cents: order.total_cents,
        express: order.total_cents >= 10_000,
    };
    ctx.emit_json_schema("json-shipments", rec.key(), &SHIPMENT, &shipment)
}

rill_guest::export_handler!(on_record);
