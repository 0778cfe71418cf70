//! Hosts SIGKILLed under load, at least once and exactly once: the two guarantees' crash
//! contracts (docs/delivery.md).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rill_runtime::deployment::Guarantee;
use rill_tests::cluster::{Cluster, OrderStream, Produced, consume, create_topic};
use rill_tests::host::TestHost;

use super::{
    WAIT, broker, deploy_notifier, deployment, duplicates, emails, emails_with, serial,
    split_among, tail, wait_caught_up, wait_emails, wait_split,
};

const PARTITIONS: u32 = 4;
const BATCH: u32 = 20;

/// Kills per run: `default` in CI; RILL_CLUSTER_KILLS asks for a longer soak
/// (docs/reliability.md).
fn kills(default: usize) -> usize {
    std::env::var("RILL_CLUSTER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Two hosts running deployment `name` of the notifier (batches of [`BATCH`], `extra` deploy
/// flags) on a fresh topic of [`PARTITIONS`] partitions, orders flowing into it. Each host in
/// turn is SIGKILLed and restarted, `kills` times, each time once it runs partitions and
/// after a varying delay. Returns the hosts, settled again, and what was produced.
fn crash_loop(
    cluster: &Cluster,
    name: &str,
    extra: &[&str],
    kills: usize,
) -> ([TestHost; 2], Produced) {
    let bootstrap = &cluster.bootstrap;
    let orders = format!("{name}-orders");
    create_topic(bootstrap, &orders, PARTITIONS, 1, &[]);
    let mut hosts = [
        cluster.host(&format!("{name}-a")),
        cluster.host(&format!("{name}-b")),
    ];
    let batch = BATCH.to_string();
    let mut flags = vec!["--batch", batch.as_str()];
    flags.extend_from_slice(extra);
    deploy_notifier(&hosts[0], name, &orders, name, &flags);
    wait_split(&[&hosts[0], &hosts[1]], name);

    let stream = OrderStream::start(bootstrap, &orders, 0, 150);
    // Kill times vary from run to run, so kills land anywhere in an invocation.
    let mut jitter = std::process::id() as u64;
    for k in 0..kills {
        let victim = &mut hosts[k % 2];
        let id = victim.host_id.clone().expect("a cluster host");
        // Only a host that runs partitions is worth killing: wait until the victim does, as
        // it sees itself (the owner named by a dead member is its host id too).
        victim
            .wait_for(WAIT, || {
                let d = deployment(victim, name)?;
                d.partitions
                    .iter()
                    .any(|p| {
                        p.owner.as_deref() == Some(id.as_str())
                            && p.status != "remote"
                            && p.status != "unassigned"
                    })
                    .then_some(())
            })
            .unwrap_or_else(|| {
                panic!(
                    "kill {k}: {id} never got partitions back: {:#?}\n{}",
                    deployment(victim, name).map(|d| d.partitions),
                    tail(&victim.log(), 40)
                )
            });
        jitter = jitter
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(300 + (jitter >> 33) % 1200));
        victim.kill();
        victim.spawn();
    }
    // The last victim works again before the stream ends, so both hosts finish the job.
    wait_split(&[&hosts[0], &hosts[1]], name);
    let produced = stream.finish();
    assert!(produced.failed.is_empty(), "{:?}", produced.failed);
    (hosts, produced)
}

/// Orders flow while one of two hosts is SIGKILLed and restarted, again and again. Every
/// acknowledged order is mailed; the only duplicates are invocations a kill cut between
/// their outputs and their commit: at most one batch per partition the victim owned.
#[test]
fn killing_hosts_under_load_loses_no_order() {
    let kills = kills(6);
    let Some(bootstrap) = broker() else { return };
    let _serial = serial();
    let cluster = Cluster::new(&bootstrap);
    let name = rill_tests::apache::unique("crash");
    let (hosts, produced) = crash_loop(&cluster, &name, &[], kills);
    let want: BTreeSet<u64> = produced.acked.iter().copied().collect();
    assert!(want.len() > 1_000, "only {} orders produced", want.len());

    let got = wait_emails(&bootstrap, &name, &want, &[&hosts[0], &hosts[1]]);
    let stray: Vec<&u64> = got.iter().filter(|i| !want.contains(i)).take(10).collect();
    assert!(
        stray.is_empty(),
        "emails for orders never acknowledged: {stray:?}"
    );
    let dups = duplicates(&got);
    let bound = kills * PARTITIONS as usize * BATCH as usize;
    eprintln!(
        "crash loop: {kills} kills, {} orders, {dups} mailed twice or more (bound {bound})",
        want.len()
    );
    assert!(
        dups <= bound,
        "{dups} duplicates: more than one batch per partition per kill ({bound})"
    );
    wait_caught_up(&hosts[0], &name);
}

/// The same crash loop with an exactly-once deployment: each partition's outputs and its
/// offsets commit in one Kafka transaction, and the next owner of a partition fences the
/// killed one's producer and aborts what it left open. A read_committed reader sees every
/// acknowledged order's email exactly once — none lost, none twice — and, per partition of
/// the orders, in the orders' order.
#[test]
fn killing_hosts_of_an_exactly_once_deployment_mails_every_order_exactly_once() {
    let kills = kills(4);
    let Some(bootstrap) = broker() else { return };
    let _serial = serial();
    let cluster = Cluster::new(&bootstrap);
    let name = rill_tests::apache::unique("eos");
    let (hosts, produced) = crash_loop(&cluster, &name, &["--guarantee", "exactly-once"], kills);
    let d = deployment(&hosts[1], &name).expect("listed");
    assert_eq!(d.spec.guarantee, Guarantee::ExactlyOnce);
    let list = hosts[1].cli_ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(name.as_str()) && l.contains("exactly-once")),
        "{list}"
    );
    let want: BTreeSet<u64> = produced.acked.iter().copied().collect();
    assert!(want.len() > 500, "only {} orders produced", want.len());

    wait_emails(&bootstrap, &name, &want, &[&hosts[0], &hosts[1]]);
    wait_caught_up(&hosts[0], &name);
    // Read again once everything is committed: a duplicate would be there by now.
    let got = emails(&bootstrap, &name);
    let have: BTreeSet<u64> = got.iter().copied().collect();
    let lost: Vec<&u64> = want.difference(&have).take(10).collect();
    let stray: Vec<&u64> = have.difference(&want).take(10).collect();
    let dups = duplicates(&got);
    // What a reader that does not skip aborted transactions sees: the kills' duplicates.
    let uncommitted = duplicates(&emails_with(&bootstrap, &name, "read_uncommitted"));
    eprintln!(
        "exactly-once crash loop: {kills} kills, {} orders, {} lost, {dups} duplicated \
         (read_uncommitted: {uncommitted} duplicated)",
        want.len(),
        want.difference(&have).count()
    );
    assert!(lost.is_empty(), "orders without an email: {lost:?}");
    assert!(
        stray.is_empty(),
        "emails for orders never acknowledged: {stray:?}"
    );
    assert_eq!(dups, 0, "emails a read_committed reader sees twice");
    assert_in_order(&bootstrap, &name);
}

/// A host frozen (SIGSTOP) in the middle of an exactly-once deployment's work is a zombie:
/// its session expires, its partitions move to the other host, whose producers initialise
/// the same transactional ids and so fence it. Thawed, it finishes the turns it was in and
/// cannot commit them: read_committed readers still see every order's email once.
#[test]
fn a_frozen_host_of_an_exactly_once_deployment_is_fenced_when_it_thaws() {
    let Some(bootstrap) = broker() else { return };
    let _serial = serial();
    let cluster = Cluster::new(&bootstrap);
    let name = rill_tests::apache::unique("zombie");
    let orders = format!("{name}-orders");
    create_topic(&bootstrap, &orders, 2, 1, &[]);
    let (a, b) = (
        cluster.host(&format!("{name}-a")),
        cluster.host(&format!("{name}-b")),
    );
    let flags = ["--batch", "20", "--guarantee", "exactly-once"];
    deploy_notifier(&a, &name, &orders, &name, &flags);
    wait_split(&[&a, &b], &name);
    let stream = OrderStream::start(&bootstrap, &orders, 0, 300);
    let only_b: BTreeSet<String> = b.host_id.iter().cloned().collect();
    // A freeze bites only if it lands inside a turn; a few tries usually see one.
    let mut fenced = false;
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        a.signal("STOP");
        b.wait_for(WAIT, || split_among(&b, &name, &only_b).then_some(()))
            .unwrap_or_else(|| panic!("B never took A's partitions\n{}", tail(&b.log(), 40)));
        std::thread::sleep(Duration::from_secs(1));
        a.signal("CONT");
        wait_split(&[&a, &b], &name);
        fenced = a.log().lines().any(|l| l.contains("fenced"));
        if fenced {
            break;
        }
    }
    let produced = stream.finish();
    assert!(produced.failed.is_empty(), "{:?}", produced.failed);
    let want: BTreeSet<u64> = produced.acked.iter().copied().collect();
    wait_emails(&bootstrap, &name, &want, &[&a, &b]);
    wait_caught_up(&b, &name);
    let got = emails(&bootstrap, &name);
    if let Some(l) = a.log().lines().find(|l| l.contains("fenced")) {
        eprintln!("zombie: the thawed host says: {l}");
    }
    eprintln!(
        "zombie: {} orders, {} emails, {} duplicated; the thawed host {} fenced in its log \
         (read_uncommitted: {} duplicated)",
        want.len(),
        got.len(),
        duplicates(&got),
        if fenced { "was" } else { "was not" },
        duplicates(&emails_with(&bootstrap, &name, "read_uncommitted"))
    );
    assert_eq!(got.iter().copied().collect::<BTreeSet<u64>>(), want);
    assert_eq!(
        duplicates(&got),
        0,
        "emails a read_committed reader sees twice"
    );
    assert_in_order(&bootstrap, &name);
}

/// Within each partition of the orders, the emails (one partition) come in the orders'
/// order.
fn assert_in_order(bootstrap: &str, name: &str) {
    let place: BTreeMap<u64, (u32, i64)> = consume(bootstrap, &format!("{name}-orders"))
        .iter()
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_str(r.value.as_deref()?).ok()?;
            Some((v["order_id"].as_u64()?, (r.partition, r.offset)))
        })
        .collect();
    let mut last: BTreeMap<u32, (i64, u64)> = BTreeMap::new();
    for r in consume(bootstrap, "emails") {
        let Some(v) = r
            .value
            .as_deref()
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        else {
            continue;
        };
        if v["template"] != name {
            continue;
        }
        let id = v["order_id"].as_u64().expect("an order id");
        let (p, offset) = place[&id];
        if let Some((before, prev)) = last.insert(p, (offset, id)) {
            assert!(
                before < offset,
                "partition {p}: the email of order {id} (offset {offset}) after that of \
                 order {prev} (offset {before})"
            );
        }
    }
}
