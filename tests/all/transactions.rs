//! The differential suite for Kafka transactions: four scenarios, each run by three clients
//! (confluent-kafka `tests/kafka/diff/confluent_txn.py`, Java kafka-clients 4.1.1
//! `tests/kafka/java/DiffTxn.java` through `DiffClient`, franz-go `tests/kafka/go/txn.go`)
//! against Apache Kafka 4.1.1 and against Rill, observations compared ([`rill_tests::diff`]).
//!
//! - `txn-commit-abort`: one transactional producer writes transaction A (committed), B
//!   (aborted) and C (committed) to explicit partitions of a 2-partition topic;
//!   read_committed and read_uncommitted readers from the start, the offsets the producer was
//!   given, and the end offsets with both isolation levels.
//! - `txn-offsets`: consume-transform-produce in a consumer group; round 1 commits its
//!   output and its input offsets in one transaction, round 2 aborts; the group's committed
//!   offset after each, and the output topic as both isolation levels read it.
//! - `txn-fencing`: producer P2 initialises the transactional id under which P1 has a
//!   transaction open; P1's next send and its commit fail as fenced, its transaction is
//!   aborted, P2's commits.
//! - `txn-lso`: while a transaction is open a read_committed reader stops at its first record
//!   (the last stable offset), also for a later record written outside any transaction, and
//!   ListOffsets read_committed answers that offset; after the commit the reader goes on.
//!
//! Every record goes to an explicit partition and every transaction is flushed before it
//! ends, so offsets are the same in every run and are compared exactly: each commit or abort
//! marker takes an offset of each partition the transaction wrote to, so record offsets have
//! gaps and end offsets count the markers (see [`expected`]).
//!
//! Before running against Rill, each test checks Apache Kafka's own observation against
//! [`expected`]: the facts that show the scenario exercised what it claims (a client that
//! silently did nothing would otherwise make both brokers agree). The observations of Rill
//! must then be equal to Kafka's, with no deviation allowed.
//!
//! Skips loudly without the reference broker (`RILL_TEST_APACHE_KAFKA`) or a client, and
//! fails instead when `RILL_REQUIRE_KAFKA_CLIENTS` is set.

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::{Value, json};

use rill_tests::diff;

use crate::diff_java_go::{go, java, rill};
use crate::kafka::have_python;

#[derive(Debug, Clone, Copy)]
enum Client {
    Confluent,
    Java,
    Go,
}

impl Client {
    /// The client's command line, or `None` (after a loud skip, or a failure when clients
    /// are required) when it is not installed.
    fn program(self) -> Option<Vec<OsString>> {
        match self {
            Client::Confluent => have_python("confluent_kafka").then(|| {
                let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("kafka")
                    .join("diff")
                    .join("confluent_txn.py");
                vec!["python3".into(), script.into_os_string()]
            }),
            Client::Java => java(),
            Client::Go => go(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Scenario {
    CommitAbort,
    Offsets,
    Fencing,
    Lso,
}

impl Scenario {
    /// The scenario's name on the clients' command line.
    fn name(self) -> &'static str {
        match self {
            Scenario::CommitAbort => "txn-commit-abort",
            Scenario::Offsets => "txn-offsets",
            Scenario::Fencing => "txn-fencing",
            Scenario::Lso => "txn-lso",
        }
    }
}

/// A fact an observation must show.
enum Expect {
    /// This value at this JSON pointer.
    Is(&'static str, Value),
    /// An error (an object with a non-null `error`) at this JSON pointer.
    Failed(&'static str),
}

/// What every client observes on Apache Kafka, at JSON pointers all three clients share.
/// Records are `[offset, value]` per partition, deliveries `[partition, offset]`.
fn expected(scenario: Scenario) -> Vec<Expect> {
    use Expect::{Failed, Is};
    match scenario {
        // Partition 0: a1 a3 COMMIT b1 b3 ABORT c1 COMMIT (end 8); partition 1: a2 COMMIT b2
        // ABORT c2 COMMIT (end 6).
        Scenario::CommitAbort => vec![
            Is("/delivered/a", json!([[0, 0], [1, 0], [0, 1]])),
            Is("/delivered/b", json!([[0, 3], [1, 2], [0, 4]])),
            Is("/delivered/c", json!([[0, 6], [1, 4]])),
            Is(
                "/read_committed/records",
                json!({"0": [[0, "a1"], [1, "a3"], [6, "c1"]], "1": [[0, "a2"], [4, "c2"]]}),
            ),
            Is(
                "/read_uncommitted/records",
                json!({
                    "0": [[0, "a1"], [1, "a3"], [3, "b1"], [4, "b3"], [6, "c1"]],
                    "1": [[0, "a2"], [2, "b2"], [4, "c2"]],
                }),
            ),
            Is("/end_offsets/read_committed", json!({"0": 8, "1": 6})),
            Is("/end_offsets/read_uncommitted", json!({"0": 8, "1": 6})),
        ],
        // Output: out-i0 out-i1 out-i2 COMMIT out-i3 out-i4 out-i5 ABORT (end 8).
        Scenario::Offsets => vec![
            Is("/round1/consumed", json!([0, 1, 2])),
            Is("/round1/delivered", json!([[0, 0], [0, 1], [0, 2]])),
            Is("/round1/ended", Value::Null),
            Is("/round1/committed_after", json!(3)),
            Is("/round2/consumed", json!([3, 4, 5])),
            Is("/round2/delivered", json!([[0, 4], [0, 5], [0, 6]])),
            Is("/round2/ended", Value::Null),
            Is("/round2/committed_after", json!(3)),
            Is(
                "/output_read_committed/records",
                json!({"0": [[0, "out-i0"], [1, "out-i1"], [2, "out-i2"]]}),
            ),
            Is(
                "/output_read_uncommitted/records",
                json!({"0": [
                    [0, "out-i0"], [1, "out-i1"], [2, "out-i2"],
                    [4, "out-i3"], [5, "out-i4"], [6, "out-i5"],
                ]}),
            ),
            Is("/output_end_offsets/read_committed", json!({"0": 8})),
            Is("/output_end_offsets/read_uncommitted", json!({"0": 8})),
        ],
        // p1-a, then ABORT (written when P2 initialises), p2-a, COMMIT (end 4).
        Scenario::Fencing => vec![
            Is("/p1_before", json!([[0, 0]])),
            Is("/p2_init", Value::Null),
            Is("/p1_send/0/category", json!("fenced")),
            Failed("/p1_commit"),
            Is("/p2_delivered", json!([[0, 2]])),
            Is("/p2_commit", Value::Null),
            Is("/read_committed/records", json!({"0": [[2, "p2-a"]]})),
            Is(
                "/read_uncommitted/records",
                json!({"0": [[0, "p1-a"], [2, "p2-a"]]}),
            ),
            Is("/end_offsets/read_committed", json!({"0": 4})),
            Is("/end_offsets/read_uncommitted", json!({"0": 4})),
        ],
        // n0 n1 (no transaction), t0 t1 (open transaction), n2 (no transaction), then COMMIT
        // (end 6): while open, the last stable offset is 2, the high watermark 5.
        Scenario::Lso => vec![
            Is("/before", json!([[0, 0], [0, 1]])),
            Is("/open_txn", json!([[0, 2], [0, 3]])),
            Is("/after_open", json!([[0, 4]])),
            Is(
                "/while_open/read_committed/records",
                json!({"0": [[0, "n0"], [1, "n1"]]}),
            ),
            Is(
                "/while_open/read_uncommitted/records",
                json!({"0": [[0, "n0"], [1, "n1"], [2, "t0"], [3, "t1"], [4, "n2"]]}),
            ),
            Is("/while_open/end_offsets/read_committed", json!({"0": 2})),
            Is("/while_open/end_offsets/read_uncommitted", json!({"0": 5})),
            Is("/commit", Value::Null),
            Is(
                "/after_commit/same_read_committed_consumer/records",
                json!({"0": [[2, "t0"], [3, "t1"], [4, "n2"]]}),
            ),
            Is("/after_commit/end_offsets/read_committed", json!({"0": 6})),
            Is(
                "/after_commit/end_offsets/read_uncommitted",
                json!({"0": 6}),
            ),
        ],
    }
}

/// Asserts that `observed` (Apache Kafka's observation) shows every fact of
/// [`expected`]`(scenario)`.
fn assert_expected(client: Client, scenario: Scenario, observed: &Value) {
    let pretty = || serde_json::to_string_pretty(observed).unwrap_or_default();
    for e in expected(scenario) {
        match e {
            Expect::Is(p, want) => assert!(
                observed.pointer(p) == Some(&want),
                "{client:?} {}: Apache Kafka shows {:?} at {p}, the scenario expects {want}; \
                 the whole observation:\n{}",
                scenario.name(),
                observed.pointer(p),
                pretty()
            ),
            Expect::Failed(p) => assert!(
                observed
                    .pointer(p)
                    .and_then(|v| v.get("error"))
                    .is_some_and(|e| !e.is_null()),
                "{client:?} {}: Apache Kafka shows no error at {p}; the whole observation:\n{}",
                scenario.name(),
                pretty()
            ),
        }
    }
}

/// Runs `scenario` with `client` on both brokers, checks Apache Kafka's observation against
/// [`expected`] (before Rill's run) and asserts that Rill's is the same.
fn check(client: Client, scenario: Scenario) {
    let Some(program) = client.program() else {
        return;
    };
    if rill_tests::apache::bootstrap().is_none() {
        return;
    }
    let (host, _cfg) = rill();
    let Some(outcome) = diff::run_checked(&program, scenario.name(), &host, &[], |kafka| {
        assert_expected(client, scenario, kafka);
    }) else {
        return;
    };
    outcome.assert_same(&[]);
}

macro_rules! scenarios {
    ($($name:ident: $client:ident, $scenario:ident;)*) => {
        $(
            #[test]
            fn $name() {
                check(Client::$client, Scenario::$scenario);
            }
        )*
    };
}

scenarios! {
    confluent_txn_commit_abort: Confluent, CommitAbort;
    confluent_txn_offsets: Confluent, Offsets;
    confluent_txn_fencing: Confluent, Fencing;
    confluent_txn_lso: Confluent, Lso;

    java_txn_commit_abort: Java, CommitAbort;
    java_txn_offsets: Java, Offsets;
    java_txn_fencing: Java, Fencing;
    java_txn_lso: Java, Lso;

    go_txn_commit_abort: Go, CommitAbort;
    go_txn_offsets: Go, Offsets;
    go_txn_fencing: Go, Fencing;
    go_txn_lso: Go, Lso;
}
