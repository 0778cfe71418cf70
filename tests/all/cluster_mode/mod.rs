//! Cluster mode (docs/cluster.md) against real Apache Kafka: several real `runtime serve`
//! processes attached to one Kafka cluster share deployments through its catalog topic, split
//! the partitions of each deployment's consumer group, take over from a killed host, and
//! keep their outputs and dead letters in the cluster, where the tests read them with
//! confluent-kafka.
//!
//! The run's broker comes from `scripts/test.sh` (`RILL_TEST_APACHE_KAFKA`); every test gives
//! its hosts a catalog topic of their own and unique topic and deployment names. The
//! notifier example always emits to `emails`, which every test on the broker shares, so each
//! test tells its emails apart by the template it deploys the notifier with. The broker-loss
//! test starts a three-node cluster of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rill_runtime::admin::api::Status;
use rill_runtime::cluster::ClusterStatus;
use rill_runtime::scheduler::DeploymentInfo;
use rill_tests::apache::{self, OwnCluster, unique};
use rill_tests::cluster::{
    Cluster, OrderStream, Produce, consume, consume_with, create_topic, describe, produce,
    produce_orders,
};
use rill_tests::guests;
use rill_tests::host::TestHost;

use crate::kafka::have_python;

mod crash;
mod schemas;
mod state;

/// Generous: a rebalance after a kill waits for the dead member's 6 s session to expire.
const WAIT: Duration = Duration::from_secs(90);

/// The run's Apache Kafka broker, when there is one and confluent-kafka to reach it (a
/// failure instead of a skip when `RILL_REQUIRE_KAFKA_CLIENTS` is set).
/// The cluster tests run one at a time: each starts several hosts (one a three-JVM Kafka
/// cluster), and side by side on two cores they starve the broker until sessions expire.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn broker() -> Option<String> {
    let b = apache::bootstrap()?;
    have_python("confluent_kafka").then_some(b)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The logs of `hosts`, for failure messages.
fn logs(hosts: &[&TestHost]) -> String {
    hosts
        .iter()
        .map(|h| {
            format!(
                "--- host {} log (tail)\n{}\n",
                h.host_id.as_deref().unwrap_or("?"),
                tail(&h.log(), 30)
            )
        })
        .collect()
}

fn deployment(h: &TestHost, name: &str) -> Option<DeploymentInfo> {
    h.client().get(&format!("/v1/deployments/{name}")).ok()
}

/// Deploys the notifier example as `name` on `h`, its emails marked with template `tag`.
fn deploy_notifier(h: &TestHost, name: &str, topic: &str, tag: &str, extra: &[&str]) {
    let template = format!("TEMPLATE={tag}");
    let mut args = vec![
        "deploy",
        guests::NOTIFIER,
        "--name",
        name,
        "--topic",
        topic,
        "--output",
        "emails",
        "--env",
        &template,
    ];
    args.extend_from_slice(extra);
    h.cli_ok(&args);
}

/// The order ids of the emails in `emails` made with template `tag`, one per email (a
/// duplicate appears twice), sorted, as a read_committed reader sees them.
fn emails(bootstrap: &str, tag: &str) -> Vec<u64> {
    emails_with(bootstrap, tag, "read_committed")
}

/// [`emails`] as a reader with `isolation` (`read_committed` or `read_uncommitted`) sees them.
fn emails_with(bootstrap: &str, tag: &str, isolation: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = consume_with(bootstrap, "emails", isolation)
        .iter()
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_str(r.value.as_deref()?).ok()?;
            (v["template"] == tag).then(|| {
                v["order_id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("an email without an order id: {v}"))
            })
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Waits until every order of `want` has its email, and returns every email of `tag`.
fn wait_emails(bootstrap: &str, tag: &str, want: &BTreeSet<u64>, hosts: &[&TestHost]) -> Vec<u64> {
    let probe = hosts[0];
    let mut last = Vec::new();
    probe
        .wait_for(WAIT, || {
            last = emails(bootstrap, tag);
            let got: BTreeSet<u64> = last.iter().copied().collect();
            want.is_subset(&got).then(|| last.clone())
        })
        .unwrap_or_else(|| {
            let got: BTreeSet<u64> = last.iter().copied().collect();
            let missing: Vec<&u64> = want.difference(&got).take(20).collect();
            panic!(
                "{} of {} orders have no email (first: {missing:?})\n{}",
                want.difference(&got).count(),
                want.len(),
                logs(hosts)
            )
        })
}

/// How many ids appear more than once, counting each extra copy.
fn duplicates(ids: &[u64]) -> usize {
    ids.len() - ids.iter().collect::<BTreeSet<_>>().len()
}

/// Whether `h`'s view of `name` is settled and splits it among exactly `want`: every
/// partition has an owner, the owners are `want`, and each partition is `remote` on `h`
/// exactly when another host owns it.
fn split_among(h: &TestHost, name: &str, want: &BTreeSet<String>) -> bool {
    let Some(d) = deployment(h, name) else {
        return false;
    };
    let me = h.host_id.as_deref();
    let owners: BTreeSet<String> = d
        .partitions
        .iter()
        .filter_map(|p| p.owner.clone())
        .collect();
    d.partitions.iter().all(|p| match p.owner.as_deref() {
        None => false,
        Some(o) if Some(o) == me => p.status != "remote" && p.status != "unassigned",
        Some(_) => p.status == "remote",
    }) && owners == *want
}

fn wait_split(hosts: &[&TestHost], name: &str) {
    let want: BTreeSet<String> = hosts
        .iter()
        .map(|h| h.host_id.clone().expect("a cluster host"))
        .collect();
    for h in hosts {
        h.wait_for(WAIT, || split_among(h, name, &want).then_some(()))
            .unwrap_or_else(|| {
                panic!(
                    "{name} is not split among {want:?} as seen from {:?}: {:#?}\n{}",
                    h.host_id,
                    deployment(h, name).map(|d| d.partitions),
                    logs(hosts)
                )
            });
    }
}

/// Waits until the group of `name` has committed everything of every partition, as `h`
/// sees it, and returns that view.
fn wait_caught_up(h: &TestHost, name: &str) -> DeploymentInfo {
    h.wait_for(WAIT, || {
        let d = deployment(h, name)?;
        (d.lag == 0 && d.partitions.iter().all(|p| p.committed == Some(p.end))).then_some(d)
    })
    .unwrap_or_else(|| {
        panic!(
            "{name} did not catch up: {:#?}\n{}",
            deployment(h, name),
            logs(&[h])
        )
    })
}

/// What `h` says of its cluster (`runtime status`).
fn cluster_status(h: &TestHost) -> ClusterStatus {
    let st: Status = h.client().get("/v1/status").expect("status");
    st.cluster
        .expect("a cluster host's status names its cluster")
}

/// Waits until `h` sees `brokers` brokers and the cluster answers.
fn wait_brokers(h: &TestHost, brokers: usize) -> ClusterStatus {
    h.wait_for(WAIT, || {
        let c = cluster_status(h);
        (c.reachable && c.brokers == brokers).then_some(c)
    })
    .unwrap_or_else(|| {
        panic!(
            "{:?} never saw {brokers} reachable brokers: {:#?}",
            h.host_id,
            cluster_status(h)
        )
    })
}

fn ids(range: std::ops::Range<u64>) -> BTreeSet<u64> {
    range.collect()
}

/// Two hosts share the notifier's partitions; a third joins while orders flow and takes its
/// share. Every order is mailed, and exactly once: nothing is killed, and a cooperative
/// hand-over has the old owner commit before the new one starts (docs/cluster.md).
#[test]
fn two_then_three_hosts_split_the_partitions_and_mail_every_order_once() {
    let Some(bootstrap) = broker() else { return };
    let _serial = serial();
    let cluster = Cluster::new(&bootstrap);
    let name = unique("split");
    let orders = unique("split-orders");
    create_topic(&bootstrap, &orders, 4, 1, &[]);
    let a = cluster.host(&format!("{name}-a"));
    let b = cluster.host(&format!("{name}-b"));
    let st = wait_brokers(&a, 1);
    assert_eq!(st.host_id, format!("{name}-a"));
    assert_eq!(st.bootstrap, bootstrap);
    deploy_notifier(&a, &name, &orders, &name, &[]);
    wait_split(&[&a, &b], &name);

    let first = produce_orders(&bootstrap, &orders, 0, 400);
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    let got = wait_emails(&bootstrap, &name, &ids(0..400), &[&a, &b]);
    assert_eq!(got, ids(0..400).into_iter().collect::<Vec<_>>());

    // A third host joins while orders keep coming.
    let stream = OrderStream::start(&bootstrap, &orders, 1_000, 100);
    let c = cluster.host(&format!("{name}-c"));
    wait_split(&[&a, &b, &c], &name);
    let during = stream.finish();
    assert!(during.failed.is_empty(), "{:?}", during.failed);
    assert!(!during.acked.is_empty(), "the stream produced nothing");
    let after = produce_orders(&bootstrap, &orders, 100_000, 300);
    assert!(after.failed.is_empty(), "{:?}", after.failed);

    let want: BTreeSet<u64> = ids(0..400)
        .into_iter()
        .chain(during.acked.iter().copied())
        .chain(after.acked.iter().copied())
        .collect();
    let got = wait_emails(&bootstrap, &name, &want, &[&a, &b, &c]);
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<_>>(),
        want,
        "emails for orders never produced"
    );
    assert_eq!(duplicates(&got), 0, "no kill, so no order is mailed twice");

    // Each host counts what it processed: together, every order once.
    wait_caught_up(&a, &name);
    let total: u64 = [&a, &b, &c]
        .iter()
        .map(|h| deployment(h, &name).expect("listed").records_in)
        .sum();
    assert_eq!(
        total,
        want.len() as u64,
        "records processed over the three hosts"
    );
}

/// A deploy on one host runs on the other; pause, resume and undeploy on either take effect
/// on both.
#[test]
fn deployments_are_shared_by_every_host_of_the_cluster() {
    let Some(bootstrap) = broker() else { return };
    let _serial = serial();
    let cluster = Cluster::new(&bootstrap);
    let name = unique("shared");
    let orders = unique("shared-orders");
    create_topic(&bootstrap, &orders, 2, 1, &[]);
    let a = cluster.host(&format!("{name}-a"));
    let b = cluster.host(&format!("{name}-b"));
    assert!(
        deployment(&b, &name).is_none(),
        "{name} is listed before it is deployed"
    );

    deploy_notifier(&a, &name, &orders, &name, &[]);
    let on_a = deployment(&a, &name).expect("listed on the host that deployed it");
    let on_b = b
        .wait_for(WAIT, || deployment(&b, &name))
        .unwrap_or_else(|| panic!("{name} never showed on B\n{}", logs(&[&a, &b])));
    assert_eq!(on_b.spec.module_hash, on_a.spec.module_hash);
    assert_eq!(on_b.spec.topic, orders);
    assert_eq!(on_b.spec.outputs, vec!["emails".to_owned()]);
    // B does not only list it: it runs a share of it.
    wait_split(&[&a, &b], &name);
    let sent = produce_orders(&bootstrap, &orders, 0, 50);
    assert!(sent.failed.is_empty(), "{:?}", sent.failed);
    wait_emails(&bootstrap, &name, &ids(0..50), &[&a, &b]);

    b.cli_ok(&["pause", &name]);
    a.wait_for(WAIT, || {
        deployment(&a, &name)
            .is_some_and(|d| d.state == "paused")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "a pause on B does not show on A: {:#?}",
            deployment(&a, &name)
        )
    });
    a.cli_ok(&["resume", &name]);
    b.wait_for(WAIT, || {
        deployment(&b, &name)
            .is_some_and(|d| d.state != "paused")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "a resume on A does not show on B: {:#?}",
            deployment(&b, &name)
        )
    });

    b.cli_ok(&["undeploy", &name]);
    assert!(
        deployment(&b, &name).is_none(),
        "the undeploying host has removed it when the call returns"
    );
    a.wait_for(WAIT, || deployment(&a, &name).is_none().then_some(()))
        .unwrap_or_else(|| panic!("an undeploy on B leaves {name} on A\n{}", logs(&[&a, &b])));
    let listed: Vec<DeploymentInfo> = a.client().get("/v1/deployments").expect("list");
    assert!(listed.iter().all(|d| d.spec.name != name), "{listed:#?}");
}

/// A record the handler traps on goes, after its tries, to the cluster's `NAME.dlq` with the
/// headers that say what failed and the record's own; the records around it are processed.
#[test]
fn a_poison_record_goes_to_the_clusters_dead_letter_topic_with_its_headers() {
    poison_record("at-least-once");
}

/// The same exactly once: the trapping range's isolation aborts nothing that shows, and the
/// dead letter commits with the offset after it, each once.
#[test]
fn a_poison_record_of_an_exactly_once_deployment_is_dead_lettered_once() {
    poison_record("exactly-once");
}

fn poison_record(guarantee: &str) {
    let Some(bootstrap) = broker() else { return };
    let _serial = serial();
    let cluster = Cluster::new(&bootstrap);
    let name = unique("poison");
    let input = unique("poison-in");
    create_topic(&bootstrap, &input, 1, 1, &[]);
    let h = cluster.host(&format!("{name}-a"));
    // The trap guest forwards every other record to `out`, shared by every run on the
    // broker: this test's records carry its name.
    h.cli_ok(&[
        "deploy",
        guests::TRAP,
        "--name",
        &name,
        "--topic",
        &input,
        "--output",
        "out",
        "--max-attempts",
        "2",
        "--backoff-ms",
        "10",
        "--on-failure",
        "dlq",
        "--guarantee",
        guarantee,
    ]);
    let ok = |i: u32| format!("{name} ok {i}");
    produce(
        &bootstrap,
        &input,
        &[
            Produce {
                key: Some("k0".into()),
                value: Some(ok(0)),
                ..Produce::default()
            },
            Produce {
                key: Some("poison-key".into()),
                value: Some("trap".into()),
                headers: vec![("trace-id".into(), name.clone())],
            },
            Produce {
                key: Some("k2".into()),
                value: Some(ok(2)),
                ..Produce::default()
            },
        ],
    );

    let dlq = format!("{name}.dlq");
    let letters = h
        .wait_for(WAIT, || {
            let r = consume(&bootstrap, &dlq);
            (!r.is_empty()).then_some(r)
        })
        .unwrap_or_else(|| panic!("nothing in {dlq}\n{}", logs(&[&h])));
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let l = &letters[0];
    assert_eq!(l.key.as_deref(), Some("poison-key"));
    assert_eq!(l.value.as_deref(), Some("trap"));
    let header = |k: &str| l.headers.get(k).cloned().flatten();
    assert!(
        header("rill.error").is_some_and(|e| e.contains("asked to trap")),
        "{:?}",
        l.headers
    );
    assert_eq!(header("rill.error.kind").as_deref(), Some("trap"));
    assert_eq!(header("rill.source.topic"), Some(input.clone()));
    assert_eq!(header("rill.source.partition").as_deref(), Some("0"));
    assert_eq!(header("rill.source.offset").as_deref(), Some("1"));
    assert_eq!(header("rill.attempts").as_deref(), Some("2"));
    assert_eq!(
        header("trace-id"),
        Some(name.clone()),
        "the record's own header"
    );

    let d = wait_caught_up(&h, &name);
    assert_eq!(d.partitions[0].committed, Some(3));
    assert_eq!(d.dead_lettered, 1, "{d:#?}");
    let forwarded: Vec<String> = consume(&bootstrap, "out")
        .into_iter()
        .filter_map(|r| r.value.filter(|v| v.starts_with(&format!("{name} "))))
        .collect();
    assert_eq!(forwarded, vec![ok(0), ok(2)]);
}

/// On a three-broker cluster with replication factor 3 and `min.insync.replicas` 2, losing the
/// broker that leads the outputs' partition stops nothing: every acknowledged order is
/// mailed. Duplicates are counted, not bounded: if the lost broker was the group's
/// coordinator, the host's 6 s session can expire before a new coordinator hears from it,
/// and partitions lost that way are abandoned without a commit and processed again from the
/// last one (docs/cluster.md, "The host loses the network").
#[test]
fn losing_a_broker_of_three_loses_no_order() {
    // The run's broker is not used, but its absence means Apache Kafka is not set up here.
    if broker().is_none() {
        return;
    }
    let _serial = serial();
    let kafka = OwnCluster::start(3);
    let bootstrap = kafka.bootstrap.clone();
    let name = unique("broker-loss");
    let cluster = Cluster::new(&bootstrap);
    let orders = unique("broker-loss-orders");
    create_topic(&bootstrap, &orders, 4, 3, &["min.insync.replicas=2"]);
    let h = cluster.host(&format!("{name}-a"));
    deploy_notifier(&h, &name, &orders, &name, &[]);
    // The output topic Rill created is replicated on every broker.
    let emails_meta = describe(&bootstrap, "emails").expect("the deploy created emails");
    assert!(
        emails_meta.iter().all(|p| p.replicas.len() == 3),
        "{emails_meta:?}"
    );
    let catalog = describe(&bootstrap, &cluster.catalog).expect("the catalog topic");
    assert!(catalog.iter().all(|p| p.replicas.len() == 3), "{catalog:?}");

    wait_brokers(&h, 3);

    let stream = OrderStream::start(&bootstrap, &orders, 0, 100);
    let before = h
        .wait_for(WAIT, || {
            let n = emails(&bootstrap, &name).len();
            (n >= 200).then_some(n)
        })
        .unwrap_or_else(|| panic!("no emails before the broker loss\n{}", logs(&[&h])));
    // The broker the sink writes to.
    let leader = describe(&bootstrap, "emails").expect("emails")[0].leader;
    assert!((1..=3).contains(&leader), "emails has no leader: {leader}");
    kafka.kill_node(leader as u32);
    h.wait_for(WAIT, || {
        (emails(&bootstrap, &name).len() >= before + 300).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no progress after node {leader} was killed\n{}\n--- surviving node log (tail)\n{}",
            logs(&[&h]),
            tail(&kafka.log(if leader == 1 { 2 } else { 1 }), 20)
        )
    });
    // The cluster's metadata drops the fenced broker; the host still reaches the others.
    wait_brokers(&h, 2);
    let produced = stream.finish();
    if !produced.failed.is_empty() {
        eprintln!(
            "{} orders were not acknowledged during the broker loss (not checked): {:?}",
            produced.failed.len(),
            &produced.failed[..produced.failed.len().min(5)]
        );
    }
    let want: BTreeSet<u64> = produced.acked.iter().copied().collect();
    let got = wait_emails(&bootstrap, &name, &want, &[&h]);
    let per_id: BTreeMap<u64, usize> = got.iter().fold(BTreeMap::new(), |mut m, i| {
        *m.entry(*i).or_default() += 1;
        m
    });
    eprintln!(
        "broker loss: node {leader} killed, {} orders acknowledged, {} mailed twice or more",
        want.len(),
        per_id.values().filter(|&&n| n > 1).count()
    );
    wait_caught_up(&h, &name);
}

/// The first host of a catalog creates its topic, and the brokers of a multi-broker cluster
/// learn of a new topic one after another: the host must start all the same, whichever
/// broker its clients ask first. Several hosts, each the first on a catalog of its own, so
/// that a race there shows.
#[test]
fn hosts_that_create_their_catalog_on_three_brokers_start() {
    if broker().is_none() {
        return;
    }
    let _serial = serial();
    let kafka = OwnCluster::start(3);
    let name = unique("first");
    for i in 0..10 {
        // Cluster::host panics, with the host's log, if the host does not start.
        let cluster = Cluster::new(&kafka.bootstrap);
        let h = cluster.host(&format!("{name}-{i}"));
        assert!(h.client().get::<Status>("/v1/status").is_ok());
    }
}

#[test]
fn bad_cluster_configuration_is_refused_in_one_line() {
    // A pinned property, before anything is contacted.
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = |extra: &[&str]| {
        std::process::Command::new(rill_tests::host::runtime_bin())
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
    let started = std::time::Instant::now();
    let out = serve(&["--kafka-cluster", "127.0.0.1:1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
