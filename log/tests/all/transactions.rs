//! Idempotent producers and transactions: sequence checks, markers, the last stable offset,
//! aborted-transaction index, fencing, timeouts, and all of it across restarts.

use rill_log::batch::{ProducerFields, encode, set_producer};
use rill_log::{
    AbortedTxn, AppendError, Log, LogOptions, ProducerError, Record, TopicConfig, TxnError, batches,
};

fn open(dir: &std::path::Path) -> Log {
    Log::open(dir, LogOptions::default()).unwrap()
}

fn batch(values: &[&str], pid: i64, epoch: i16, seq: i32, txn: bool) -> Vec<u8> {
    let recs: Vec<Record<'_>> = values
        .iter()
        .map(|v| Record {
            value: Some(v.as_bytes()),
            ..Record::default()
        })
        .collect();
    // Producers stamp batches with their clock; the log forgets a producer a day after its
    // newest batch.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut b = encode(&recs, now);
    set_producer(
        &mut b,
        ProducerFields {
            producer_id: pid,
            epoch,
            base_sequence: seq,
            transactional: txn,
        },
    );
    b
}

/// Values of the data records in `[from, lso)`, skipping control batches and aborted
/// transactions as a read_committed consumer does.
fn committed(log: &Log, topic: &str) -> Vec<String> {
    let p = log.topic(topic).unwrap().partition(0).unwrap().clone();
    let mut buf = Vec::new();
    let r = p.read_committed_into(0, 1 << 20, &mut buf).unwrap();
    let aborted = p.aborted_transactions(0, r.next_offset);
    let mut out = Vec::new();
    for b in batches(&buf[..r.len]) {
        let b = b.unwrap();
        if b.is_control() || aborted.iter().any(|a| a.covers(&b)) {
            continue;
        }
        for r in b.records() {
            out.push(String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap());
        }
    }
    out
}

#[test]
fn a_retried_batch_is_stored_once_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::default()).unwrap();
    let (pid, epoch) = log.init_producer_id(None, 60_000, None).unwrap();
    let p = log.topic("t").unwrap().partition(0).unwrap().clone();
    let first = p
        .append_batch(&mut batch(&["a", "b"], pid, epoch, 0, false))
        .unwrap();
    let again = p
        .append_batch(&mut batch(&["a", "b"], pid, epoch, 0, false))
        .unwrap();
    assert_eq!((again.base_offset, again.last_offset), (0, 1));
    assert_eq!(first.base_offset, again.base_offset);
    assert_eq!(p.high_watermark(), 2);
    let gap = p.append_batch(&mut batch(&["d"], pid, epoch, 3, false));
    assert!(matches!(
        gap,
        Err(AppendError::Producer(ProducerError::OutOfOrderSequence {
            expected: 2,
            got: 3,
            ..
        }))
    ));
    p.append_batch(&mut batch(&["c"], pid, epoch, 2, false))
        .unwrap();
    drop(p);
    log.simulate_crash();

    let log = open(dir.path());
    let p = log.topic("t").unwrap().partition(0).unwrap().clone();
    let retry = p
        .append_batch(&mut batch(&["c"], pid, epoch, 2, false))
        .unwrap();
    assert_eq!(
        retry.base_offset, 2,
        "a retry after the restart is a duplicate"
    );
    assert_eq!(p.high_watermark(), 3);
    // A fresh producer id after the restart is not one handed out before.
    let (pid2, _) = log.init_producer_id(None, 60_000, None).unwrap();
    assert_ne!(pid2, pid);
}

#[test]
fn commit_abort_lso_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("out", TopicConfig::default()).unwrap();
    log.create_topic("in", TopicConfig::default()).unwrap();
    let p = log.topic("out").unwrap().partition(0).unwrap().clone();
    let parts = vec![("out".to_string(), 0)];
    let (pid, e) = log.init_producer_id(Some("tx"), 60_000, None).unwrap();

    // Appending before the partition joins the transaction is refused by the door's check.
    assert!(log.verify_txn_partition(pid, e, "out", 0).is_err());
    log.add_partitions_to_txn("tx", pid, e, &parts).unwrap();
    log.verify_txn_partition(pid, e, "out", 0).unwrap();
    p.append_batch(&mut batch(&["a1", "a2"], pid, e, 0, true))
        .unwrap();
    assert_eq!(
        p.last_stable_offset(),
        0,
        "an open transaction holds the LSO"
    );
    assert!(committed(&log, "out").is_empty());
    log.add_offsets_to_txn("tx", pid, e, "g").unwrap();
    log.txn_offset_commit("tx", pid, e, "g", &[("in".into(), 0, 5)])
        .unwrap();
    assert!(log.pending_txn_offset("g", "in", 0));
    assert_eq!(log.offsets().fetch("g", "in", 0), None);
    log.end_txn("tx", pid, e, true).unwrap();
    assert_eq!(log.offsets().fetch("g", "in", 0), Some(5));
    assert_eq!(p.high_watermark(), 3, "two records and a commit marker");
    assert_eq!(p.last_stable_offset(), 3);
    // A retried EndTxn answers as the first did.
    log.end_txn("tx", pid, e, true).unwrap();

    log.add_partitions_to_txn("tx", pid, e, &parts).unwrap();
    p.append_batch(&mut batch(&["b1"], pid, e, 2, true))
        .unwrap();
    log.add_offsets_to_txn("tx", pid, e, "g").unwrap();
    log.txn_offset_commit("tx", pid, e, "g", &[("in".into(), 0, 9)])
        .unwrap();
    log.end_txn("tx", pid, e, false).unwrap();
    assert_eq!(
        log.offsets().fetch("g", "in", 0),
        Some(5),
        "abort drops offsets"
    );
    assert_eq!(
        p.aborted_transactions(0, 10),
        vec![AbortedTxn {
            producer_id: pid,
            first_offset: 3,
            last_offset: 4
        }]
    );
    log.add_partitions_to_txn("tx", pid, e, &parts).unwrap();
    p.append_batch(&mut batch(&["c1"], pid, e, 3, true))
        .unwrap();
    log.end_txn("tx", pid, e, true).unwrap();
    assert_eq!(committed(&log, "out"), ["a1", "a2", "c1"]);
    drop(p);
    log.close().unwrap();
    drop(log);

    let log = open(dir.path());
    assert_eq!(committed(&log, "out"), ["a1", "a2", "c1"]);
    let p = log.topic("out").unwrap().partition(0).unwrap().clone();
    assert_eq!(p.aborted_transactions(0, 10).len(), 1);
    assert_eq!(log.offsets().fetch("g", "in", 0), Some(5));
}

#[test]
fn a_new_instance_fences_the_old_and_aborts_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("out", TopicConfig::default()).unwrap();
    let p = log.topic("out").unwrap().partition(0).unwrap().clone();
    let parts = vec![("out".to_string(), 0)];
    let (pid, e1) = log.init_producer_id(Some("tx"), 60_000, None).unwrap();
    log.add_partitions_to_txn("tx", pid, e1, &parts).unwrap();
    p.append_batch(&mut batch(&["zombie"], pid, e1, 0, true))
        .unwrap();

    let (pid2, e2) = log.init_producer_id(Some("tx"), 60_000, None).unwrap();
    assert_eq!(pid2, pid);
    assert!(e2 > e1);
    assert_eq!(
        p.last_stable_offset(),
        p.high_watermark(),
        "the zombie's txn was aborted"
    );
    let late = p.append_batch(&mut batch(&["late"], pid, e1, 1, true));
    assert!(matches!(
        late,
        Err(AppendError::Producer(ProducerError::Fenced { .. }))
    ));
    assert!(matches!(
        log.end_txn("tx", pid, e1, true),
        Err(TxnError::ProducerFenced(_))
    ));
    log.add_partitions_to_txn("tx", pid, e2, &parts).unwrap();
    p.append_batch(&mut batch(&["new"], pid, e2, 0, true))
        .unwrap();
    log.end_txn("tx", pid, e2, true).unwrap();
    assert_eq!(committed(&log, "out"), ["new"]);
}

#[test]
fn an_open_transaction_survives_a_crash_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("out", TopicConfig::default()).unwrap();
    let parts = vec![("out".to_string(), 0)];
    let (pid, e) = log.init_producer_id(Some("tx"), 10_000, None).unwrap();
    log.add_partitions_to_txn("tx", pid, e, &parts).unwrap();
    let p = log.topic("out").unwrap().partition(0).unwrap().clone();
    p.append(&[Record {
        value: Some(b"plain"),
        ..Record::default()
    }])
    .unwrap();
    p.append_batch(&mut batch(&["open"], pid, e, 0, true))
        .unwrap();
    drop(p);
    log.simulate_crash();

    let log = open(dir.path());
    let p = log.topic("out").unwrap().partition(0).unwrap().clone();
    assert_eq!(p.last_stable_offset(), 1, "still open after the restart");
    assert_eq!(committed(&log, "out"), ["plain"]);
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 3_600_000;
    assert_eq!(log.abort_expired_transactions(in_an_hour), 1);
    assert_eq!(p.last_stable_offset(), p.high_watermark());
    assert_eq!(committed(&log, "out"), ["plain"]);
    assert!(matches!(
        log.end_txn("tx", pid, e, true),
        Err(TxnError::ProducerFenced(_))
    ));
}

#[test]
fn a_commit_cut_short_by_a_failed_marker_completes_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let io = std::sync::Arc::new(rill_log::io::FaultIo::new());
    let opts = LogOptions {
        io: io.clone(),
        ..LogOptions::default()
    };
    let log = Log::open(dir.path(), opts).unwrap();
    let cfg = TopicConfig {
        flush: rill_log::FlushPolicy::Always,
        ..TopicConfig::default()
    };
    log.create_topic("out", cfg).unwrap();
    let parts = vec![("out".to_string(), 0)];
    let (pid, e) = log.init_producer_id(Some("tx"), 60_000, None).unwrap();
    log.add_partitions_to_txn("tx", pid, e, &parts).unwrap();
    let p = log.topic("out").unwrap().partition(0).unwrap().clone();
    p.append_batch(&mut batch(&["x"], pid, e, 0, true)).unwrap();
    log.add_offsets_to_txn("tx", pid, e, "g").unwrap();
    log.txn_offset_commit("tx", pid, e, "g", &[("in".into(), 0, 1)])
        .unwrap();
    // The commit marker's fsync fails: the commit was decided but is not complete.
    io.fail_next_syncs(1);
    assert!(matches!(
        log.end_txn("tx", pid, e, true),
        Err(TxnError::Storage(_))
    ));
    assert_eq!(log.offsets().fetch("g", "in", 0), None);
    assert_eq!(
        log.transactions()[0].state,
        rill_log::TxnState::PrepareCommit
    );
    drop(p);
    log.simulate_crash();

    let log = open(dir.path());
    assert_eq!(
        log.transactions()[0].state,
        rill_log::TxnState::CompleteCommit
    );
    assert_eq!(committed(&log, "out"), ["x"]);
    assert_eq!(log.offsets().fetch("g", "in", 0), Some(1));
    let p = log.topic("out").unwrap().partition(0).unwrap().clone();
    assert_eq!(p.last_stable_offset(), p.high_watermark());
}

#[test]
fn idle_transactional_ids_expire_after_seven_days_and_stay_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("out", TopicConfig::default()).unwrap();
    let (pid, e) = log.init_producer_id(Some("old"), 60_000, None).unwrap();
    log.init_producer_id(Some("open"), 60_000, None).unwrap();
    let (open_pid, open_e) = log.init_producer_id(Some("open"), 60_000, None).unwrap();
    log.add_partitions_to_txn("open", open_pid, open_e, &[("out".into(), 0)])
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let eight_days = 8 * 24 * 3_600_000;
    // A day later the open transaction has timed out and been aborted; nothing is
    // forgotten. Eight days later both ids are, idle for more than seven.
    assert_eq!(log.abort_expired_transactions(now + 24 * 3_600_000), 1);
    let states: Vec<_> = log.transactions().into_iter().map(|m| m.state).collect();
    assert_eq!(
        states,
        [rill_log::TxnState::Empty, rill_log::TxnState::CompleteAbort]
    );
    log.abort_expired_transactions(now + eight_days);
    assert!(log.transactions().is_empty());
    assert!(matches!(
        log.end_txn("old", pid, e, true),
        Err(TxnError::InvalidProducerIdMapping { .. })
    ));
    log.close().unwrap();
    drop(log);
    let log = open(dir.path());
    assert!(log.transactions().is_empty(), "forgotten across a restart");
}
