//! Typed handlers (issue 14): `examples/order-created` run through rill-engine with a
//! stand-in resolver, and the deploy-time check of its `rill.schemas` section against a
//! stand-in registry. The end-to-end tests against the host's registry are in
//! the `e2e` module below.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apache_avro::types::Value as Avro;
use rill_engine::{
    InstanceConfig, Level, Outcome, ResolveError, SchemaFormat, SchemaHandle, SchemaResolver,
    SchemaRole,
};
use rill_runtime::schema::deploy_check::check_module;
use rill_runtime::schema::{ParsedSchema, SchemaSource, SchemaType, SourceError, Version};
use rill_tests::{Rec, batch, guests, handler};

pub const V1: &str = include_str!("../../examples/order-created/schemas/order_v1.avsc");
pub const V2: &str = include_str!("../../examples/order-created/schemas/order_v2.avsc");
pub const V3: &str = include_str!("../../examples/order-created/schemas/order_v3.avsc");

/// A stand-in registry: ids from 1, one list of versions per subject, no compatibility.
#[derive(Debug, Default)]
pub struct Fake {
    ids: Mutex<Vec<String>>,
    subjects: Mutex<HashMap<String, Vec<u32>>>,
}

impl SchemaResolver for Fake {
    fn schema(&self, id: u32) -> Result<Arc<str>, ResolveError> {
        let ids = self.ids.lock().unwrap();
        (id as usize)
            .checked_sub(1)
            .and_then(|i| ids.get(i))
            .map(|t| t.as_str().into())
            .ok_or_else(|| ResolveError::Unknown(format!("schema id {id} is not registered")))
    }
    fn schema_id(&self, s: &str, _: SchemaFormat, text: &str) -> Result<u32, ResolveError> {
        Ok(self.register(s, SchemaType::Avro, text).unwrap())
    }
}

impl SchemaSource for Fake {
    fn schema(&self, id: u32) -> Result<Arc<ParsedSchema>, SourceError> {
        let text = SchemaResolver::schema(self, id).map_err(|_| SourceError::UnknownId(id))?;
        Ok(Arc::new(
            ParsedSchema::parse(SchemaType::Avro, &text, &[]).unwrap(),
        ))
    }
    fn versions(&self, subject: &str) -> Result<Vec<Version>, SourceError> {
        let ids = self.subjects.lock().unwrap().get(subject).cloned();
        let ids = ids.ok_or_else(|| SourceError::UnknownSubject(subject.into()))?;
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                Ok(Version {
                    version: i as i32 + 1,
                    id: *id,
                    schema: SchemaSource::schema(self, *id)?,
                })
            })
            .collect()
    }
    fn register(&self, subject: &str, _: SchemaType, text: &str) -> Result<u32, SourceError> {
        let mut ids = self.ids.lock().unwrap();
        let id = match ids.iter().position(|t| t == text) {
            Some(i) => i as u32 + 1,
            None => {
                ids.push(text.into());
                ids.len() as u32
            }
        };
        let mut subjects = self.subjects.lock().unwrap();
        let versions = subjects.entry(subject.into()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        Ok(id)
    }
    fn url(&self) -> String {
        "http://127.0.0.1:1".into()
    }
}

/// An `OrderCreated` record of schema `text`, framed with `id`.
pub fn framed(id: u32, text: &str, fields: &[(&str, Avro)]) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(text).unwrap();
    let value = Avro::Record(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    );
    let w = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap();
    let mut out = vec![0];
    out.extend(id.to_be_bytes());
    out.extend(w.write_value_to_vec(value).unwrap());
    out
}

pub fn v1_order(id: u32, order: &str, customer: &str, cents: i64) -> Vec<u8> {
    let s = |x: &str| Avro::String(x.into());
    framed(
        id,
        V1,
        &[
            ("order_id", s(order)),
            ("customer", s(customer)),
            ("total_cents", Avro::Long(cents)),
        ],
    )
}

pub fn v2_order(id: u32, order: &str, customer: &str, cents: i64) -> Vec<u8> {
    let s = |x: &str| Avro::String(x.into());
    framed(
        id,
        V2,
        &[
            ("order_id", s(order)),
            ("customer_name", s(customer)),
            ("total_cents", Avro::Long(cents)),
            ("currency", s("USD")),
        ],
    )
}

#[test]
fn order_created_declares_its_reader_schema() {
    let wasm = std::fs::read(guests::ORDER_CREATED).unwrap();
    let declared = rill_engine::declared_schemas(&wasm).unwrap();
    assert_eq!(declared.len(), 1);
    assert_eq!(declared[0].role, SchemaRole::Reader);
    assert_eq!(declared[0].subject, "orders-value");
    assert_eq!(declared[0].text, V1);
    assert!(handler(guests::ORDER_CREATED).uses_schemas());
    assert!(!handler(guests::FILTER).uses_schemas());
}

#[test]
fn order_created_reads_v1_and_v2_through_its_v1_reader() {
    let fake = Arc::new(Fake::default());
    let id1 = fake.register("orders-value", SchemaType::Avro, V1).unwrap();
    let id2 = fake.register("orders-value", SchemaType::Avro, V2).unwrap();
    let cfg = InstanceConfig {
        schemas: Some(SchemaHandle(fake.clone())),
        ..InstanceConfig::new("typed", 0)
    };
    let mut inst = handler(guests::ORDER_CREATED).instantiate(cfg).unwrap();
    let b = batch(
        0,
        &[
            Rec::value(v1_order(id1, "o-1", "ada", 1250)),
            Rec::value(v2_order(id2, "o-2", "bob", 99)),
        ],
    );
    let inv = inst.invoke(&b, 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    let lines: Vec<serde_json::Value> = inv
        .emits
        .to_vec()
        .iter()
        .map(|e| serde_json::from_slice(e.value.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(inv.emits.to_vec()[0].topic, "order-lines");
    assert_eq!(
        lines,
        [
            serde_json::json!({"order_id": "o-1", "customer": "ada", "total_cents": 1250}),
            serde_json::json!({"order_id": "o-2", "customer": "bob", "total_cents": 99}),
        ]
    );

    // An unknown id and an unframed value are record errors, with the host's reason logged.
    let b = batch(10, &[Rec::value(v1_order(77, "o", "c", 1))]);
    let inv = inst.invoke(&b, 0, i64::MAX);
    let Outcome::RecordFailed { offset, message } = &inv.outcome else {
        panic!("{:?}", inv.outcome)
    };
    assert_eq!(*offset, 10);
    assert!(message.contains("77 is not registered"), "{message}");
    assert!(
        inv.logs
            .iter()
            .any(|l| l.level == Level::Error && l.message.contains("schema_get(77)")),
        "{:?}",
        inv.logs
    );
    let inv = inst.invoke(&batch(20, &[Rec::value("{\"order_id\":1}")]), 0, i64::MAX);
    assert!(
        matches!(&inv.outcome, Outcome::RecordFailed { message, .. } if message.contains("not schema-framed")),
        "{:?}",
        inv.outcome
    );

    // Without a registry, every typed record fails and says why.
    let mut bare = handler(guests::ORDER_CREATED)
        .instantiate(InstanceConfig::new("typed", 0))
        .unwrap();
    let inv = bare.invoke(
        &batch(0, &[Rec::value(v1_order(id1, "o", "c", 1))]),
        0,
        i64::MAX,
    );
    assert!(
        matches!(&inv.outcome, Outcome::RecordFailed { .. }),
        "{:?}",
        inv.outcome
    );
    assert!(
        inv.logs
            .iter()
            .any(|l| l.message.contains("no schema registry")),
        "{:?}",
        inv.logs
    );
}

#[test]
fn the_deploy_check_refuses_a_reader_that_cannot_read_a_version() {
    let wasm = std::fs::read(guests::ORDER_CREATED).unwrap();
    let fake = Fake::default();
    check_module(&wasm, Some(&fake)).expect("no versions: accepted");
    fake.register("orders-value", SchemaType::Avro, V1).unwrap();
    fake.register("orders-value", SchemaType::Avro, V2).unwrap();
    check_module(&wasm, Some(&fake)).expect("v1 reads v1 and v2");
    fake.register("orders-value", SchemaType::Avro, V3).unwrap();
    let e = check_module(&wasm, Some(&fake)).unwrap_err().to_string();
    assert!(e.contains("version 3") && e.contains("orders-value"), "{e}");
    let e = check_module(&wasm, None).unwrap_err().to_string();
    assert!(e.contains("no schema registry"), "{e}");
    // A module that declares nothing is not checked.
    check_module(&std::fs::read(guests::FILTER).unwrap(), None).unwrap();
}

#[test]
fn avro_bench_sums_v1_and_v2_orders() {
    let fake = Arc::new(Fake::default());
    let id1 = fake.register("orders-value", SchemaType::Avro, V1).unwrap();
    let id2 = fake.register("orders-value", SchemaType::Avro, V2).unwrap();
    let cfg = InstanceConfig {
        schemas: Some(SchemaHandle(fake.clone())),
        ..InstanceConfig::new("avro-bench", 0)
    };
    let mut inst = handler(guests::AVRO_BENCH).instantiate(cfg).unwrap();
    let b = batch(
        0,
        &[
            Rec::value(v1_order(id1, "o-1", "ada", 1250)),
            Rec::value(v2_order(id2, "o-2", "bob", 99)),
        ],
    );
    let inv = inst.invoke(&b, 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    let out = inv.emits.to_vec()[0].value.clone().unwrap();
    assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 2);
    assert_eq!(i64::from_le_bytes(out[8..].try_into().unwrap()), 1349);
}

#[test]
fn emit_avro_registers_the_writer_schema_and_frames_with_its_id() {
    let fake = Arc::new(Fake::default());
    let id1 = fake.register("orders-value", SchemaType::Avro, V1).unwrap();
    let cfg = InstanceConfig {
        schemas: Some(SchemaHandle(fake.clone())),
        params: vec![("echo".into(), "1".into())],
        ..InstanceConfig::new("avro-bench", 0)
    };
    let mut inst = handler(guests::AVRO_BENCH).instantiate(cfg).unwrap();
    let b = batch(0, &[Rec::value(v1_order(id1, "o-1", "ada", 1250))]);
    let inv = inst.invoke(&b, 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    let echo = inv.emits.to_vec()[0].clone();
    assert_eq!(echo.topic, "avro-echo");
    let value = echo.value.unwrap();
    let id = u32::from_be_bytes(value[1..5].try_into().unwrap());
    assert_eq!(value[0], 0);
    let versions = fake.versions("avro-echo-value").unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].id, id);
    let decoded = versions[0].schema.to_json(&value[5..]).unwrap();
    assert_eq!(
        decoded,
        serde_json::json!({"order_id": "o-1", "customer": "ada", "total_cents": 1250})
    );
}

/// The JSON Schema half of the SDK in Wasm: a framed JSON order becomes a shipment framed
/// with the id `schema_id` gave the writer schema; an unframed order is a record error.
#[test]
fn json_orders_decodes_framed_json_and_frames_its_shipments() {
    let fake = Arc::new(Fake::default());
    let cfg = InstanceConfig {
        schemas: Some(SchemaHandle(fake.clone())),
        ..InstanceConfig::new("json-orders", 0)
    };
    let mut inst = handler(guests::JSON_ORDERS).instantiate(cfg).unwrap();
    let mut order = vec![0, 0, 0, 0, 7];
    order.extend_from_slice(br#"{"order_id":"j-1","customer":"ada","total_cents":12500}"#);
    let b = batch(0, &[Rec::value(order)]);
    let inv = inst.invoke(&b, 0, i64::MAX);
    assert_eq!(inv.outcome, Outcome::Ok, "{:?}", inv.logs);
    let emit = inv.emits.to_vec()[0].clone();
    assert_eq!(emit.topic, "json-shipments");
    let value = emit.value.unwrap();
    // The stand-in gives a text already registered its id again.
    let shipment_text = include_str!("../guests/json-orders/shipment.json");
    let id = SchemaSource::register(
        &*fake,
        "json-shipments-value",
        SchemaType::Json,
        shipment_text,
    )
    .unwrap();
    assert_eq!(id, 1, "the shipment schema was the first one registered");
    assert_eq!(value[..5], [0, 0, 0, 0, 1]);
    let shipment: serde_json::Value = serde_json::from_slice(&value[5..]).unwrap();
    assert_eq!(
        shipment,
        serde_json::json!({"order_id": "j-1", "cents": 12500, "express": true})
    );

    let b = batch(1, &[Rec::value(br#"{"order_id":"j-2","total_cents":1}"#)]);
    let inv = inst.invoke(&b, 0, i64::MAX);
    match &inv.outcome {
        Outcome::RecordFailed { offset: 1, message } => {
            assert!(message.contains("not schema-framed"), "{message}")
        }
        other => panic!("expected a record error, got {other:?}"),
    }
}
