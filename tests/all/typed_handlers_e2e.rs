//! Typed handlers against a host and its schema registry (issue 14): register v1 and v2 of
//! `orders-value` under BACKWARD, v3 refused with 409; `order-created` (v1 reader) reads
//! framed v1 and v2 records; a handler whose reader cannot read the registered versions is
//! refused at deploy, through the CLI, with a non-zero exit; and a typed handler is refused
//! when there is no registry to check it against.

use std::time::Duration;

use base64::Engine as _;
use rill_runtime::admin::api::{Fetch, Fetched, Produce, ProduceRecord};
use rill_runtime::schema::client::RegistryClient;
use rill_runtime::schema::{SchemaSource, SchemaType, SourceError};
use rill_tests::guests;
use rill_tests::host::TestHost;
use serde_json::{Value, json};

use crate::typed_handlers::{V1, V2, V3, v1_order, v2_order};

/// A reader of `orders-value` that needs a field no registered version has (no default).
const STRICT: &str = r#"{"type":"record","name":"OrderCreated","namespace":"rill.examples",
  "fields":[{"name":"order_id","type":"string"},{"name":"region","type":"string"}]}"#;

/// `wasm` with one more `rill.schemas` entry: a reader of `subject` with `text`.
fn with_reader(wasm: &[u8], subject: &str, text: &str) -> Vec<u8> {
    let mut body = vec![0u8, 0u8];
    for s in [subject, text] {
        body.extend((s.len() as u32).to_le_bytes());
        body.extend(s.as_bytes());
    }
    let name = b"rill.schemas";
    let mut payload = vec![name.len() as u8];
    payload.extend(name);
    payload.extend(body);
    let mut out = wasm.to_vec();
    out.push(0);
    let mut n = payload.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { b } else { b | 0x80 });
        if n == 0 {
            break;
        }
    }
    out.extend(payload);
    out
}

fn deploy_args<'a>(path: &'a str, name: &'a str) -> Vec<&'a str> {
    vec![
        "deploy",
        path,
        "--name",
        name,
        "--topic",
        "orders",
        "--output",
        "order-lines",
    ]
}

#[test]
fn order_created_reads_v1_and_v2_and_the_registry_guards_its_reader() {
    let h = TestHost::start();
    let url = h
        .schema_registry
        .clone()
        .expect("the host serves a registry");
    let reg = RegistryClient::new(&url);
    h.cli_ok(&["topic", "create", "orders"]);
    h.cli_ok(&["topic", "create", "order-lines"]);

    // A subject with no versions accepts the reader.
    h.cli_ok(&deploy_args(guests::ORDER_CREATED, "orders"));
    let id1 = reg.register("orders-value", SchemaType::Avro, V1).unwrap();
    let id2 = reg.register("orders-value", SchemaType::Avro, V2).unwrap();
    assert_ne!(id1, id2);
    match reg.register("orders-value", SchemaType::Avro, V3) {
        Err(SourceError::Refused { code: 409, .. }) => {}
        other => panic!("v3 must be refused with 409: {other:?}"),
    }
    // With v1 and v2 registered, redeploying the v1 reader is accepted.
    h.cli_ok(&deploy_args(guests::ORDER_CREATED, "orders"));

    let b64 = |v: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(v);
    let produce = Produce {
        records: vec![
            ProduceRecord {
                key: Some("o-1".into()),
                value_b64: Some(b64(v1_order(id1, "o-1", "ada", 1250))),
                ..ProduceRecord::default()
            },
            ProduceRecord {
                key: Some("o-2".into()),
                value_b64: Some(b64(v2_order(id2, "o-2", "bob", 99))),
                ..ProduceRecord::default()
            },
        ],
    };
    let _: Value = h
        .client()
        .post("/v1/topics/orders/records", &produce)
        .expect("produce");
    let lines = h
        .wait_for(Duration::from_secs(30), || {
            let f: Fetched = h
                .client()
                .post(
                    "/v1/topics/order-lines/fetch",
                    &Fetch {
                        from: Some("earliest".into()),
                        max_records: 100,
                        ..Fetch::default()
                    },
                )
                .ok()?;
            (f.records.len() >= 2).then_some(f)
        })
        .unwrap_or_else(|| panic!("no output; host log:\n{}", h.log()));
    let got: Vec<Value> = lines
        .records
        .iter()
        .map(|r| serde_json::from_str(r.value.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(
        got,
        [
            json!({"order_id": "o-1", "customer": "ada", "total_cents": 1250}),
            json!({"order_id": "o-2", "customer": "bob", "total_cents": 99}),
        ]
    );

    // A handler emitting Avro registers its writer schema with the host's registry and
    // frames with that id (avro-bench in echo mode reads the same topic).
    h.cli_ok(&["topic", "create", "avro-echo"]);
    h.cli_ok(&["topic", "create", "avro-sum"]);
    h.cli_ok(&[
        "deploy",
        guests::AVRO_BENCH,
        "--name",
        "echo",
        "--topic",
        "orders",
        "--output",
        "avro-echo",
        "--output",
        "avro-sum",
        "--env",
        "echo=1",
    ]);
    let echoed = h
        .wait_for(Duration::from_secs(30), || {
            let f: Fetched = h
                .client()
                .post(
                    "/v1/topics/avro-echo/fetch",
                    &Fetch {
                        from: Some("earliest".into()),
                        max_records: 100,
                        ..Fetch::default()
                    },
                )
                .ok()?;
            (f.records.len() >= 2).then_some(f)
        })
        .unwrap_or_else(|| panic!("no echo; host log:\n{}", h.log()));
    let latest = reg
        .versions("avro-echo-value")
        .expect("registered by the handler");
    assert_eq!(latest.len(), 1);
    for r in &echoed.records {
        // Text when the bytes happen to be UTF-8, else base64.
        let bytes = match (&r.value, &r.value_b64) {
            (Some(text), _) => text.clone().into_bytes(),
            (_, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
            _ => panic!("a null value"),
        };
        assert_eq!(bytes[0], 0);
        assert_eq!(
            u32::from_be_bytes(bytes[1..5].try_into().unwrap()),
            latest[0].id
        );
    }

    // A reader that cannot read version 1: refused, one line, non-zero exit.
    let strict = with_reader(
        &std::fs::read(guests::ORDER_CREATED).unwrap(),
        "orders-value",
        STRICT,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strict.wasm");
    std::fs::write(&path, strict).unwrap();
    let out = h.cli(&deploy_args(path.to_str().unwrap(), "strict"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "deploy must fail: {stderr}");
    assert!(
        stderr.contains("subject 'orders-value' cannot read version 1")
            && stderr.contains("region"),
        "{stderr}"
    );
}

#[test]
fn a_typed_handler_needs_a_registry_to_deploy() {
    let h = TestHost::start_with(&["--no-schema-registry"]);
    h.cli_ok(&["topic", "create", "orders"]);
    let out = h.cli(&deploy_args(guests::ORDER_CREATED, "orders"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no schema registry"), "{stderr}");
    // A handler that declares no schema deploys as before.
    h.cli_ok(&["deploy", guests::FILTER, "--name", "f", "--topic", "orders"]);

    let h = TestHost::start_with(&["--schema-registry-url", "http://127.0.0.1:9"]);
    h.cli_ok(&["topic", "create", "orders"]);
    let out = h.cli(&deploy_args(guests::ORDER_CREATED, "orders"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("http://127.0.0.1:9"), "{stderr}");
}
