//! Apache Kafka's own command-line tools against Rill (issue 11): `kafka-topics`,
//! `kafka-configs`, `kafka-console-producer`/`-consumer` and `kafka-consumer-groups`, run
//! through `scripts/kafka.sh tool` against a real `runtime serve`.
//!
//! Each tool is a JVM that takes a second or two to start, so each test runs only the
//! invocations that prove something. The tools need Java and Kafka's jars (`scripts/kafka.sh
//! fetch`, which `scripts/test.sh` runs); without Java these tests skip loudly, unless
//! `RILL_REQUIRE_KAFKA_CLIENTS` is set, when they fail.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use rill_tests::apache::{launcher, unique};
use rill_tests::host::TestHost;

/// Whether Java is there to run the tools; if not, panics when clients are required, else
/// says so loudly.
fn have_java() -> bool {
    let ok = Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = "Kafka's tools need Java 17+ (apt-get install -y openjdk-17-jdk-headless)";
        if std::env::var_os("RILL_REQUIRE_KAFKA_CLIENTS").is_some() {
            panic!("{msg} (RILL_REQUIRE_KAFKA_CLIENTS is set, so this is a failure)");
        }
        eprintln!("\n!!!!!!!!!! SKIPPED: {msg} !!!!!!!!!!\n");
    }
    ok
}

/// Runs `kafka.sh tool NAME --bootstrap-server <host> ARGS...` with `stdin`; returns stdout,
/// panicking with both streams and the host's log if the tool fails.
fn tool(h: &TestHost, name: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = tool_output(h, name, args, stdin);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n--- stdout\n{stdout}\n--- stderr\n{}\n--- host log\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.log()
    );
    stdout
}

fn tool_output(h: &TestHost, name: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(launcher())
        .arg("tool")
        .arg(name)
        .arg("--bootstrap-server")
        .arg(h.kafka.to_string())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/kafka.sh");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for the tool")
}

/// `kafka-topics` creates (with a config), lists, describes, grows (CreatePartitions) and
/// deletes; `kafka-configs` shows the topic's configs under Kafka's names.
#[test]
fn kafka_topics_and_kafka_configs_manage_rill_topics() {
    if !have_java() {
        return;
    }
    let h = TestHost::start();
    let topic = unique("tools-topic");
    tool(
        &h,
        "kafka-topics",
        &[
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--config",
            "max.message.bytes=2000000",
        ],
        None,
    );
    let list = tool(&h, "kafka-topics", &["--list"], None);
    assert!(list.lines().any(|l| l.trim() == topic), "{list}");

    // CreatePartitions, then Metadata as the tool reads it.
    tool(
        &h,
        "kafka-topics",
        &["--alter", "--topic", &topic, "--partitions", "5"],
        None,
    );
    let described = tool(&h, "kafka-topics", &["--describe", "--topic", &topic], None);
    assert!(described.contains("PartitionCount: 5"), "{described}");
    assert!(
        described.contains("max.message.bytes=2000000"),
        "the tool lists configs set on the topic (DescribeConfigs): {described}"
    );
    for p in 0..5 {
        assert!(
            described.contains(&format!("Partition: {p}\tLeader: 0")),
            "{described}"
        );
    }

    let configs = tool(
        &h,
        "kafka-configs",
        &[
            "--describe",
            "--all",
            "--entity-type",
            "topics",
            "--entity-name",
            &topic,
        ],
        None,
    );
    for line in [
        "max.message.bytes=2000000",
        "cleanup.policy=delete",
        "message.timestamp.type=CreateTime",
        // Values of these follow the host's topic defaults; their names are Kafka's.
        "segment.bytes=",
        "retention.ms=",
        "flush.ms=",
        "rill.flush=",
    ] {
        assert!(configs.contains(line), "{line} missing in:\n{configs}");
    }

    tool(&h, "kafka-topics", &["--delete", "--topic", &topic], None);
    let list = tool(&h, "kafka-topics", &["--list"], None);
    assert!(!list.lines().any(|l| l.trim() == topic), "{list}");
}

/// Keyed records through `kafka-console-producer` come back through `kafka-console-consumer`
/// in a group; `kafka-consumer-groups --describe` shows its committed offsets and the lag of
/// records produced afterwards; `--delete` deletes the group (DeleteGroups).
#[test]
fn console_producer_consumer_and_consumer_groups_round_trip() {
    if !have_java() {
        return;
    }
    let h = TestHost::start();
    let topic = unique("tools-console");
    let group = unique("tools-group");
    h.cli_ok(&["topic", "create", &topic, "--partitions", "1"]);
    let sent: Vec<(String, String)> = (0..10)
        .map(|i| (format!("k{i}"), format!("value {i} é")))
        .collect();
    let input: String = sent.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    tool(
        &h,
        "kafka-console-producer",
        &[
            "--topic",
            &topic,
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ],
        Some(&input),
    );
    let got = tool(
        &h,
        "kafka-console-consumer",
        &[
            "--topic",
            &topic,
            "--group",
            &group,
            "--from-beginning",
            "--max-messages",
            "10",
            "--timeout-ms",
            "30000",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=:",
        ],
        None,
    );
    let got: Vec<(String, String)> = got
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, sent);

    // Three more records the group has not read: lag 3.
    let out = h.cli_stdin(&["produce", &topic], "a\nb\nc\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let described = tool(
        &h,
        "kafka-consumer-groups",
        &["--describe", "--group", &group],
        None,
    );
    let row = described
        .lines()
        .find(|l| l.contains(&topic))
        .unwrap_or_else(|| panic!("no row for {topic}:\n{described}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
    assert_eq!(&cols[2..6], &["0", "10", "13", "3"], "{described}");

    let deleted = tool(
        &h,
        "kafka-consumer-groups",
        &["--delete", "--group", &group],
        None,
    );
    assert!(deleted.contains("successful"), "{deleted}");
    let gone = tool_output(
        &h,
        "kafka-consumer-groups",
        &["--describe", "--group", &group],
        None,
    );
    let text =
        String::from_utf8_lossy(&gone.stdout).to_string() + &String::from_utf8_lossy(&gone.stderr);
    assert!(text.contains("does not exist"), "{text}");
}

/// `kafka-transactions` lists and describes Rill's transactions (ListTransactions,
/// FindCoordinator for a transactional id, DescribeTransactions): one committed, one left
/// open by a confluent-kafka producer that exited without ending it.
#[test]
fn kafka_transactions_lists_and_describes_rill_transactions() {
    if !have_java() || !crate::kafka::have_python("confluent_kafka") {
        return;
    }
    let h = TestHost::start();
    let topic = unique("tools-txn");
    h.cli_ok(&["topic", "create", &topic, "--partitions", "2"]);
    let (done, open) = (unique("txn-done"), unique("txn-open"));
    let script = format!(
        r#"
from confluent_kafka import Producer
for tid, commit in (("{done}", True), ("{open}", False)):
    p = Producer({{"bootstrap.servers": "{bootstrap}", "transactional.id": tid}})
    p.init_transactions(15)
    p.begin_transaction()
    p.produce("{topic}", value=b"v", partition=1)
    p.flush(10)
    if commit:
        p.commit_transaction(15)
"#,
        bootstrap = h.kafka
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = tool(&h, "kafka-transactions", &["list"], None);
    let row = |tid: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(tid))
            .unwrap_or_else(|| panic!("{tid} not listed:\n{list}"))
            .to_owned()
    };
    assert!(row(&done).contains("CompleteCommit"), "{list}");
    assert!(row(&open).contains("Ongoing"), "{list}");
    let described = tool(
        &h,
        "kafka-transactions",
        &["describe", "--transactional-id", &open],
        None,
    );
    assert!(described.contains("Ongoing"), "{described}");
    assert!(
        described.contains(&format!("{topic}-1")),
        "the open transaction's partition: {described}"
    );
}
