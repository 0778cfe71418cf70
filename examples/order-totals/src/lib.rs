//! A read model, the query side of CQRS: per customer, how many orders and their total,
//! kept in durable state from `order_created` events and queried over HTTP:
//!
//! ```text
//! runtime deploy order-totals.wasm --name order-totals --topic orders
//! runtime state get order-totals c-42      # {"orders":3,"total_cents":12450}
//! curl 127.0.0.1:8080/v1/deployments/order-totals/state/c-42
//! ```
//!
//! Input value (JSON): `{"order_id": "...", "customer": "c-42", "amount_cents": 4150}`
//! (without `amount_cents`, `total_cents` is read instead),
//! keyed by customer (the key wins over the field), so one customer's events are in one
//! partition and its totals in that partition's store. The state's changes commit with the
//! offset: a record handled again after a crash does not count twice.

use rill_guest::prelude::*;

#[derive(Deserialize)]
struct OrderCreated {
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    amount_cents: Option<u64>,
    #[serde(default)]
    total_cents: Option<u64>,
}

/// The view of one customer.
#[derive(Serialize, Deserialize, Default)]
struct Totals {
    orders: u64,
    total_cents: u64,
}

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let order: OrderCreated = rec.json()?;
    let customer = match (rec.key(), &order.customer) {
        (Some(k), _) if !k.is_empty() => k.to_vec(),
        (_, Some(c)) if !c.is_empty() => c.as_bytes().to_vec(),
        _ => rill_guest::bail!("order has no customer: neither a key nor a `customer` field"),
    };
    let Some(cents) = order.amount_cents.or(order.total_cents) else {
        rill_guest::bail!("order has no amount: neither `amount_cents` nor `total_cents`");
    };
    let mut totals: Totals = ctx.state().get_json(&customer)?.unwrap_or_default();
    totals.orders += 1;
    totals.total_cents += cents;
    ctx.state().put_json(&customer, &totals)
}

rill_guest::export_handler!(on_record);

#[cfg(test)]
mod tests {
    use super::*;
    use rill_guest::testing::{self, BatchBuilder};

    #[test]
    fn totals_add_up_per_customer() {
        let mut b = BatchBuilder::new(0);
        b.push(Some(b"c1"), Some(br#"{"amount_cents": 100}"#));
        b.push(Some(b"c2"), Some(br#"{"amount_cents": 5}"#));
        b.push(Some(b"c1"), Some(br#"{"amount_cents": 250}"#));
        let out = testing::run(&b.finish(), 0, on_record);
        assert!(out.failure.is_none());
        let state = testing::state();
        assert_eq!(state[0].0, b"c1");
        assert_eq!(state[0].1, br#"{"orders":2,"total_cents":350}"#);
        assert_eq!(state[1].1, br#"{"orders":1,"total_cents":5}"#);
    }
}
