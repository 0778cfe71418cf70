//! Deduplication: skips events whose unique `event_id` was already seen, and forwards the
//! others to topic `deduped`. Delivery is at-least-once (a crash re-runs the last
//! invocation), and producers retry, so duplicates happen; a consumer that drops them by id
//! makes them harmless.
//!
//! The memory of seen ids is a bounded set of the last `DEDUP_WINDOW` ids (default 10,000),
//! evicted oldest-first. It lives in this instance's memory, so it is **per partition
//! instance**: it survives between invocations, but not a restart or a re-instantiation
//! after a trap, and it is not shared between partitions (key events by `event_id` so that
//! duplicates land on the same partition). Durable state (the ABI's reserved `state_get` /
//! `state_put`) is future work.
//!
//! Input value (JSON): any object with a string or number field `event_id`.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};

use rill_guest::prelude::*;

/// The last `cap` ids, with O(1) membership and oldest-first eviction.
struct Window {
    cap: usize,
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Window {
    /// Records `id`; returns false if it was already in the window.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.set.insert(id.to_owned());
        true
    }
}

thread_local! {
    // Wasm instances are single-threaded; this is a plain static in the module's memory.
    static SEEN: RefCell<Option<Window>> = const { RefCell::new(None) };
}

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
    let fresh = SEEN.with_borrow_mut(|w| {
        let w = w.get_or_insert_with(|| {
            let cap = ctx
                .param("DEDUP_WINDOW")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000);
            Window {
                cap,
                order: VecDeque::new(),
                set: HashSet::new(),
            }
        });
        w.insert(&id)
    });
    if fresh {
        ctx.forward("deduped", rec)
    } else {
        rill_guest::debug!(ctx, "duplicate event {id} skipped");
        Ok(())
    }
}

rill_guest::export_handler!(on_record);
