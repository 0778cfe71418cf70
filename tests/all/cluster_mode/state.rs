//! Durable state in cluster mode (docs/state.md): the order-totals read model on two hosts
//! of an Apache Kafka cluster. Its changelog is a compacted topic of the cluster; a host
//! SIGKILLed mid-stream loses its partitions to the other, which restores their stores from
//! the changelog before handling a record, and the totals stay exact.

use std::collections::BTreeMap;

use rill_runtime::admin::api::StateScan;
use rill_tests::apache::unique;
use rill_tests::cluster::{Cluster, Produce, create_topic, describe, produce};
use rill_tests::guests;
use rill_tests::host::TestHost;
use serde_json::{Value, json};

use super::{broker, logs, serial, wait_caught_up, wait_split};

/// `count` orders from `first` for 40 customers, keyed by customer, and their totals.
fn orders(first: u64, count: u64) -> (Vec<Produce>, BTreeMap<String, (u64, u64)>) {
    let mut records = Vec::new();
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for i in first..first + count {
        let c = format!("c{:02}", (i * 7919) % 40);
        let cents = 100 + (i * 37) % 900;
        records.push(Produce {
            key: Some(c.clone()),
            value: Some(json!({"order_id": i, "amount_cents": cents}).to_string()),
            headers: Vec::new(),
        });
        let t = totals.entry(c).or_default();
        t.0 += 1;
        t.1 += cents;
    }
    (records, totals)
}

/// Waits until `hosts` together answer `expected` (positions in the cluster are refreshed
/// every few seconds, so "caught up" alone can be stale), then checks it.
fn wait_totals(hosts: &[&TestHost], name: &str, expected: &BTreeMap<String, (u64, u64)>) {
    let done = hosts[0].wait_for(super::WAIT, || {
        let all = hosts.iter().all(|h| {
            h.client()
                .get::<StateScan>(&format!("/v1/deployments/{name}/state?limit=1"))
                .is_ok()
        });
        (all && queried(hosts, name) == *expected).then_some(())
    });
    if done.is_none() {
        assert_eq!(queried(hosts, name), *expected, "{}", logs(hosts));
    }
}

/// The changelog records the `state restored` lines of a host's log read, in total.
fn restored_from_changelog(log: &str) -> u64 {
    let plain = strip_ansi(log);
    plain
        .lines()
        .filter(|l| l.contains("state restored"))
        .filter_map(|l| l.split("from_changelog=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `s` without terminal colour escapes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The totals `hosts` answer together: each host answers for the partitions it runs.
fn queried(hosts: &[&TestHost], name: &str) -> BTreeMap<String, (u64, u64)> {
    let mut all = BTreeMap::new();
    for h in hosts {
        let page: StateScan = h
            .client()
            .get(&format!("/v1/deployments/{name}/state?limit=10000"))
            .expect("scan");
        for e in page.entries {
            let v: Value = serde_json::from_str(e.value.as_deref().unwrap()).unwrap();
            let t = (
                v["orders"].as_u64().unwrap(),
                v["total_cents"].as_u64().unwrap(),
            );
            assert!(
                all.insert(e.key.clone(), t).is_none(),
                "{} on two hosts",
                e.key
            );
        }
    }
    all
}

fn state_moves_with_its_partitions(guarantee: &str) {
    let Some(bootstrap) = broker() else { return };
    let _serial = serial();
    let cluster = Cluster::new(&bootstrap);
    let name = unique("totals");
    let topic = format!("{name}-orders");
    create_topic(&bootstrap, &topic, 4, 1, &[]);
    let a = cluster.host(&format!("{name}-a"));
    let mut b = cluster.host(&format!("{name}-b"));
    a.cli_ok(&[
        "deploy",
        guests::ORDER_TOTALS,
        "--name",
        &name,
        "--topic",
        &topic,
        "--batch",
        "20",
        "--guarantee",
        guarantee,
    ]);
    wait_split(&[&a, &b], &name);
    // The changelog is in the cluster, compacted, one partition per source partition.
    let changelog = describe(&bootstrap, &format!("{name}.state")).expect("the changelog");
    assert_eq!(changelog.len(), 4);

    let (first, mut expected) = orders(0, 400);
    produce(&bootstrap, &topic, &first);
    wait_totals(&[&a, &b], &name, &expected);

    // b dies with orders coming; a takes its partitions and restores their state.
    let (second, more) = orders(400, 400);
    for (c, (n, cents)) in more {
        let t = expected.entry(c).or_default();
        t.0 += n;
        t.1 += cents;
    }
    produce(&bootstrap, &topic, &second[..200]);
    b.kill();
    produce(&bootstrap, &topic, &second[200..]);
    wait_split(&[&a], &name);
    wait_totals(&[&a], &name, &expected);
    assert!(
        restored_from_changelog(&a.log()) > 0,
        "a restored none of b's partitions from the changelog\n{}",
        logs(&[&a])
    );

    // b comes back and takes a share again, restored from the changelog.
    b.spawn();
    wait_split(&[&a, &b], &name);
    wait_totals(&[&a, &b], &name, &expected);
    wait_caught_up(&a, &name);
}

#[test]
fn state_moves_with_its_partitions_at_least_once() {
    state_moves_with_its_partitions("at-least-once");
}

#[test]
fn state_moves_with_its_partitions_exactly_once() {
    state_moves_with_its_partitions("exactly-once");
}
