//! Deduplication: skips events whose unique `event_id` was already seen, and forwards the
//! others to topic `deduped`. Delivery is at-least-once (a crash re-runs the last
//! invocation), and producers retry, so duplicates happen; a consumer that drops them by id
//! makes them harmless.
//!
//! The ids seen are kept in the partition's **durable state**: they survive restarts,
//! crashes and re-instantiation after a trap, and a record handled again after a crash finds
//! its own id only if its first run was committed (the state commits with the offset). Key
//! events by `event_id` (or by whatever groups the duplicates) so that duplicates land on the
//! same partition: state is per partition.
//!
//! With `DEDUP_TTL_MS` set, an id is forgotten that long after it was seen (by the record's
//! timestamp): a duplicate arriving later passes. Unset, ids are kept for ever.
//!
//! Input value (JSON): any object with a string or number field `event_id`.

use rill_guest::prelude::*;

#[derive(Deserialize)]
struct Event {
    event_id: serde_json::Value,
}

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let event: Event = rec.json()?;
    let id = match &event.event_id {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        other => rill_guest::bail!("event_id must be a string or a number, got {other}"),
    };
    let key = format!("seen/{id}");
    let ttl: Option<i64> = ctx.param("DEDUP_TTL_MS").and_then(|v| v.parse().ok());
    let seen_at: Option<i64> = ctx.state().get_json(key.as_bytes())?;
    let duplicate = match (seen_at, ttl) {
        (Some(at), Some(ttl)) => rec.timestamp() - at < ttl,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if duplicate {
        rill_guest::debug!(ctx, "duplicate event {id} skipped");
        return Ok(());
    }
    ctx.state().put_json(key.as_bytes(), &rec.timestamp())?;
    ctx.forward("deduped", rec)
}

rill_guest::export_handler!(on_record);

#[cfg(test)]
mod tests {
    use super::*;
    use rill_guest::testing::{self, BatchBuilder};

    #[test]
    fn a_second_event_with_the_same_id_is_skipped_even_in_a_later_run() {
        let mut b = BatchBuilder::new(0);
        b.push(None, Some(br#"{"event_id": "a"}"#));
        b.push(None, Some(br#"{"event_id": 7}"#));
        b.push(None, Some(br#"{"event_id": "a"}"#));
        let out = testing::run(&b.finish(), 0, on_record);
        assert_eq!(out.emits.len(), 2);
        let mut again = BatchBuilder::new(3);
        again.push(None, Some(br#"{"event_id": 7}"#));
        assert!(testing::run(&again.finish(), 0, on_record).emits.is_empty());
    }
}
