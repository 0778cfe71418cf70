//! Kafka's own perf tools against Rill (issue 11): `kafka-producer-perf-test` and
//! `kafka-consumer-perf-test` (Apache Kafka 4.1.1's Java clients, run by `scripts/kafka.sh
//! tool`) with small counts. Nothing is timed: each tool must complete, and the records it
//! says it sent or consumed must be the records the log holds. The figures come from
//! `bench/kafka-side-by-side.sh`.
//!
//! The tools need the jars `scripts/kafka.sh` assembles, which `scripts/test.sh` fetches
//! before it starts the reference broker; so, like the differential tests, these skip loudly
//! without `RILL_TEST_APACHE_KAFKA`, or fail if `RILL_REQUIRE_KAFKA_CLIENTS` is set.

use std::process::{Command, Stdio};

use rill_tests::apache;
use rill_tests::host::TestHost;

const RECORDS: u64 = 20_000;

/// Runs `scripts/kafka.sh tool ARGS...` and returns its stdout; panics with its stderr and the
/// host's log if it fails.
fn tool(h: &TestHost, args: &[&str]) -> String {
    let out = Command::new(apache::launcher())
        .arg("tool")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/kafka.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kafka.sh tool {args:?} failed:\n--- stdout\n{stdout}\n--- stderr\n{}\n--- host log\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.log()
    );
    stdout
}

/// The records the log holds in `topic`, summed over its partitions.
fn stored(h: &TestHost, topic: &str) -> i64 {
    let t: serde_json::Value = h
        .client()
        .get(&format!("/v1/topics/{topic}"))
        .expect("describe topic");
    t["partition_info"]
        .as_array()
        .expect("partition_info")
        .iter()
        .map(|p| p["end"].as_i64().unwrap_or(0) - p["start"].as_i64().unwrap_or(0))
        .sum()
}

#[test]
fn producer_and_consumer_perf_tests_complete_against_rill() {
    if apache::bootstrap().is_none() {
        return;
    }
    let h = TestHost::start();
    let bootstrap = format!("bootstrap.servers={}", h.kafka);
    let n = RECORDS.to_string();
    for (topic, flush, acks) in [
        ("perf-never", "never", "acks=1"),
        ("perf-always", "always", "acks=all"),
    ] {
        h.cli_ok(&[
            "topic",
            "create",
            topic,
            "--partitions",
            "4",
            "--flush",
            flush,
        ]);
        let out = tool(
            &h,
            &[
                "kafka-producer-perf-test",
                "--topic",
                topic,
                "--num-records",
                &n,
                "--record-size",
                "100",
                "--throughput",
                "-1",
                "--producer-props",
                &bootstrap,
                acks,
                "linger.ms=5",
                "batch.size=65536",
                "compression.type=none",
            ],
        );
        let summary = out
            .lines()
            .rfind(|l| l.contains(" records sent, "))
            .unwrap_or_else(|| panic!("no summary line from the producer perf test:\n{out}"));
        assert!(
            summary.starts_with(&format!("{n} records sent, ")),
            "{topic}: {summary}"
        );
        assert_eq!(stored(&h, topic), RECORDS as i64, "{topic}: records stored");

        let out = tool(
            &h,
            &[
                "kafka-consumer-perf-test",
                "--bootstrap-server",
                &h.kafka.to_string(),
                "--topic",
                topic,
                "--messages",
                &n,
                "--group",
                &format!("{topic}-perf"),
                "--timeout",
                "30000",
            ],
        );
        // start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, ...
        let row = out
            .lines()
            .rfind(|l| l.contains(", ") && !l.starts_with("start.time"))
            .unwrap_or_else(|| panic!("no result row from the consumer perf test:\n{out}"));
        let consumed: u64 = row
            .split(", ")
            .nth(4)
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("cannot read the record count of: {row}"));
        assert_eq!(consumed, RECORDS, "{topic}: records consumed ({row})");
        let mb: f64 = row
            .split(", ")
            .nth(2)
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("cannot read the megabytes of: {row}"));
        let want = RECORDS as f64 * 100.0 / (1024.0 * 1024.0);
        assert!(
            (mb - want).abs() < 0.001,
            "{topic}: {mb} MB consumed, want {want} ({row})"
        );
    }
}
