//! The order-confirmation notifier: for each `order_created` event on its input topic,
//! emit an email request to topic `emails`, keyed like the order so that all mail for one
//! customer stays in order on one partition.
//!
//! Input value (JSON): `{"type":"order_created","order_id":42,"email":"a@b.c","total_cents":1999}`.
//! Records of any other `type` are skipped, so the notifier can share a topic with other
//! order events.
//!
//! Parameters: `TEMPLATE` (default `order_confirmation`) picks the email template.

use rill_guest::prelude::*;

#[derive(Deserialize)]
struct Order {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    order_id: u64,
    email: String,
    total_cents: u64,
}

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let order: Order = rec.json()?;
    // Events without a type are treated as order_created, so the README's minimal events work.
    if order.kind.as_deref().is_some_and(|k| k != "order_created") {
        return Ok(());
    }
    let template = ctx
        .param("TEMPLATE")
        .unwrap_or_else(|| "order_confirmation".into());
    ctx.emit_json(
        "emails",
        rec.key(),
        &json!({
            "to": order.email,
            "template": template,
            "order_id": order.order_id,
            "total_cents": order.total_cents,
        }),
    )?;
    Ok(())
}

rill_guest::export_handler!(on_record);
