use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::schema::{SchemaType, Version};

const ORDER: &str = r#"{"type":"record","name":"Order","fields":[
    {"name":"id","type":"long"},{"name":"item","type":"string"}]}"#;

/// A registry in memory: subject → ids; counts the subject reads.
#[derive(Debug, Default)]
struct Fake {
    subjects: Mutex<HashMap<String, Vec<u32>>>,
    schemas: Mutex<HashMap<u32, Arc<ParsedSchema>>>,
    reads: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

impl Fake {
    fn add(&self, subject: &str, id: u32, text: &str) {
        let s = Arc::new(ParsedSchema::parse(SchemaType::Avro, text, &[]).unwrap());
        self.schemas.lock().unwrap().insert(id, s);
        self.subjects
            .lock()
            .unwrap()
            .entry(subject.into())
            .or_default()
            .push(id);
    }
}

impl SchemaSource for Fake {
    fn schema(&self, id: u32) -> Result<Arc<ParsedSchema>, SourceError> {
        self.schemas
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(SourceError::UnknownId(id))
    }
    fn versions(&self, subject: &str) -> Result<Vec<Version>, SourceError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            return Err(SourceError::Unavailable {
                url: self.url(),
                message: "connection refused".into(),
            });
        }
        let ids = self.subjects.lock().unwrap().get(subject).cloned();
        let ids = ids.ok_or_else(|| SourceError::UnknownSubject(subject.into()))?;
        Ok(ids
            .iter()
            .enumerate()
            .map(|(i, id)| Version {
                version: i as i32 + 1,
                id: *id,
                schema: self.schema(*id).unwrap(),
            })
            .collect())
    }
    fn register(&self, _: &str, _: SchemaType, _: &str) -> Result<u32, SourceError> {
        unimplemented!()
    }
    fn url(&self) -> String {
        "http://registry.test:8081".into()
    }
}

fn order(id: u32) -> Vec<u8> {
    // id 21 (zig-zag 42), item "ab".
    wire::frame(id, &[42, 4, b'a', b'b'])
}

fn values() -> TopicConfig {
    TopicConfig {
        value_schema_validation: true,
        ..TopicConfig::default()
    }
}

fn setup() -> (Arc<Fake>, Validator) {
    let fake = Arc::new(Fake::default());
    fake.add("orders-value", 1, ORDER);
    fake.add("other-value", 2, ORDER);
    let v = Validator::new(Some(fake.clone() as Arc<dyn SchemaSource>));
    (fake, v)
}

fn refusal(v: &Validator, records: &[KeyValue<'_>]) -> String {
    match v.check_records("orders", &values(), records, true) {
        Err(Refusal::Invalid { message, .. }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn good_records_pass_and_are_cached() {
    let (fake, v) = setup();
    let good = order(1);
    let records = [
        (None, Some(&good[..])),
        (None, None),
        (Some(&b"k"[..]), Some(&good[..])),
    ];
    // Nothing cached yet: the reactor must not block.
    assert_eq!(
        v.check_records("orders", &values(), &records, false),
        Err(Refusal::WouldBlock)
    );
    v.check_records("orders", &values(), &records, true)
        .unwrap();
    // Now from the cache, without asking again.
    v.check_records("orders", &values(), &records, false)
        .unwrap();
    assert_eq!(fake.reads.load(Ordering::Relaxed), 1);
}

#[test]
fn each_problem_is_named_with_its_record() {
    let (_fake, v) = setup();
    let good = order(1);
    let unknown = order(9);
    let other = order(2);
    let bad = wire::frame(1, &[42, 40, b'a']);
    let m = refusal(&v, &[(None, Some(&good)), (None, Some(b"plain text"))]);
    assert!(m.starts_with("record 1: the value is not framed"), "{m}");
    let m = refusal(&v, &[(None, Some(&unknown))]);
    assert_eq!(m, "record 0: schema id 9 is not registered");
    let m = refusal(
        &v,
        &[
            (None, Some(&good)),
            (None, Some(&good)),
            (None, Some(&other)),
        ],
    );
    assert_eq!(
        m,
        "record 2: schema id 2 is not a version of subject 'orders-value'"
    );
    let m = refusal(&v, &[(None, Some(&bad))]);
    assert!(
        m.starts_with(
            "record 0: the value does not decode with schema id 1 of subject 'orders-value'"
        ),
        "{m}"
    );
}

#[test]
fn keys_are_checked_against_the_key_subject() {
    let (fake, _) = setup();
    // No memory of refusals, so the registration below is seen at once.
    let v = Validator::with_ttl(Some(fake.clone() as Arc<dyn SchemaSource>), Duration::ZERO);
    let cfg = TopicConfig {
        key_schema_validation: true,
        ..TopicConfig::default()
    };
    let good = order(1);
    let r = v.check_records("orders", &cfg, &[(Some(&good), Some(b"any"))], true);
    assert!(
        matches!(&r, Err(Refusal::Invalid { message, .. }) if message.contains("'orders-key'")),
        "{r:?}"
    );
    fake.add("orders-key", 1, ORDER);
    // A newly registered id is seen once the refusal is forgotten.
    v.check_records(
        "orders",
        &cfg,
        &[(Some(&good), Some(b"any")), (None, None)],
        true,
    )
    .unwrap();
}

#[test]
fn an_unreachable_registry_refuses_as_unavailable() {
    let (fake, v) = setup();
    fake.down.store(true, Ordering::Relaxed);
    let good = order(1);
    match v.check_records("orders", &values(), &[(None, Some(&good))], true) {
        Err(Refusal::Unavailable(m)) => assert!(m.contains("http://registry.test:8081"), "{m}"),
        other => panic!("{other:?}"),
    }
    let none = Validator::new(None);
    assert!(matches!(
        none.check_records("orders", &values(), &[(None, Some(&good))], true),
        Err(Refusal::Unavailable(_))
    ));
}

#[test]
fn membership_expires_after_the_ttl() {
    let fake = Arc::new(Fake::default());
    fake.add("orders-value", 1, ORDER);
    let v = Validator::with_ttl(Some(fake.clone() as Arc<dyn SchemaSource>), Duration::ZERO);
    let good = order(1);
    v.check_records("orders", &values(), &[(None, Some(&good))], true)
        .unwrap();
    assert_eq!(
        v.check_records("orders", &values(), &[(None, Some(&good))], false),
        Err(Refusal::WouldBlock)
    );
}

#[test]
fn a_refused_id_is_refused_from_memory_for_a_second_then_asked_again() {
    let (fake, v) = setup();
    let unknown = order(9);
    let records = [(None, Some(&unknown[..]))];
    assert!(refusal(&v, &records).contains("schema id 9 is not registered"));
    assert_eq!(fake.reads.load(Ordering::Relaxed), 1);
    // Again, even on the reactor (no WouldBlock), without asking the registry.
    match v.check_records("orders", &values(), &records, false) {
        Err(Refusal::Invalid { message, .. }) => {
            assert_eq!(message, "record 0: schema id 9 is not registered")
        }
        other => panic!("expected a refusal from memory, got {other:?}"),
    }
    assert_eq!(fake.reads.load(Ordering::Relaxed), 1);

    // With no memory (a zero TTL), registering the id takes effect at once.
    let v = Validator::with_ttl(Some(fake.clone() as Arc<dyn SchemaSource>), Duration::ZERO);
    assert!(refusal(&v, &records).contains("is not registered"));
    fake.add("orders-value", 9, ORDER);
    v.check_records("orders", &values(), &records, true)
        .unwrap();
}
