//! Cluster mode (docs/cluster.md) against real Apache Kafka: several real Rill hosts share
//! deployments through the cluster, take partitions over from one another, and write
//! outputs and dead letters there. The run's broker comes from `scripts/test.sh`; the
//! broker-loss test starts a three-node cluster of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rill_runtime::scheduler::DeploymentInfo;
use rill_tests::guests;
use rill_tests::host::TestHost;
use rill_tests::{apache, host::runtime_bin};

use crate::kafka::have_python;

const MAX_BATCH: u32 = 1000;

/// Cluster tests run one at a time: each starts several hosts (and one a three-JVM Kafka
/// cluster), and on two cores, side by side, they starve each other's rebalances.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The run's Apache Kafka broker, when confluent-kafka is there to talk to it.
fn broker() -> Option<String> {
    let b = apache::bootstrap()?;
    have_python("confluent_kafka").then_some(b)
}

fn client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka/cluster_client.py")
}

fn py(args: &[&str]) -> Output {
    Command::new("python3")
        .arg(client_script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run python3")
}

fn py_ok(args: &[&str]) -> String {
    let out = py(args);
    assert!(
        out.status.success(),
        "cluster_client.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn create_topic(bootstrap: &str, topic: &str, partitions: u32, replication: u32) {
    py_ok(&[
        "create",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--partitions",
        &partitions.to_string(),
        "--replication",
        &replication.to_string(),
    ]);
}

fn produce(bootstrap: &str, topic: &str, first: u64, count: u64, tag: &str) {
    py_ok(&[
        "produce",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--first",
        &first.to_string(),
        "--count",
        &count.to_string(),
        "--tag",
        tag,
    ]);
}

/// Produces in the background, paced, so hosts can be killed under load.
fn produce_paced(bootstrap: &str, topic: &str, count: u64, per_second: u32, tag: &str) -> Child {
    Command::new("python3")
        .arg(client_script())
        .args(["produce", "--bootstrap", bootstrap, "--topic", topic])
        .args(["--count", &count.to_string(), "--tag", tag])
        .args(["--per-second", &per_second.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the producer")
}

/// Every record of `topic`, once at least `expect` are there (or nothing came for 60 s).
fn consume(bootstrap: &str, topic: &str, expect: usize) -> Vec<serde_json::Value> {
    py_ok(&[
        "consume",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--expect",
        &expect.to_string(),
        "--idle-seconds",
        "60",
    ])
    .lines()
    .map(|l| serde_json::from_str(l).expect("a JSON record"))
    .collect()
}

/// The order ids of the e-mails tagged `tag` on `topic`, with how often each appears.
fn emails(bootstrap: &str, topic: &str, tag: &str, expect: usize) -> BTreeMap<u64, usize> {
    let mut ids = BTreeMap::new();
    for r in consume(bootstrap, topic, expect) {
        let v: serde_json::Value =
            serde_json::from_str(r["value"].as_str().expect("a value")).expect("JSON e-mail");
        if v["to"]
            .as_str()
            .is_some_and(|to| to.ends_with(&format!("@{tag}.io")))
        {
            *ids.entry(v["order_id"].as_u64().expect("order_id"))
                .or_default() += 1;
        }
    }
    ids
}

/// A host in cluster mode: fast failover (6 s sessions), a fixed host id.
fn cluster_host(bootstrap: &str, id: &str) -> TestHost {
    TestHost::start_with(&[
        "--kafka-cluster",
        bootstrap,
        "--cluster-host-id",
        id,
        "--cluster-property",
        "session.timeout.ms=6000",
        "--cluster-property",
        "heartbeat.interval.ms=1000",
    ])
}

fn deployment(h: &TestHost, name: &str) -> Option<DeploymentInfo> {
    h.client()
        .get::<DeploymentInfo>(&format!("/v1/deployments/{name}"))
        .ok()
}

/// The owner of every partition, as `h` sees it, once each has one.
fn owners(h: &TestHost, name: &str) -> Option<Vec<String>> {
    let d = deployment(h, name)?;
    if d.partitions.is_empty() {
        return None;
    }
    d.partitions.iter().map(|p| p.owner.clone()).collect()
}

/// Waits until the partitions of `name` are split among exactly `hosts`.
fn wait_split(h: &TestHost, name: &str, hosts: &[&str]) -> Vec<String> {
    let want: BTreeSet<&str> = hosts.iter().copied().collect();
    h.wait_for(Duration::from_secs(120), || {
        let o = owners(h, name)?;
        let got: BTreeSet<&str> = o.iter().map(String::as_str).collect();
        (got == want).then_some(o)
    })
    .unwrap_or_else(|| {
        panic!(
            "the partitions of {name} were not split among {hosts:?}; last seen {:?}\n{}",
            owners(h, name),
            h.log()
        )
    })
}

fn deploy_notifier(h: &TestHost, name: &str, topic: &str) {
    h.cli_ok(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        name,
        "--topic",
        topic,
        "--output",
        "emails",
        "--batch",
        &MAX_BATCH.to_string(),
    ]);
}

#[test]
fn cluster_hosts_share_a_deployment_and_every_order_gets_its_email() {
    let Some(b) = broker() else { return };
    let _serial = serial();
    let topic = apache::unique("cl-orders");
    let name = apache::unique("cl-notify");
    let tag = apache::unique("share");
    create_topic(&b, &topic, 6, 1);
    let a = cluster_host(&b, "host-a");
    let bb = cluster_host(&b, "host-b");
    deploy_notifier(&a, &name, &topic);
    // Deployed on A, it runs on B too: the partitions split between them.
    let split = wait_split(&a, &name, &["host-a", "host-b"]);
    assert_eq!(split.len(), 6);
    produce(&b, &topic, 0, 3000, &tag);
    // A third host joins and takes its share.
    let c = cluster_host(&b, "host-c");
    wait_split(&bb, &name, &["host-a", "host-b", "host-c"]);
    produce(&b, &topic, 3000, 3000, &tag);
    let got = emails(&b, "emails", &tag, 6000);
    let missing: Vec<u64> = (0..6000)
        .filter(|i| !got.contains_key(i))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "orders without an e-mail: {missing:?}..."
    );
    let dups: usize = got.values().map(|n| n - 1).sum();
    // Joins revoke cooperatively: each revoked partition finishes and commits first.
    assert_eq!(dups, 0, "duplicates through clean rebalances");
    // Every host processed some of it, and they agree on the totals.
    let ins: Vec<u64> = [&a, &bb, &c]
        .iter()
        .map(|h| deployment(h, &name).map_or(0, |d| d.records_in))
        .collect();
    assert!(
        ins.iter().all(|n| *n > 0),
        "records handled per host: {ins:?}"
    );
    assert_eq!(
        ins.iter().sum::<u64>(),
        6000,
        "records handled per host: {ins:?}"
    );
    let lagging = a.wait_for(Duration::from_secs(30), || {
        let d = deployment(&a, &name)?;
        (d.lag == 0 && d.partitions.iter().all(|p| p.committed == Some(p.end))).then_some(())
    });
    assert!(
        lagging.is_some(),
        "lag did not reach 0: {:?}",
        deployment(&a, &name)
    );
    let status = a.cli_ok(&["status"]);
    assert!(status.contains("host host-a  reachable"), "{status}");
    let metrics = a.client().get_text("/metrics").expect("metrics");
    assert!(metrics.contains("rill_cluster_reachable 1"), "{metrics}");
    assert!(
        metrics.contains("rill_cluster_partition_lag{deployment=\""),
        "{metrics}"
    );
}

#[test]
fn cluster_kill_9_loop_loses_nothing_and_duplicates_only_uncommitted_work() {
    let Some(b) = broker() else { return };
    let _serial = serial();
    let topic = apache::unique("cl-kill");
    let name = apache::unique("cl-kill");
    let tag = apache::unique("kill");
    const PARTITIONS: u32 = 4;
    create_topic(&b, &topic, PARTITIONS, 1);
    let a = cluster_host(&b, "kill-a");
    let mut victim = cluster_host(&b, "kill-b");
    deploy_notifier(&a, &name, &topic);
    wait_split(&a, &name, &["kill-a", "kill-b"]);
    // Each kill costs a session timeout (6 s) and a rejoin: three by default keep the test
    // near a minute; RILL_CLUSTER_KILLS asks for more.
    let target: usize = std::env::var("RILL_CLUSTER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let total = 200 * (12 * target as u64 + 5);
    let mut producer = produce_paced(&b, &topic, total, 200, &tag);
    let mut kills = 0;
    while kills < target {
        std::thread::sleep(Duration::from_millis(1500));
        victim.kill();
        kills += 1;
        // Its partitions move to the survivor within the session timeout.
        wait_split(&a, &name, &["kill-a"]);
        victim.spawn();
        wait_split(&a, &name, &["kill-a", "kill-b"]);
    }
    let produced = producer.wait().expect("producer");
    assert!(produced.success(), "the producer failed");
    let got = emails(&b, "emails", &tag, total as usize);
    let missing: Vec<u64> = (0..total)
        .filter(|i| !got.contains_key(i))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "after {kills} kills, orders without an e-mail: {missing:?}..."
    );
    let dups: usize = got.values().map(|n| n - 1).sum();
    // Only invocations that were not committed run again: at most one per partition the
    // killed host owned, each of at most MAX_BATCH records.
    let bound = kills * PARTITIONS as usize * MAX_BATCH as usize;
    assert!(
        dups <= bound,
        "{dups} duplicates after {kills} kills (bound {bound})"
    );
    eprintln!("cluster kill loop: {kills} kills, {total} orders, {dups} duplicates");
}

#[test]
fn cluster_deployments_made_on_one_host_run_on_all_and_go_from_all() {
    let Some(b) = broker() else { return };
    let _serial = serial();
    let topic = apache::unique("cl-catalog");
    let name = apache::unique("cl-catalog");
    create_topic(&b, &topic, 2, 1);
    let a = cluster_host(&b, "cat-a");
    let bb = cluster_host(&b, "cat-b");
    deploy_notifier(&a, &name, &topic);
    let on_b = bb.wait_for(Duration::from_secs(30), || deployment(&bb, &name));
    assert!(
        on_b.is_some(),
        "deployed on A, not seen on B:\n{}",
        bb.log()
    );
    // Pause on B: paused on A.
    bb.cli_ok(&["pause", &name]);
    let paused = a.wait_for(Duration::from_secs(30), || {
        deployment(&a, &name).filter(|d| d.state == "paused")
    });
    assert!(
        paused.is_some(),
        "paused on B, not on A: {:?}",
        deployment(&a, &name)
    );
    bb.cli_ok(&["resume", &name]);
    // Undeploy on B: gone on A.
    bb.cli_ok(&["undeploy", &name]);
    let gone = a.wait_for(Duration::from_secs(30), || {
        deployment(&a, &name).is_none().then_some(())
    });
    assert!(gone.is_some(), "undeployed on B, still on A");
    // A host that starts later finds the catalog as it is now.
    let c = cluster_host(&b, "cat-c");
    assert!(deployment(&c, &name).is_none());
    // Clear errors, no change: a missing topic, the embedded routes.
    let out = a.cli(&[
        "deploy",
        guests::NOTIFIER,
        "--name",
        &name,
        "--topic",
        "no-such-topic",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown topic 'no-such-topic' in the Kafka cluster"),
        "{err}"
    );
    let out = a.cli(&["topic", "list"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cluster mode"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cluster_poison_records_go_to_the_clusters_dead_letter_topic_with_headers() {
    let Some(b) = broker() else { return };
    let _serial = serial();
    let topic = apache::unique("cl-poison");
    let name = apache::unique("cl-poison");
    create_topic(&b, &topic, 1, 1);
    let a = cluster_host(&b, "dlq-a");
    a.cli_ok(&[
        "deploy",
        guests::TRAP,
        "--name",
        &name,
        "--topic",
        &topic,
        "--max-attempts",
        "2",
        "--backoff-ms",
        "20",
    ]);
    for v in ["ok-1", "trap", "ok-2"] {
        py_ok(&[
            "produce",
            "--bootstrap",
            &b,
            "--topic",
            &topic,
            "--count",
            "1",
            "--raw",
            v,
        ]);
    }
    let dlq = consume(&b, &format!("{name}.dlq"), 1);
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let d = &dlq[0];
    assert_eq!(d["value"], "trap");
    let h = &d["headers"];
    assert_eq!(h["rill.error.kind"], "trap", "{d}");
    assert_eq!(h["rill.source.topic"], topic.as_str());
    assert_eq!(h["rill.source.offset"], "1");
    assert_eq!(h["rill.attempts"], "2");
    assert!(
        h["rill.error"]
            .as_str()
            .is_some_and(|e| e.contains("asked to trap")),
        "{d}"
    );
    // The records around it went through.
    let out: Vec<String> = consume(&b, "out", 2)
        .iter()
        .filter_map(|r| r["value"].as_str().map(str::to_owned))
        .filter(|v| v.starts_with("ok-"))
        .collect();
    assert!(
        out.contains(&"ok-1".to_owned()) && out.contains(&"ok-2".to_owned()),
        "{out:?}"
    );
    let d = deployment(&a, &name).expect("deployment");
    assert_eq!(d.dead_lettered, 1);
}

/// A three-node Apache Kafka cluster of this test's own, stopped on drop.
struct ThreeBrokers {
    dir: tempfile::TempDir,
}

impl ThreeBrokers {
    fn start() -> (ThreeBrokers, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new(apache::launcher())
            .args(["start"])
            .arg(dir.path())
            .args(["--nodes", "3", "--port", "29092", "--no-auto-create"])
            .output()
            .expect("kafka.sh start");
        assert!(
            out.status.success(),
            "kafka.sh start --nodes 3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bootstrap = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("a bootstrap")
            .trim()
            .to_owned();
        (ThreeBrokers { dir }, bootstrap)
    }

    /// SIGKILLs node `n` (1-based).
    fn kill(&self, n: u32) {
        let pid = std::fs::read_to_string(self.dir.path().join(format!("node-{n}.pid")))
            .expect("node pid file");
        let ok = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

impl Drop for ThreeBrokers {
    fn drop(&mut self) {
        let _ = Command::new(apache::launcher())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

#[test]
fn cluster_processing_goes_on_when_one_of_three_brokers_dies() {
    if broker().is_none() {
        return;
    }
    let _serial = serial();
    let (brokers, b) = ThreeBrokers::start();
    let topic = apache::unique("cl-rf3");
    let name = apache::unique("cl-rf3");
    let tag = apache::unique("rf3");
    py_ok(&[
        "create",
        "--bootstrap",
        &b,
        "--topic",
        &topic,
        "--partitions",
        "3",
        "--replication",
        "3",
        "--config",
        "min.insync.replicas=2",
    ]);
    let a = cluster_host(&b, "rf3-a");
    deploy_notifier(&a, &name, &topic);
    produce(&b, &topic, 0, 1000, &tag);
    let first = emails(&b, "emails", &tag, 1000);
    assert_eq!(first.len(), 1000, "before the broker loss");
    // Node 3 is never the only one named in the bootstrap.
    brokers.kill(3);
    produce(&b, &topic, 1000, 1000, &tag);
    let got = emails(&b, "emails", &tag, 2000);
    let missing: Vec<u64> = (0..2000)
        .filter(|i| !got.contains_key(i))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "after losing a broker, orders without an e-mail: {missing:?}"
    );
    let d = deployment(&a, &name).expect("deployment");
    assert_eq!(d.records_in, 2000, "{d:?}");
}

#[test]
fn cluster_mode_refuses_bad_configuration_in_one_line() {
    // A pinned property, before anything is contacted.
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = |extra: &[&str]| {
        Command::new(runtime_bin())
            .args(["serve", "--admin-addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            .output()
            .expect("runtime serve")
    };
    let out = serve(&[
        "--kafka-cluster",
        "127.0.0.1:1",
        "--cluster-property",
        "enable.auto.commit=true",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'enable.auto.commit' is set by Rill"), "{err}");
    // An unknown librdkafka property.
    let out = serve(&[
        "--kafka-cluster",
        "127.0.0.1:1",
        "--cluster-property",
        "no.such=1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no.such"), "{err}");
    // Nobody there.
    let started = Instant::now();
    let out = serve(&["--kafka-cluster", "127.0.0.1:1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
