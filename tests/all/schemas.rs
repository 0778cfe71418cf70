//! The schema registry (docs/schemas.md): Confluent's REST API as its clients use it, its
//! error codes, and its durability across restarts and SIGKILL.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use rill_runtime::schema::SourceError;
use rill_runtime::schema::client::RegistryClient;
use rill_tests::host::TestHost;

fn registry(h: &TestHost) -> RegistryClient {
    RegistryClient::new(
        h.schema_registry
            .as_deref()
            .expect("the host serves a schema registry"),
    )
}

fn avro(fields: Value) -> Value {
    json!({"schema": json!({"type": "record", "name": "Order", "namespace": "shop", "fields": fields}).to_string()})
}

/// The Confluent error code of a refused call.
fn code(r: Result<Value, SourceError>) -> u32 {
    match r {
        Err(SourceError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Everything a client can see, for comparing before and after a restart.
fn dump(r: &RegistryClient) -> Value {
    let subjects = r.get("/subjects?deleted=true").unwrap();
    let mut out = json!({
        "subjects": subjects,
        "global": r.get("/config").unwrap(),
    });
    for s in subjects.as_array().unwrap() {
        let s = s.as_str().unwrap();
        let versions = r
            .get(&format!("/subjects/{s}/versions?deleted=true"))
            .unwrap();
        let mut vs = Vec::new();
        for v in versions.as_array().unwrap() {
            vs.push(
                r.get(&format!("/subjects/{s}/versions/{v}?deleted=true"))
                    .unwrap(),
            );
        }
        out[s] = json!({
            "live": r.get(&format!("/subjects/{s}/versions")).ok(),
            "versions": vs,
            "config": r.get(&format!("/config/{s}")).ok(),
        });
    }
    out
}

/// confluent-kafka's SchemaRegistryClient and its Avro, JSON Schema and Protobuf
/// serializers, unchanged, produce and consume through the Kafka door against Rill's
/// registry; the ids they framed are the registry's.
#[test]
fn confluent_serializers_work_against_the_registry() {
    if !crate::kafka::have_python("confluent_kafka.schema_registry.avro, google.protobuf, fastavro")
    {
        return;
    }
    let h = TestHost::start();
    let url = h.schema_registry.clone().expect("registry url");
    let out = Command::new("python3")
        .arg("schema_registry_serdes.py")
        .args([
            "--bootstrap",
            &h.kafka.to_string(),
            "--topic",
            "sr",
            "--registry",
            &url,
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/kafka"))
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schema_registry_serdes.py failed:\n{stdout}\n{}\n--- host log\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.log()
    );
    let seen: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("the script's JSON line");
    let r = registry(&h);
    // The ids in the records' framing are the ones the registry gives out.
    assert_eq!(
        r.get("/subjects/sr-avro-value/versions/1").unwrap()["id"],
        seen["avro_v1_id"]
    );
    assert_eq!(
        r.get("/subjects/sr-avro-value/versions/2").unwrap()["id"],
        seen["avro_v2_id"]
    );
    assert_eq!(
        r.get("/subjects/sr-avro-value/versions/3").unwrap()["id"],
        seen["avro_v3_id"]
    );
    assert_eq!(
        r.get("/subjects/sr-json-value/versions/latest").unwrap()["id"],
        seen["json_id"]
    );
    assert_eq!(
        r.get("/subjects/sr-proto-value/versions/latest").unwrap()["id"],
        seen["proto_id"]
    );
    let refusal = seen["v3_refused"].as_str().unwrap();
    assert!(
        refusal.contains("region"),
        "the refusal names the field: {refusal}"
    );
}

/// The error codes Confluent's clients act on.
#[test]
fn registry_refusals_carry_confluents_error_codes() {
    let h = TestHost::start();
    let r = registry(&h);
    let v1 = avro(json!([{"name": "id", "type": "string"}]));
    let v2 =
        avro(json!([{"name": "id", "type": "string"}, {"name": "n", "type": "int", "default": 0}]));
    let bad = avro(json!([{"name": "id", "type": "long"}]));

    assert_eq!(code(r.get("/subjects/nope/versions")), 40401);
    assert_eq!(r.post("/subjects/o-value/versions", &v1).unwrap()["id"], 1);
    assert_eq!(r.post("/subjects/o-value/versions", &v2).unwrap()["id"], 2);
    assert_eq!(code(r.get("/subjects/o-value/versions/7")), 40402);
    assert_eq!(code(r.get("/subjects/o-value/versions/zero")), 42202);
    assert_eq!(code(r.get("/schemas/ids/99")), 40403);
    assert_eq!(code(r.post("/subjects/o-value/versions", &bad)), 409);
    assert_eq!(
        code(r.post(
            "/subjects/o-value/versions",
            &json!({"schema": "{\"type\": \"recrod\"}"})
        )),
        42201
    );
    assert_eq!(
        code(r.post(
            "/subjects/o-value/versions",
            &json!({"schema": "x", "schemaType": "XML"})
        )),
        42201
    );
    assert_eq!(
        code(r.put("/config", &json!({"compatibility": "SIDEWAYS"}))),
        42203
    );
    assert_eq!(code(r.get("/config/o-value")), 40408);
    assert_eq!(
        r.get("/config/o-value?defaultToGlobal=true").unwrap()["compatibilityLevel"],
        "BACKWARD"
    );
    // The same schema under another subject keeps its id; lookups find versions.
    assert_eq!(
        r.post("/subjects/other-value/versions", &v2).unwrap()["id"],
        2
    );
    assert_eq!(r.post("/subjects/o-value", &v1).unwrap()["version"], 1);
    assert_eq!(code(r.post("/subjects/o-value", &bad)), 40403);
    assert_eq!(
        r.get("/schemas/ids/2/versions").unwrap(),
        json!([{"subject": "o-value", "version": 2}, {"subject": "other-value", "version": 1}])
    );
    // Compatibility checks, verbose.
    let c = r
        .post(
            "/compatibility/subjects/o-value/versions/latest?verbose=true",
            &bad,
        )
        .unwrap();
    assert_eq!(c["is_compatible"], false, "{c}");
    assert!(!c["messages"].as_array().unwrap().is_empty(), "{c}");
    assert_eq!(
        r.post("/compatibility/subjects/o-value/versions/1", &v2)
            .unwrap()["is_compatible"],
        true
    );
    // Deletes: soft first, then permanent.
    assert_eq!(
        code(r.delete("/subjects/o-value/versions/1?permanent=true")),
        40407
    );
    assert_eq!(r.delete("/subjects/o-value/versions/1").unwrap(), 1);
    assert_eq!(code(r.delete("/subjects/o-value/versions/1")), 40406);
    assert_eq!(r.get("/subjects/o-value/versions").unwrap(), json!([2]));
    assert_eq!(
        r.delete("/subjects/o-value/versions/1?permanent=true")
            .unwrap(),
        1
    );
    assert_eq!(
        code(r.delete("/subjects/other-value?permanent=true")),
        40405
    );
    assert_eq!(r.delete("/subjects/other-value").unwrap(), json!([1]));
    assert_eq!(code(r.delete("/subjects/other-value")), 40404);
    assert_eq!(r.get("/subjects").unwrap(), json!(["o-value"]));
    assert_eq!(
        r.get("/subjects?deleted=true").unwrap(),
        json!(["o-value", "other-value"])
    );
    assert_eq!(
        r.get("/schemas/types").unwrap(),
        json!(["JSON", "PROTOBUF", "AVRO"])
    );
}

/// A schema may refer to another subject's version; a referenced version cannot be deleted
/// while a live schema refers to it.
#[test]
fn avro_references_resolve_through_other_subjects() {
    let h = TestHost::start();
    let r = registry(&h);
    let money = json!({"schema": json!({"type": "record", "name": "Money", "namespace": "shop",
        "fields": [{"name": "cents", "type": "long"}, {"name": "currency", "type": "string"}]}).to_string()});
    r.post("/subjects/money/versions", &money).unwrap();
    let order = json!({
        "schema": json!({"type": "record", "name": "Order", "namespace": "shop",
            "fields": [{"name": "id", "type": "string"}, {"name": "total", "type": "shop.Money"}]}).to_string(),
        "references": [{"name": "shop.Money", "subject": "money", "version": 1}],
    });
    let id = r.post("/subjects/orders-value/versions", &order).unwrap()["id"]
        .as_u64()
        .unwrap();
    let by_id = r.get(&format!("/schemas/ids/{id}")).unwrap();
    assert_eq!(by_id["references"][0]["subject"], "money", "{by_id}");
    assert_eq!(
        r.get("/subjects/money/versions/1/referencedby").unwrap(),
        json!([id])
    );
    assert_eq!(code(r.delete("/subjects/money/versions/1")), 42206);
    // Without the reference the type is unknown: an invalid schema.
    let dangling = json!({"schema": order["schema"]});
    assert_eq!(code(r.post("/subjects/x-value/versions", &dangling)), 42201);
}

/// Ids, versions, deletions and levels are the same after a clean restart and after a
/// SIGKILL; an id permanently deleted is never handed out again.
#[test]
fn registry_survives_restarts_and_sigkill() {
    let mut h = TestHost::start();
    let r = registry(&h);
    for i in 0..5 {
        let fields = json!([{"name": "id", "type": "string"}, {"name": format!("f{i}"), "type": "int", "default": i}]);
        r.post("/subjects/a-value/versions", &avro(fields)).unwrap();
    }
    let json_schema = json!({"schemaType": "JSON", "schema": json!({"type": "object", "properties": {"x": {"type": "integer"}}}).to_string()});
    r.post("/subjects/b-value/versions", &json_schema).unwrap();
    r.put("/config", &json!({"compatibility": "FULL_TRANSITIVE"}))
        .unwrap();
    r.put("/config/a-value", &json!({"compatibility": "NONE"}))
        .unwrap();
    r.delete("/subjects/a-value/versions/2").unwrap();
    // The highest id, deleted for good.
    r.delete("/subjects/b-value").unwrap();
    r.delete("/subjects/b-value?permanent=true").unwrap();
    let before = dump(&r);

    assert!(h.stop(), "clean stop; log:\n{}", h.log());
    h.spawn();
    assert_eq!(dump(&registry(&h)), before, "after a clean restart");

    h.kill();
    h.spawn();
    let r = registry(&h);
    assert_eq!(dump(&r), before, "after SIGKILL");
    let next = r
        .post(
            "/subjects/c-value/versions",
            &avro(json!([{"name": "z", "type": "long"}])),
        )
        .unwrap();
    assert_eq!(
        next["id"], 7,
        "ids 1-5 are a-value's, 6 was b-value's (deleted): {next}"
    );

    // Writes acknowledged just before a SIGKILL are there after it.
    for i in 0..20 {
        r.post(
            &format!("/subjects/k{i}-value/versions"),
            &avro(json!([{"name": format!("k{i}"), "type": "long"}])),
        )
        .unwrap();
    }
    let before = dump(&r);
    h.kill();
    h.spawn();
    assert_eq!(
        dump(&registry(&h)),
        before,
        "after a SIGKILL right after the writes"
    );
}

/// `--no-schema-registry` turns it off; the ready line and `runtime status` say so.
#[test]
fn the_registry_is_named_in_status_and_can_be_off() {
    let h = TestHost::start();
    let status = h.cli_ok(&["status"]);
    let url = h.schema_registry.clone().unwrap();
    assert!(
        status.contains(&format!("schema registry {url} (this host")),
        "{status}"
    );
    let off = TestHost::start_with(&["--no-schema-registry"]);
    assert!(off.schema_registry.is_none());
    assert!(off.cli_ok(&["status"]).contains("schema registry off"));
}

/// The evolution with confluent-kafka's AvroSerializer as the producer: orders
/// written with v1, then v2 (rename through an alias, a field with a default), v3 refused;
/// the `order-created` handler, built for v1, reads every one of them.
#[test]
fn a_v1_handler_reads_what_confluents_serializer_wrote_with_v1_and_v2() {
    if !crate::kafka::have_python("confluent_kafka.schema_registry.avro, fastavro") {
        return;
    }
    let h = TestHost::start();
    let url = h.schema_registry.clone().expect("registry url");
    h.cli_ok(&["topic", "create", "orders"]);
    h.cli_ok(&["topic", "create", "order-lines"]);
    h.cli_ok(&[
        "deploy",
        rill_tests::guests::ORDER_CREATED,
        "--name",
        "orders",
        "--topic",
        "orders",
        "--output",
        "order-lines",
    ]);
    let schemas = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/order-created/schemas"
    );
    let out = Command::new("python3")
        .arg("schema_order_created.py")
        .args([
            "--bootstrap",
            &h.kafka.to_string(),
            "--topic",
            "orders",
            "--registry",
            &url,
            "--schemas",
            schemas,
        ])
        .args(["--count", "60"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/kafka"))
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "schema_order_created.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = h
        .wait_for(std::time::Duration::from_secs(30), || {
            let f: rill_runtime::admin::api::Fetched = h
                .client()
                .post(
                    "/v1/topics/order-lines/fetch",
                    &rill_runtime::admin::api::Fetch {
                        from: Some("earliest".into()),
                        max_records: 1000,
                        ..Default::default()
                    },
                )
                .ok()?;
            (f.records.len() >= 60).then_some(f)
        })
        .unwrap_or_else(|| {
            panic!(
                "the handler did not read every order; host log:\n{}",
                h.log()
            )
        })
        .records
        .iter()
        .map(|r| serde_json::from_str(r.value.as_deref().unwrap()).unwrap())
        .collect();
    let expected: Vec<Value> =
        (0..60).map(|i| json!({"order_id": format!("o-{i}"), "customer": format!("c-{i}"), "total_cents": i})).collect();
    assert_eq!(lines, expected);
    let deployment = h.cli_ok(&["list"]);
    assert!(deployment.contains("orders"), "{deployment}");
}

/// A JSON Schema typed handler (`tests/guests/json-orders`) between confluent-kafka's JSON
/// serdes: orders from `JSONSerializer` (its writer schema has a field the handler's reader
/// lacks) become shipments framed with the id the registry gave the handler's writer
/// schema, which a `JSONDeserializer` without a schema of its own fetches and validates
/// against. Then a version the reader cannot read refuses the next deploy.
#[test]
fn a_json_schema_handler_speaks_confluents_json_serdes() {
    if !crate::kafka::have_python("confluent_kafka.schema_registry.json_schema, jsonschema") {
        return;
    }
    let h = TestHost::start();
    let url = h.schema_registry.clone().expect("registry url");
    for t in ["json-orders", "json-shipments"] {
        h.cli_ok(&["topic", "create", t]);
    }
    let deploy = |name: &str| {
        h.cli(&[
            "deploy",
            rill_tests::guests::JSON_ORDERS,
            "--name",
            name,
            "--topic",
            "json-orders",
        ])
    };
    let first = deploy("json-orders");
    assert!(first.status.success(), "{first:?}");
    let out = crate::kafka::script(
        &h,
        "schema_json_orders.py",
        &[
            "--topic",
            "json-orders",
            "--output",
            "json-shipments",
            "--registry",
            &url,
            "--count",
            "40",
        ],
    );
    let got: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    let expected: Vec<Value> = (0..40)
        .map(|i| json!({"order_id": format!("j-{i}"), "cents": 500 * i, "express": 500 * i >= 10_000}))
        .collect();
    assert_eq!(got["shipments"], json!(expected));
    let r = registry(&h);
    let writer = r
        .get("/subjects/json-shipments-value/versions/latest")
        .unwrap();
    assert_eq!(writer["schemaType"], "JSON", "{writer}");
    assert_eq!(got["ids"], json!([writer["id"]]), "{writer}");

    // A version whose total_cents is a string: the reader cannot read it.
    r.put(
        "/config/json-orders-value",
        &json!({"compatibility": "NONE"}),
    )
    .unwrap();
    let string_cents = json!({"type": "object",
        "properties": {"order_id": {"type": "string"}, "total_cents": {"type": "string"}},
        "required": ["order_id", "total_cents"]});
    r.post(
        "/subjects/json-orders-value/versions",
        &json!({"schemaType": "JSON", "schema": string_cents.to_string()}),
    )
    .unwrap();
    let refused = deploy("json-orders-2");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "deployed: {refused:?}");
    assert!(
        stderr.contains("reader schema for subject 'json-orders-value' cannot read version 2"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
