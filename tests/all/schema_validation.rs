//! Schemas (issue 14) at the doors and in the CLI, on a real host with its own registry:
//! records refused at both doors with their reason, visible to Kafka clients (librdkafka
//! through rdkafka sees the code; kafka-python, which reads Produce v8's record errors, the
//! message), and `runtime schema` / `runtime consume --decode` end to end.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rill_runtime::admin::api::{Produce, ProduceRecord};
use rill_runtime::admin::client::ClientError;
use rill_runtime::schema::client::RegistryClient;
use rill_runtime::schema::{SchemaSource, SchemaType};
use rill_tests::host::TestHost;

use crate::kafka::have_python;

/// An order, ~150 bytes in Avro: the shape the validation benchmark sends too.
const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"long"},{"name":"customer","type":"string"},
  {"name":"amount_cents","type":"long"},{"name":"currency","type":"string"},
  {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item",
    "fields":[{"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}},
  {"name":"note","type":["null","string"],"default":null}]}"#;

/// Another record type, registered under another subject.
const PING: &str = r#"{"type":"record","name":"Ping","fields":[{"name":"n","type":"long"}]}"#;

fn zigzag(out: &mut Vec<u8>, n: i64) {
    let mut v = ((n << 1) ^ (n >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    zigzag(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Order `i` in Avro binary.
fn order(i: i64) -> Vec<u8> {
    let mut out = Vec::new();
    zigzag(&mut out, i);
    string(&mut out, &format!("customer-{}", i % 97));
    zigzag(&mut out, 1999 + i);
    string(&mut out, "EUR");
    zigzag(&mut out, 2);
    for k in 0..2 {
        string(&mut out, &format!("sku-{k}"));
        zigzag(&mut out, k + 1);
    }
    zigzag(&mut out, 0);
    zigzag(&mut out, 0); // note: null
    out
}

/// The schema framing: magic byte 0, the id big-endian, the payload.
fn framed(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A host with its registry, `orders-value` and `pings-value` registered, the topic
/// `orders` validating values and `free` not. Returns the ids of Order and Ping.
fn setup() -> (TestHost, RegistryClient, u32, u32) {
    let h = TestHost::start();
    let url = h
        .schema_registry
        .clone()
        .expect("the host serves a registry");
    let reg = RegistryClient::new(&url);
    let order_id = reg
        .register("orders-value", SchemaType::Avro, ORDER)
        .unwrap();
    let ping_id = reg.register("pings-value", SchemaType::Avro, PING).unwrap();
    h.cli_ok(&["topic", "create", "orders", "--value-schema-validation"]);
    h.cli_ok(&["topic", "create", "free"]);
    (h, reg, order_id, ping_id)
}

/// The four ways a value is refused, and the words the refusal must contain.
fn bad_values(order_id: u32, ping_id: u32) -> Vec<(&'static str, Vec<u8>, String)> {
    vec![
        (
            "unframed",
            br#"{"id":1}"#.to_vec(),
            "is not framed with a schema id".into(),
        ),
        (
            "unknown-id",
            framed(9999, &order(1)),
            "schema id 9999 is not registered".into(),
        ),
        (
            "other-subject",
            framed(ping_id, &order(1)),
            format!("schema id {ping_id} is not a version of subject 'orders-value'"),
        ),
        (
            "undecodable",
            framed(order_id, &order(1)[..10]),
            format!("does not decode with schema id {order_id}"),
        ),
    ]
}

async fn send(p: &FutureProducer, topic: &str, value: &[u8]) -> Result<(), KafkaError> {
    p.send(
        FutureRecord::<(), [u8]>::to(topic).payload(value),
        Duration::from_secs(20),
    )
    .await
    .map(|_| ())
    .map_err(|(e, _)| e)
}

#[test]
fn kafka_producers_get_invalid_record_with_the_reason() {
    let (h, _reg, order_id, ping_id) = setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", h.kafka.to_string())
        .set("message.send.max.retries", "0")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    rt.block_on(async {
        send(&producer, "orders", &framed(order_id, &order(7)))
            .await
            .expect("a good framed Avro order is accepted");
        // A tombstone carries no schema and passes.
        producer
            .send(
                FutureRecord::<str, [u8]>::to("orders").key("k"),
                Duration::from_secs(20),
            )
            .await
            .expect("a tombstone passes");
        for (case, value, _) in bad_values(order_id, ping_id) {
            let e = send(&producer, "orders", &value).await.unwrap_err();
            assert_eq!(
                e,
                KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord),
                "{case}"
            );
            // Validation off: the same bytes are just bytes.
            send(&producer, "free", &value).await.expect(case);
        }
    });
    let end = |t: &str| -> i64 {
        let info: rill_runtime::admin::api::TopicInfo =
            h.client().get(&format!("/v1/topics/{t}")).unwrap();
        info.partition_info[0].end
    };
    assert_eq!(end("orders"), 2, "nothing refused was appended");
    assert_eq!(end("free"), 4);

    // kafka-python reads Produce v8's record errors: the reason reaches the application.
    if have_python("kafka") {
        let mut args = vec![
            "--topic".to_string(),
            "orders".into(),
            format!("good={}", hex(&framed(order_id, &order(8)))),
        ];
        let bad = bad_values(order_id, ping_id);
        args.extend(bad.iter().map(|(c, v, _)| format!("{c}={}", hex(v))));
        let out = python(&h, "schema_produce.py", &args);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["ok"], true, "{out}");
        for ((case, _, words), line) in bad.iter().zip(&lines[1..]) {
            assert_eq!(line["case"], *case);
            let e = line["error"].as_str().unwrap_or_default();
            assert!(
                e.contains("InvalidRecord") && e.contains(words.as_str()),
                "{case}: {e}"
            );
        }
    }
}

fn python(h: &TestHost, script: &str, args: &[String]) -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka");
    let out = Command::new("python3")
        .arg(dir.join(script))
        .arg("--bootstrap")
        .arg(h.kafka.to_string())
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{script}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn the_admin_door_refuses_with_one_line_and_appends_nothing() {
    let (h, _reg, order_id, ping_id) = setup();
    let c = h.client();
    let record = |v: &[u8]| ProduceRecord {
        value_b64: Some(b64(v)),
        ..ProduceRecord::default()
    };
    let good = record(&framed(order_id, &order(1)));
    let tombstone = ProduceRecord {
        key: Some("gone".into()),
        ..ProduceRecord::default()
    };
    let _: serde_json::Value = c
        .post(
            "/v1/topics/orders/records",
            &Produce {
                records: vec![good.clone(), tombstone],
            },
        )
        .expect("good records and tombstones are accepted");
    for (case, value, words) in bad_values(order_id, ping_id) {
        // The bad record second: the good one before it is not appended either.
        let req = Produce {
            records: vec![good.clone(), record(&value)],
        };
        let e = c
            .post::<_, serde_json::Value>("/v1/topics/orders/records", &req)
            .unwrap_err();
        let ClientError::Api { status, message } = e else {
            panic!("{case}: {e}");
        };
        assert_eq!(status, 400, "{case}: {message}");
        assert!(
            message.starts_with("record 1:") && message.contains(&words),
            "{case}: {message}"
        );
        assert!(!message.trim().contains('\n'), "one line: {message}");
        let _: serde_json::Value = c.post("/v1/topics/free/records", &req).expect(case);
    }
    let info: rill_runtime::admin::api::TopicInfo = c.get("/v1/topics/orders").unwrap();
    assert_eq!(info.partition_info[0].end, 2);
    // Framed keys are checked against `<topic>-key` on a topic that validates keys.
    h.cli_ok(&["topic", "create", "keyed", "--key-schema-validation"]);
    let keyed = ProduceRecord {
        key_b64: Some(b64(&framed(order_id, &order(2)))),
        value: Some("anything".into()),
        ..ProduceRecord::default()
    };
    let e = c
        .post::<_, serde_json::Value>(
            "/v1/topics/keyed/records",
            &Produce {
                records: vec![keyed],
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a version of subject 'keyed-key'"), "{e}");
    let described = h.cli_ok(&["topic", "describe", "keyed"]);
    assert!(described.contains("schema validation: keys"), "{described}");
}

fn cli(h: &TestHost, url: &str, args: &[&str]) -> Output {
    let mut all = vec!["schema", "--registry", url];
    all.extend_from_slice(args);
    h.cli(&all)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_schema_cli_registers_lists_shows_checks_and_configures() {
    let h = TestHost::start();
    let url = h.schema_registry.clone().expect("registry");
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("order.avsc");
    std::fs::write(&v1, ORDER).unwrap();
    // Adding a field without a default: not backward compatible.
    let v2 = dir.path().join("order2.avsc");
    std::fs::write(
        &v2,
        ORDER.replace(
            r#"{"name":"id","type":"long"},"#,
            r#"{"name":"id","type":"long"},{"name":"region","type":"string"},"#,
        ),
    )
    .unwrap();
    let v1s = v1.to_str().unwrap();
    let v2s = v2.to_str().unwrap();

    let out = cli(&h, &url, &["register", "orders-value", v1s]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out).trim(),
        "registered orders-value version 1 id 1"
    );
    // Registering the same schema again finds it.
    assert_eq!(
        stdout(&cli(&h, &url, &["register", "orders-value", v1s])).trim(),
        "registered orders-value version 1 id 1"
    );
    assert_eq!(stdout(&cli(&h, &url, &["list"])).trim(), "orders-value");
    assert_eq!(
        stdout(&cli(&h, &url, &["list", "orders-value"])).trim(),
        "1"
    );
    let shown = stdout(&cli(&h, &url, &["show", "orders-value"]));
    assert!(
        shown.starts_with("subject orders-value version 1 id 1 type AVRO\n"),
        "{shown}"
    );
    assert!(shown.contains("\"name\": \"Order\""), "{shown}");
    let by_id = stdout(&cli(&h, &url, &["show", "--id", "1"]));
    assert!(by_id.starts_with("id 1 type AVRO\n"), "{by_id}");

    let check = cli(&h, &url, &["check", "orders-value", v2s]);
    assert!(
        !check.status.success(),
        "an incompatible schema exits non-zero"
    );
    assert!(stdout(&check).contains("region"), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("not compatible with orders-value"),
        "{check:?}"
    );
    assert!(
        cli(&h, &url, &["check", "orders-value", v1s])
            .status
            .success()
    );

    assert_eq!(
        stdout(&cli(&h, &url, &["config"])).trim(),
        "global: BACKWARD"
    );
    let set = cli(&h, &url, &["config", "orders-value", "--set", "none"]);
    assert_eq!(stdout(&set).trim(), "orders-value: NONE", "{set:?}");
    // Under NONE the same change is accepted.
    assert!(
        cli(&h, &url, &["check", "orders-value", v2s])
            .status
            .success()
    );
    let bad = cli(&h, &url, &["config", "--set", "SOMETIMES"]);
    assert!(!bad.status.success());

    let missing = cli(&h, &url, &["show", "nope"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("40401") && err.lines().count() == 1, "{err}");
    let down = cli(&h, "http://127.0.0.1:9", &["list"]);
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("http://127.0.0.1:9"),
        "{down:?}"
    );

    let del = cli(&h, &url, &["delete", "orders-value", "--permanent"]);
    assert!(del.status.success(), "{del:?}");
    assert_eq!(stdout(&cli(&h, &url, &["list"])).trim(), "");
}

#[test]
fn consume_decode_prints_framed_records_as_json() {
    let (h, reg, order_id, _ping_id) = setup();
    let c = h.client();
    let records = vec![
        ProduceRecord {
            value_b64: Some(b64(&framed(order_id, &order(5)))),
            ..ProduceRecord::default()
        },
        ProduceRecord {
            value: Some("plain text".into()),
            ..ProduceRecord::default()
        },
        ProduceRecord {
            value_b64: Some(b64(&framed(4242, &order(5)))),
            ..ProduceRecord::default()
        },
    ];
    let _: serde_json::Value = c
        .post("/v1/topics/free/records", &Produce { records })
        .unwrap();
    let url = reg.base().to_owned();
    let out = h.cli_ok(&["consume", "free", "--decode", "--registry", &url]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let (at, json) = lines[0].split_once(' ').unwrap();
    assert_eq!(at, "0:0");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["id"], 5);
    assert_eq!(v["customer"], "customer-5");
    assert_eq!(v["items"][1]["qty"], 2);
    assert_eq!(lines[1], "0:1 plain text");
    assert_eq!(lines[2], "0:2 [schema id 4242 is not registered]");
    // Without --decode the bytes print as before.
    let raw = h.cli_ok(&["consume", "free"]);
    assert!(raw.lines().nth(1) == Some("0:1 plain text"), "{raw}");
}

#[test]
fn without_a_registry_validating_topics_refuse_retriably() {
    let h = TestHost::start_with(&["--no-schema-registry"]);
    h.cli_ok(&["topic", "create", "orders", "--value-schema-validation"]);
    let value = framed(1, &order(1));
    let e = h
        .client()
        .post::<_, serde_json::Value>(
            "/v1/topics/orders/records",
            &Produce {
                records: vec![ProduceRecord {
                    value_b64: Some(b64(&value)),
                    ..ProduceRecord::default()
                }],
            },
        )
        .unwrap_err();
    let ClientError::Api { status, message } = e else {
        panic!("{e}");
    };
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("no schema registry"), "{message}");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", h.kafka.to_string())
        .set("message.send.max.retries", "0")
        .set("message.timeout.ms", "5000")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(send(&producer, "orders", &value))
        .expect_err("never appended unchecked");
    assert!(
        matches!(
            e,
            KafkaError::MessageProduction(
                RDKafkaErrorCode::RequestTimedOut | RDKafkaErrorCode::MessageTimedOut
            )
        ),
        "{e:?}"
    );
    let info: rill_runtime::admin::api::TopicInfo = h.client().get("/v1/topics/orders").unwrap();
    assert_eq!(info.partition_info[0].end, 0);
}

/// `_schemas` belongs to the registry: neither door deletes it or takes records for it
/// from clients, and the registry keeps working.
#[test]
fn the_registry_topic_is_the_registrys_own() {
    let (h, reg, _order_id, _ping_id) = setup();
    let out = h.cli(&["topic", "delete", "_schemas"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("schema registry"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let produce = Produce {
        records: vec![ProduceRecord {
            key: Some("k".into()),
            value: Some("v".into()),
            ..ProduceRecord::default()
        }],
    };
    let refused = h
        .client()
        .post::<_, serde_json::Value>("/v1/topics/_schemas/records", &produce);
    assert!(
        matches!(refused, Err(ClientError::Api { status: 409, .. })),
        "{refused:?}"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", h.kafka.to_string())
        .set("message.send.max.retries", "0")
        .create()
        .unwrap();
    let sent = rt.block_on(send(&producer, "_schemas", b"{}"));
    assert!(
        matches!(
            sent,
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::InvalidTopic
            ))
        ),
        "{sent:?}"
    );
    assert!(
        reg.versions("orders-value").is_ok(),
        "the registry still answers"
    );
}
