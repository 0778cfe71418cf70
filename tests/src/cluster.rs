//! Cluster mode (docs/cluster.md) from the outside: Rill hosts attached to a real Kafka
//! cluster, and the topics and records they keep there, reached with confluent-kafka
//! (`tests/kafka/apache_io.py`), never through Rill.
//!
//! Every host attached to a cluster applies every deployment of its catalog topic, and the
//! tests share one broker, so each test attaches its hosts through a [`Cluster`](crate::cluster::Cluster), which
//! gives them a catalog topic of their own.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use crate::apache::unique;
use crate::host::TestHost;

/// The value of order `id`, as the notifier example reads it (byte for byte what
/// `apache_io.py orders` produces).
pub fn order(id: u64) -> String {
    format!(
        r#"{{"type":"order_created","order_id":{id},"email":"c{id}@example.com","total_cents":{}}}"#,
        id * 7 % 10_000
    )
}

/// Rill hosts sharing deployments through a Kafka cluster: a catalog topic of their own
/// (`[cluster] catalog_topic` in a config file every host is started with).
#[derive(Debug)]
pub struct Cluster {
    /// The Kafka cluster's bootstrap address.
    pub bootstrap: String,
    /// The catalog topic the hosts share.
    pub catalog: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Hosts on the Kafka cluster at `bootstrap` with a fresh catalog topic.
    pub fn new(bootstrap: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog = unique("_rill-catalog");
        let config = dir.path().join("rill.toml");
        std::fs::write(
            &config,
            format!("[cluster]\nbootstrap = {bootstrap:?}\ncatalog_topic = {catalog:?}\n"),
        )
        .expect("write rill.toml");
        Cluster {
            bootstrap: bootstrap.to_owned(),
            catalog,
            config,
            _dir: dir,
        }
    }

    /// Starts a host attached to the cluster, its host id `id` (unique per test: it names
    /// the owner of partitions, and group members of every test meet on the broker).
    pub fn host(&self, id: &str) -> TestHost {
        self.host_with(id, &[])
    }

    /// [`Cluster::host`] with extra `serve` flags.
    pub fn host_with(&self, id: &str, extra: &[&str]) -> TestHost {
        let config = self.config.to_str().expect("UTF-8 temp path");
        let mut args = vec!["--config", config, "--cluster-host-id", id];
        args.extend_from_slice(extra);
        let h = TestHost::start_cluster(&self.bootstrap, &args);
        assert_eq!(
            h.host_id.as_deref(),
            Some(id),
            "the ready line names the host"
        );
        assert_eq!(
            h.cluster.as_deref(),
            Some(self.bootstrap.as_str()),
            "the ready line names the cluster"
        );
        h
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka/apache_io.py")
}

fn io(command: &str, bootstrap: &str, topic: &str) -> Command {
    let mut c = Command::new("python3");
    c.arg(script())
        .arg(command)
        .args(["--bootstrap", bootstrap, "--topic", topic]);
    c
}

fn checked(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "apache_io.py {what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates `topic` with Kafka's admin API (fine if it exists with as many partitions), with
/// topic configs `K=V`, and waits until every partition has a leader.
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    replication: u32,
    configs: &[&str],
) {
    let mut c = io("create", bootstrap, topic);
    c.args(["--partitions", &partitions.to_string()])
        .args(["--replication", &replication.to_string()]);
    for kv in configs {
        c.args(["--config", kv]);
    }
    checked(
        &format!("create {topic}"),
        c.stdin(Stdio::null()).output().expect("run python3"),
    );
}

/// A record read back from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// Key (UTF-8, lossy); `None` is null.
    pub key: Option<String>,
    /// Value (UTF-8, lossy); `None` is null.
    pub value: Option<String>,
    /// Headers (the last one of a repeated key).
    pub headers: BTreeMap<String, Option<String>>,
}

/// A record to produce: key, value and headers.
#[derive(Debug, Clone, Default)]
pub struct Produce {
    /// Key; `None` is null.
    pub key: Option<String>,
    /// Value; `None` is null.
    pub value: Option<String>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

/// Produces `records` to `topic` (acks=all, idempotent) and panics unless every one was
/// acknowledged.
pub fn produce(bootstrap: &str, topic: &str, records: &[Produce]) {
    let mut input = String::new();
    for r in records {
        let headers: serde_json::Map<String, serde_json::Value> = r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        input +=
            &serde_json::json!({"key": r.key, "value": r.value, "headers": headers}).to_string();
        input.push('\n');
    }
    let mut child = io("produce", bootstrap, topic)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write records");
    let out = child.wait_with_output().expect("wait python3");
    let n = checked(&format!("produce {topic}"), out);
    assert_eq!(n.trim(), records.len().to_string(), "records produced");
}

/// One partition of a topic, as the cluster's metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    /// Partition.
    pub partition: u32,
    /// The node id of its leader (-1: none).
    pub leader: i64,
    /// The node ids of its replicas.
    pub replicas: Vec<i64>,
}

/// The partitions of `topic`, or `None` if the cluster does not have it.
pub fn describe(bootstrap: &str, topic: &str) -> Option<Vec<PartitionMeta>> {
    let out = io("describe", bootstrap, topic)
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    let text = checked(&format!("describe {topic}"), out);
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("bad {text:?}: {e}"));
    let parts = v["partitions"].as_array()?;
    Some(
        parts
            .iter()
            .map(|p| PartitionMeta {
                partition: p["partition"].as_u64().expect("partition") as u32,
                leader: p["leader"].as_i64().expect("leader"),
                replicas: p["replicas"]
                    .as_array()
                    .expect("replicas")
                    .iter()
                    .map(|r| r.as_i64().expect("node id"))
                    .collect(),
            })
            .collect(),
    )
}

/// Every record of `topic`, from the start of each partition to its high watermark, as a
/// read_committed consumer sees it; none if the topic does not exist (yet).
pub fn consume(bootstrap: &str, topic: &str) -> Vec<Record> {
    consume_with(bootstrap, topic, "read_committed")
}

/// [`consume`] with an `isolation.level`: `read_committed` (up to the end of what is
/// committed when each partition's end is reached) or `read_uncommitted`.
pub fn consume_with(bootstrap: &str, topic: &str, isolation: &str) -> Vec<Record> {
    let out = io("consume", bootstrap, topic)
        .args(["--missing-ok", "--isolation", isolation])
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    let text = checked(&format!("consume {topic}"), out);
    let opt = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
            Record {
                partition: v["partition"].as_u64().expect("partition") as u32,
                offset: v["offset"].as_i64().expect("offset"),
                key: opt(&v["key"]),
                value: opt(&v["value"]),
                headers: v["headers"]
                    .as_object()
                    .expect("headers")
                    .iter()
                    .map(|(k, v)| (k.clone(), opt(v)))
                    .collect(),
            }
        })
        .collect()
}

/// What an order producer got back from the cluster.
#[derive(Debug, Default)]
pub struct Produced {
    /// Ids of the orders the cluster acknowledged, in acknowledgement order.
    pub acked: Vec<u64>,
    /// Ids and error names of the orders it did not.
    pub failed: Vec<(u64, String)>,
}

fn parse_produced(text: &str) -> Produced {
    let mut p = Produced::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["ack", id] => p.acked.push(id.parse().expect("id")),
            ["err", id, name] => p.failed.push((id.parse().expect("id"), (*name).to_owned())),
            _ => panic!("unexpected line from apache_io.py orders: {line:?}"),
        }
    }
    p
}

/// Produces orders `first..first + count` to `topic`, keyed by id, and waits for them.
pub fn produce_orders(bootstrap: &str, topic: &str, first: u64, count: u64) -> Produced {
    let out = io("orders", bootstrap, topic)
        .args(["--first", &first.to_string(), "--count", &count.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    parse_produced(&checked(&format!("orders {topic}"), out))
}

/// Orders produced in the background, `rate` per second from id `first` on, until
/// [`OrderStream::finish`]. Killed if dropped.
#[derive(Debug)]
pub struct OrderStream {
    child: Option<Child>,
}

impl OrderStream {
    /// Starts producing.
    pub fn start(bootstrap: &str, topic: &str, first: u64, rate: u32) -> OrderStream {
        let child = io("orders", bootstrap, topic)
            .args(["--first", &first.to_string(), "--rate", &rate.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3");
        OrderStream { child: Some(child) }
    }

    /// Stops producing, waits for every delivery report, and says what was acknowledged.
    pub fn finish(mut self) -> Produced {
        let mut child = self.child.take().expect("running");
        // Closing stdin is the signal to stop.
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("wait python3");
        parse_produced(&checked("orders (stream)", out))
    }
}

impl Drop for OrderStream {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
