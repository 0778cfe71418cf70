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
        "order-totals",
        "order-created",
        "wasi-logger",
        "infinite-loop",
        "memory-bomb",
        "deep-recursion",
        "trap",
        "emit-flood",
        "bad-import",
        "huge-data",
        "state-probe",
        "state-bench",
        "avro-bench",
        "json-orders",
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

/// A partition's committed state for engine-level tests: the invocation's writes are
/// applied after it, as the host applies them once durable.
#[derive(Default)]
struct MapState(std::sync::RwLock<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>);

impl rill_engine::StateView for MapState {
    fn get(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) {
        f(self.0.read().unwrap().get(key).map(Vec::as_slice))
    }
    fn scan(&self, from: &[u8], to: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
        for (k, v) in self.0.read().unwrap().iter() {
            if k.as_slice() < from {
                continue;
            }
            if to.is_some_and(|t| k.as_slice() >= t) || !f(k, v) {
                return;
            }
        }
    }
}

impl MapState {
    fn apply(&self, w: &rill_engine::StateWrites) {
        let mut m = self.0.write().unwrap();
        for (k, v) in w.iter() {
            match v {
                Some(v) => m.insert(k.to_vec(), v.to_vec()),
                None => m.remove(k),
            };
        }
    }
    fn json(&self, key: &str) -> Option<Value> {
        let m = self.0.read().unwrap();
        m.get(key.as_bytes())
            .map(|v| serde_json::from_slice(v).unwrap())
    }
}

fn stateful(
    path: &str,
    params: &[(&str, &str)],
) -> (rill_engine::Instance, std::sync::Arc<MapState>) {
    let h = handler(path);
    assert!(h.uses_state(), "{path} imports the state functions");
    let state = std::sync::Arc::new(MapState::default());
    let mut cfg = InstanceConfig::new("test", 0);
    cfg.params = params
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    cfg.state = Some(rill_engine::StateHandle(state.clone()));
    (h.instantiate(cfg).unwrap(), state)
}

#[test]
fn dedup_skips_events_already_seen() {
    let (mut inst, state) = stateful(guests::DEDUP, &[]);
    let ev = |id: &str| json!({"event_id": id, "what": "x"}).to_string();
    let inv = inst.invoke(&values(0, &[&ev("a"), &ev("b"), &ev("a")]), 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok);
    assert_eq!(
        inv.emits.len(),
        2,
        "the second a is seen within the invocation"
    );
    assert!(inv.logs.iter().any(|l| l.level == Level::Debug
        && l.message.contains("duplicate event a")
        && l.offset == Some(2)));
    assert_eq!(inv.state.len(), 2);
    state.apply(&inv.state);
    // The ids are in the committed state, not in the instance: a fresh instance reading the
    // same state drops a redelivery of the same events.
    let mut cfg = InstanceConfig::new("test", 0);
    cfg.state = Some(rill_engine::StateHandle(state.clone()));
    let mut fresh = handler(guests::DEDUP).instantiate(cfg).unwrap();
    let inv = fresh.invoke(&values(0, &[&ev("a"), &ev("b"), &ev("c")]), 0, i64::MAX);
    assert_eq!(inv.emits.len(), 1);
    assert_eq!(json_of(&inv.emits.to_vec()[0].value)["event_id"], "c");
    assert_eq!(inv.emits.to_vec()[0].topic, "deduped");
}

#[test]
fn dedup_forgets_ids_after_their_ttl() {
    let (mut inst, state) = stateful(guests::DEDUP, &[("DEDUP_TTL_MS", "1000")]);
    let ev = |id: u64, ts: i64| Rec {
        value: Some(json!({"event_id": id}).to_string().into_bytes()),
        timestamp: ts,
        ..Rec::default()
    };
    let inv = inst.invoke(
        &batch(0, &[ev(1, 10_000), ev(1, 10_500), ev(1, 11_000)]),
        0,
        i64::MAX,
    );
    assert_eq!(inv.outcome, Outcome::Ok);
    // Seen at 10,000: a duplicate at 10,500; at 11,000 the id is forgotten and passes again.
    assert_eq!(inv.emits.len(), 2);
    state.apply(&inv.state);
}

#[test]
fn order_totals_counts_each_order_once_and_a_failed_record_changes_nothing() {
    let (mut inst, state) = stateful(guests::ORDER_TOTALS, &[]);
    let order = |c: &str, cents: u64| Rec::kv(c, json!({"amount_cents": cents}).to_string());
    let inv = inst.invoke(
        &batch(0, &[order("c1", 100), order("c2", 7), order("c1", 250)]),
        0,
        i64::MAX,
    );
    assert_eq!(inv.outcome, Outcome::Ok);
    state.apply(&inv.state);
    assert_eq!(
        state.json("c1"),
        Some(json!({"orders": 2, "total_cents": 350}))
    );
    assert_eq!(
        state.json("c2"),
        Some(json!({"orders": 1, "total_cents": 7}))
    );
    // A record that fails after others changed the same key: only the changes of the
    // records before it stand (the host runs them again alone).
    let inv = inst.invoke(
        &batch(
            3,
            &[order("c1", 1), Rec::kv("c1", "not json"), order("c1", 1000)],
        ),
        3,
        i64::MAX,
    );
    assert!(
        matches!(inv.outcome, Outcome::RecordFailed { offset: 4, .. }),
        "{:?}",
        inv.outcome
    );
    assert_eq!(inv.state.len(), 1);
    state.apply(&inv.state);
    assert_eq!(
        state.json("c1"),
        Some(json!({"orders": 3, "total_cents": 351}))
    );
    // A trap discards every change.
    let inv = inst.invoke(&batch(5, &[order("c9", 1)]), 5, 5);
    assert!(inv.state.is_empty());
}

#[test]
fn state_bench_counts_per_key_and_mode_none_writes_nothing() {
    let (mut inst, state) = stateful(guests::STATE_BENCH, &[]);
    let recs = [
        Rec::kv("k1", "abc"),
        Rec::kv("k2", "x"),
        Rec::kv("k1", "de"),
    ];
    let inv = inst.invoke(&batch(0, &recs), 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    state.apply(&inv.state);
    let value = |count: u64, sum: u64| {
        let mut v = count.to_le_bytes().to_vec();
        v.extend_from_slice(&sum.to_le_bytes());
        v
    };
    assert_eq!(state.0.read().unwrap().get(&b"k1"[..]), Some(&value(2, 5)));
    assert_eq!(state.0.read().unwrap().get(&b"k2"[..]), Some(&value(1, 1)));
    let (mut none, _) = stateful(guests::STATE_BENCH, &[("mode", "none")]);
    let inv = none.invoke(&batch(0, &recs), 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok);
    assert!(inv.state.is_empty());
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

/// The state ABI through real Wasm: puts, deletes and gets read the invocation's own writes
/// over the committed state; a prefix scan pages through entries larger than the SDK's
/// first buffer; a failing record's change does not stand; keys the host refuses are an
/// error, not a trap.
#[test]
fn state_probe_exercises_every_state_call() {
    let (mut inst, state) = stateful(guests::STATE_PROBE, &[]);
    let cmds: Vec<String> = (0..300)
        .map(|i| format!("put k{i:03} v{i}"))
        .chain(["big k150 40000".to_owned(), "del k007".to_owned()])
        .collect();
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let inv = inst.invoke(&values(0, &refs), 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    assert_eq!(inv.state.len(), 300, "299 puts and a delete, by key");
    state.apply(&inv.state);

    // Reads over the committed state plus this invocation's writes.
    let inv = inst.invoke(
        &values(
            302,
            &[
                "put k000 changed",
                "get k000",
                "get k007",
                "del k001",
                "scan k00",
            ],
        ),
        302,
        i64::MAX,
    );
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    let out: Vec<(String, String)> = inv
        .emits
        .to_vec()
        .iter()
        .map(|e| {
            (
                String::from_utf8(e.key.clone().unwrap()).unwrap(),
                String::from_utf8(e.value.clone().unwrap()).unwrap(),
            )
        })
        .collect();
    let mut want = vec![
        ("k000".to_owned(), "changed".to_owned()),
        ("k007".to_owned(), "<none>".to_owned()),
        ("k000".to_owned(), "changed".to_owned()),
    ];
    want.extend([2, 3, 4, 5, 6, 8, 9].map(|i| (format!("k00{i}"), format!("v{i}"))));
    assert_eq!(out, want);
    state.apply(&inv.state);

    // A scan of everything pages through the 40,000-byte value.
    let inv = inst.invoke(&values(307, &["scan k"]), 307, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    assert_eq!(inv.emits.len(), 298);
    let big = inv
        .emits
        .to_vec()
        .into_iter()
        .find(|e| e.key.as_deref() == Some(b"k150"))
        .unwrap();
    assert_eq!(big.value.unwrap().len(), 40_000);

    // A failing record: the change before it stands, its own does not.
    let inv = inst.invoke(
        &values(308, &["put before 1", "fail", "put after 1"]),
        308,
        i64::MAX,
    );
    assert!(
        matches!(inv.outcome, Outcome::RecordFailed { offset: 309, .. }),
        "{:?}",
        inv.outcome
    );
    let changed: Vec<&[u8]> = inv.state.iter().map(|(k, _)| k).collect();
    assert_eq!(changed, vec![&b"before"[..]]);

    // An empty key is refused by the host: a record error naming it, not a trap.
    let inv = inst.invoke(&values(311, &["put  v"]), 311, i64::MAX);
    match inv.outcome {
        Outcome::RecordFailed { message, .. } => {
            assert!(message.contains("invalid state key"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
