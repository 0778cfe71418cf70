//! Schemas in cluster mode (docs/schemas.md): a cluster host serves no registry of its own;
//! given `--schema-registry-url` it checks typed handlers at deploy and resolves writer ids
//! through that registry. Here the registry is another Rill host's, the producer is
//! confluent-kafka's AvroSerializer writing to Apache Kafka, and `order-created` (built for
//! v1) reads the v1 and v2 orders on the cluster.

use std::process::{Command, Stdio};

use rill_tests::apache::unique;
use rill_tests::cluster::{Cluster, consume, create_topic};
use rill_tests::guests;
use rill_tests::host::TestHost;
use serde_json::{Value, json};

use super::{broker, logs, serial};

#[test]
fn a_typed_handler_on_the_cluster_uses_the_registry_by_url() {
    let Some(bootstrap) = broker() else { return };
    if !crate::kafka::have_python("confluent_kafka.schema_registry.avro, fastavro") {
        return;
    }
    let _serial = serial();
    let registry_host = TestHost::start();
    let url = registry_host.schema_registry.clone().expect("a registry");
    let cluster = Cluster::new(&bootstrap);
    let name = unique("typed");
    let (topic, out) = (format!("{name}-orders"), format!("{name}-lines"));
    create_topic(&bootstrap, &topic, 2, 1, &[]);
    create_topic(&bootstrap, &out, 1, 1, &[]);
    let h = cluster.host_with(&format!("{name}-a"), &["--schema-registry-url", &url]);
    assert!(
        h.schema_registry.is_none(),
        "a cluster host serves no registry"
    );
    assert!(
        h.cli_ok(&["status"])
            .contains(&format!("schema registry {url} (external)"))
    );

    let schemas = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/order-created/schemas"
    );
    let run = Command::new("python3")
        .arg("schema_order_created.py")
        .args([
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topic,
            "--registry",
            &url,
            "--schemas",
            schemas,
        ])
        .args(["--count", "40"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/kafka"))
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        run.status.success(),
        "schema_order_created.py failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // v1 and v2 are registered: the v1 reader is accepted, checked against both.
    h.cli_ok(&[
        "deploy",
        guests::ORDER_CREATED,
        "--name",
        &name,
        "--topic",
        &topic,
        "--output",
        &out,
        "--env",
        &format!("output={out}"),
    ]);
    let mut got: Vec<Value> = Vec::new();
    let done = h.wait_for(super::WAIT, || {
        got = consume(&bootstrap, &out)
            .iter()
            .filter_map(|r| serde_json::from_str(r.value.as_deref()?).ok())
            .collect();
        (got.len() >= 40).then_some(())
    });
    assert!(
        done.is_some(),
        "{} of 40 orders read\n{}",
        got.len(),
        logs(&[&h, &registry_host])
    );
    got.sort_by_key(|v| v["total_cents"].as_i64());
    let expected: Vec<Value> =
        (0..40).map(|i| json!({"order_id": format!("o-{i}"), "customer": format!("c-{i}"), "total_cents": i})).collect();
    assert_eq!(got, expected);
}
