//! Every handler in `examples/`, built to real `.wasm` by `tests/build.rs`, run through
//! rill-engine on real record batches v2.

use rill_engine::{InstanceConfig, Level, Outcome};
use rill_tests::{Rec, batch, guests, handler, values};
use serde_json::{Value, json};

fn instance(path: &str) -> rill_engine::Instance {
    handler(path)
        .instantiate(InstanceConfig::new("test", 3))
        .expect("instantiate")
}

fn json_of(bytes: &Option<Vec<u8>>) -> Value {
    serde_json::from_slice(bytes.as_deref().expect("a value")).expect("JSON")
}

#[test]
fn every_guest_has_a_host_test() {
    // The names each test module covers; a guest added to build.rs without a test fails here.
    let covered = [
        "notifier",
        "enricher",
        "filter",
        "dedup",
        "wasi-logger",
        "infinite-loop",
        "memory-bomb",
        "deep-recursion",
        "trap",
        "emit-flood",
        "bad-import",
        "huge-data",
    ];
    for (name, path) in guests::ALL {
        assert!(
            covered.contains(name),
            "guest {name} ({path}) has no host test"
        );
        assert!(std::path::Path::new(path).exists(), "{path} missing");
    }
}

#[test]
fn notifier_emits_one_email_per_order_created() {
    let mut inst = instance(guests::NOTIFIER);
    let b = batch(
        100,
        &[
            Rec::kv(
                "c1",
                r#"{"type":"order_created","order_id":1,"email":"ada@example.com","total_cents":1999}"#,
            ),
            Rec::kv(
                "c2",
                r#"{"type":"order_shipped","order_id":2,"email":"bob@example.com","total_cents":500}"#,
            ),
            Rec::kv(
                "c3",
                r#"{"order_id":3,"email":"cy@example.com","total_cents":100}"#,
            ),
        ],
    );
    let inv = inst.invoke(&b, 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    assert_eq!(inv.records_seen, 3);
    assert_eq!(inv.emits.len(), 2);
    assert_eq!(inv.emits.to_vec()[0].topic, "emails");
    assert_eq!(inv.emits.to_vec()[0].key.as_deref(), Some(&b"c1"[..]));
    assert_eq!(
        json_of(&inv.emits.to_vec()[0].value),
        json!({"to": "ada@example.com", "template": "order_confirmation", "order_id": 1, "total_cents": 1999})
    );
    assert_eq!(
        json_of(&inv.emits.to_vec()[1].value)["to"],
        "cy@example.com"
    );
}

#[test]
fn notifier_reads_its_template_param_and_reports_bad_json_as_a_record_error() {
    let mut cfg = InstanceConfig::new("test", 0);
    cfg.params = vec![("TEMPLATE".into(), "welcome".into())];
    let mut inst = handler(guests::NOTIFIER).instantiate(cfg).unwrap();
    let b = batch(
        10,
        &[
            Rec::value(r#"{"order_id":1,"email":"a@x","total_cents":1}"#),
            Rec::value("not json"),
            Rec::value(r#"{"order_id":3,"email":"c@x","total_cents":1}"#),
        ],
    );
    let inv = inst.invoke(&b, 0, i64::MAX);
    let Outcome::RecordFailed { offset, message } = &inv.outcome else {
        panic!("{:?}", inv.outcome)
    };
    assert_eq!(*offset, 11);
    assert!(message.contains("expected"), "{message}");
    // The record before the failure stands; nothing after it was handled.
    assert_eq!(inv.emits.len(), 1);
    assert_eq!(json_of(&inv.emits.to_vec()[0].value)["template"], "welcome");
    assert_eq!(inv.records_seen, 2);
    // The host re-runs around the poison record with the offset range.
    let inv = inst.invoke(&b, 12, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok);
    assert_eq!(inv.emits.len(), 1);
    assert_eq!(json_of(&inv.emits.to_vec()[0].value)["to"], "c@x");
}

#[test]
fn enricher_maps_orders_to_fulfillment_requests() {
    let mut inst = instance(guests::ENRICHER);
    let order = |id: u64, total: u64| {
        json!({
            "order_id": id,
            "customer": {"name": "Ada", "address": {"line1": "1 Main St", "city": "Leeds", "postcode": "LS1", "country": "GB"}},
            "items": [{"sku": "A1", "qty": 2}],
            "total_cents": total,
        })
        .to_string()
    };
    let mut rec = Rec::value(order(7, 25_000));
    rec.timestamp = 1_700_000_000_000;
    let b = batch(0, &[rec, Rec::value(order(8, 100))]);
    let inv = inst.invoke(&b, 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    assert_eq!(inv.emits.len(), 2);
    let emits = inv.emits.to_vec();
    let e = &emits[0];
    assert_eq!(e.topic, "fulfillment");
    assert_eq!(e.key.as_deref(), Some(&b"7"[..]));
    let v = json_of(&e.value);
    assert_eq!(v["priority"], "express");
    assert_eq!(v["ship_to"], "Ada");
    assert_eq!(v["address"]["city"], "Leeds");
    assert_eq!(v["items"][0]["sku"], "A1");
    assert_eq!(v["ordered_at_ms"], 1_700_000_000_000i64);
    assert_eq!(
        json_of(&inv.emits.to_vec()[1].value)["priority"],
        "standard"
    );

    let empty = json!({"order_id": 9, "customer": {"name": "B", "address": {"line1": "", "city": "", "postcode": "", "country": ""}}, "items": [], "total_cents": 5});
    let inv = inst.invoke(&values(50, &[&empty.to_string()]), 0, i64::MAX);
    assert_eq!(
        inv.outcome,
        Outcome::RecordFailed {
            offset: 50,
            message: "order 9 has no items".into()
        }
    );
}

#[test]
fn filter_forwards_blue_records_unchanged() {
    let mut inst = instance(guests::FILTER);
    let mut blue = Rec::kv("k1", r#"{"colour":"blue","n":1}"#);
    blue.headers = vec![
        ("trace".into(), Some(b"abc".to_vec())),
        ("nil".into(), None),
    ];
    let b = batch(
        0,
        &[
            blue,
            Rec::kv("k2", r#"{"colour":"red"}"#),
            Rec::value("navy blue"),
        ],
    );
    let inv = inst.invoke(&b, 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok);
    assert_eq!(inv.records_seen, 3);
    assert_eq!(inv.emits.len(), 2);
    assert_eq!(inv.emits.to_vec()[0].topic, "blue");
    assert_eq!(inv.emits.to_vec()[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(
        inv.emits.to_vec()[0].headers,
        vec![
            ("trace".into(), Some(b"abc".to_vec())),
            ("nil".into(), None)
        ]
    );
    assert_eq!(
        inv.emits.to_vec()[1].value.as_deref(),
        Some(&b"navy blue"[..])
    );
}

#[test]
fn filter_handles_many_batches_in_one_invocation() {
    let mut inst = instance(guests::FILTER);
    let mut bytes = Vec::new();
    for i in 0..10 {
        let vals: Vec<String> = (0..100)
            .map(|j| {
                if j % 10 == 0 {
                    format!("blue {i} {j}")
                } else {
                    format!("red {j}")
                }
            })
            .collect();
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        bytes.extend(values(i * 100, &refs));
    }
    let inv = inst.invoke(&bytes, 250, 750);
    assert_eq!(inv.outcome, Outcome::Ok);
    assert_eq!(inv.records_seen, 500);
    assert_eq!(inv.emits.len(), 50);
}

#[test]
fn dedup_skips_events_already_seen() {
    let mut inst = instance(guests::DEDUP);
    let ev = |id: &str| json!({"event_id": id, "what": "x"}).to_string();
    let inv = inst.invoke(&values(0, &[&ev("a"), &ev("b"), &ev("a")]), 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok);
    assert_eq!(inv.emits.len(), 2);
    assert!(inv.logs.iter().any(|l| l.level == Level::Debug
        && l.message.contains("duplicate event a")
        && l.offset == Some(2)));
    // The window outlives the invocation: a redelivery of the same events is dropped.
    let inv = inst.invoke(&values(0, &[&ev("a"), &ev("b"), &ev("c")]), 0, i64::MAX);
    assert_eq!(inv.emits.len(), 1);
    assert_eq!(json_of(&inv.emits.to_vec()[0].value)["event_id"], "c");
    assert_eq!(inv.emits.to_vec()[0].topic, "deduped");
}

#[test]
fn dedup_window_is_bounded() {
    let mut cfg = InstanceConfig::new("test", 0);
    cfg.params = vec![("DEDUP_WINDOW".into(), "2".into())];
    let mut inst = handler(guests::DEDUP).instantiate(cfg).unwrap();
    let ev = |id: u64| json!({"event_id": id}).to_string();
    let inv = inst.invoke(&values(0, &[&ev(1), &ev(2), &ev(3), &ev(1)]), 0, i64::MAX);
    // 1 fell out of the 2-id window when 3 arrived, so it passes again.
    assert_eq!(inv.emits.len(), 4);
}

#[test]
fn wasi_logger_stdout_becomes_log_lines_and_env_is_only_params() {
    let h = handler(guests::WASI_LOGGER);
    assert_eq!(h.target(), rill_engine::GuestKind::Wasi);
    let mut cfg = InstanceConfig::new("test", 0);
    cfg.params = vec![("GREETING".into(), "hi".into())];
    let mut inst = h.instantiate(cfg).unwrap();
    let b = batch(
        5,
        &[
            Rec::value("one"),
            Rec {
                value: None,
                ..Rec::default()
            },
        ],
    );
    let inv = inst.invoke(&b, 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    let lines: Vec<_> = inv
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str(), l.offset))
        .collect();
    assert_eq!(
        lines,
        vec![
            (Level::Info, "hi from offset 5: one", Some(5)),
            (Level::Info, "hi from offset 6: ", Some(6)),
            (Level::Warn, "offset 6 has a null value", Some(6)),
        ]
    );
    assert_eq!(inv.emits.len(), 2);
    assert_eq!(inv.emits.to_vec()[0].value.as_deref(), Some(&b"3"[..]));
}
