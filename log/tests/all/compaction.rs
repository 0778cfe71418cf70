//! Compaction by key: a model-based test against a map of what was appended, tombstones and
//! the delete horizon, min lag, null keys, reads over compacted offsets, transactions,
//! concurrency with reads and appends, and reopening (with a crash's leftovers).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rill_log::batch::{ProducerFields, encode, set_producer};
use rill_log::{AppendError, CleanupPolicy, Header, Log, Partition, Record, TopicConfig, batches};

use crate::common::{open, quiet_opts};

/// One record as appended and as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    ts: i64,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

const DAY: i64 = 86_400_000;

fn compacted(delete_retention_ms: u64, lag_ms: u64) -> TopicConfig {
    TopicConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes: 1024,
        delete_retention_ms,
        min_compaction_lag_ms: lag_ms,
        ..TopicConfig::default()
    }
}

fn part(log: &Log, topic: &str) -> Arc<Partition> {
    log.topic(topic).unwrap().partition(0).unwrap().clone()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Appends one keyed record (a tombstone when `value` is `None`).
fn put(p: &Partition, key: &str, value: Option<&str>, ts: i64) -> Rec {
    let h = [Header {
        key: "h",
        value: Some(key.as_bytes()),
    }];
    let info = p
        .append(&[Record {
            key: Some(key.as_bytes()),
            value: value.map(str::as_bytes),
            headers: &h,
            timestamp_ms: Some(ts),
        }])
        .unwrap();
    Rec {
        offset: info.base_offset,
        key: Some(key.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
        ts,
        headers: vec![("h".into(), Some(key.as_bytes().to_vec()))],
    }
}

/// Every record of the partition, read with `read_into` from the log start, checking that
/// batches are contiguous and offsets strictly increase.
fn read_recs(p: &Partition) -> Vec<Rec> {
    let mut out: Vec<Rec> = Vec::new();
    let mut next = p.log_start_offset();
    let mut buf = Vec::new();
    while next < p.high_watermark() {
        let r = p.read_into(next, 4096, &mut buf).unwrap();
        assert!(
            r.len > 0 && r.next_offset > next,
            "read at {next} made no progress"
        );
        for b in batches(&buf[..r.len]) {
            let b = b.unwrap();
            b.validate().unwrap();
            for rec in b.records() {
                let rec = rec.unwrap();
                if rec.offset < next {
                    continue;
                }
                assert!(rec.offset <= b.last_offset());
                if let Some(last) = out.last() {
                    assert!(rec.offset > last.offset, "offsets must increase");
                }
                out.push(Rec {
                    offset: rec.offset,
                    key: rec.key.map(<[u8]>::to_vec),
                    value: rec.value.map(<[u8]>::to_vec),
                    ts: rec.timestamp_ms,
                    headers: rec
                        .headers
                        .iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect(),
                });
            }
        }
        next = r.next_offset;
    }
    out
}

/// The latest offset of every key among `appended`.
fn latest(appended: &[Rec]) -> HashMap<Vec<u8>, i64> {
    let mut m = HashMap::new();
    for r in appended {
        m.insert(r.key.clone().unwrap(), r.offset);
    }
    m
}

/// A small deterministic generator (xorshift), so failures replay from the seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn model_random_appends_tombstones_rolls_and_compactions() {
    const RETENTION: i64 = 10_000;
    for seed in 1..=6u64 {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        log.create_topic("c", compacted(RETENTION as u64, 0))
            .unwrap();
        let p = part(&log, "c");
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut appended: Vec<Rec> = Vec::new();
        // When a compaction pass first examined each offset (the tombstone clock).
        let mut seen: HashMap<i64, i64> = HashMap::new();
        let mut clock = now();
        let mut dirty_from = 0i64;
        for step in 0..400 {
            if rng.below(10) < 8 {
                let key = format!("k{}", rng.below(8));
                let value = (rng.below(6) != 0)
                    .then(|| format!("v{step}-{}", "x".repeat(rng.below(80) as usize)));
                appended.push(put(&p, &key, value.as_deref(), clock));
                continue;
            }
            clock += rng.below(4000) as i64;
            let report = p.compact(clock).unwrap();
            let got = read_recs(&p);
            let by_offset: HashMap<i64, &Rec> = appended.iter().map(|r| (r.offset, r)).collect();
            for r in &got {
                assert_eq!(
                    Some(&r),
                    by_offset.get(&r.offset),
                    "seed {seed}: record changed"
                );
            }
            let present: HashMap<i64, &Rec> = got.iter().map(|r| (r.offset, r)).collect();
            if !report.ran {
                assert_eq!(got.len(), present.len());
                continue;
            }
            dirty_from = dirty_from.max(report.cleaned_up_to);
            for r in appended.iter().filter(|r| r.offset < report.cleaned_up_to) {
                seen.entry(r.offset).or_insert(clock);
            }
            let latest = latest(&appended);
            for r in &appended {
                let is_latest = latest[r.key.as_ref().unwrap()] == r.offset;
                let expected = if r.offset >= dirty_from {
                    true
                } else if !is_latest {
                    false
                } else if r.value.is_none() {
                    clock < seen[&r.offset] + RETENTION
                } else {
                    true
                };
                assert_eq!(
                    present.contains_key(&r.offset),
                    expected,
                    "seed {seed} step {step}: offset {} (latest {is_latest}, tombstone {}, \
                     dirty from {dirty_from})",
                    r.offset,
                    r.value.is_none()
                );
            }
        }
        // Reopening serves exactly the same records.
        let before = read_recs(&p);
        let (hw, start) = (p.high_watermark(), p.log_start_offset());
        drop(p);
        log.close().unwrap();
        drop(log);
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        let p = part(&log, "c");
        assert_eq!((p.high_watermark(), p.log_start_offset()), (hw, start));
        assert_eq!(read_recs(&p), before, "seed {seed}: reopened log differs");
    }
}

#[test]
fn tombstones_go_after_delete_retention_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("c", compacted(60_000, 0)).unwrap();
    let p = part(&log, "c");
    let t = now();
    put(&p, "a", Some("1"), t);
    put(&p, "b", Some("1"), t);
    let tomb = put(&p, "a", None, t);
    // Fill past a roll so the tombstone's segment is sealed.
    let filler = "f".repeat(200);
    for i in 0..8 {
        put(&p, &format!("z{i}"), Some(&filler), t);
    }
    assert!(p.segment_count() > 1);
    let r = p.compact(t).unwrap();
    assert!(r.ran && r.records_removed >= 1, "{r:?}");
    let offsets: Vec<i64> = read_recs(&p).iter().map(|r| r.offset).collect();
    assert!(
        !offsets.contains(&0),
        "the older value of the deleted key goes at once"
    );
    assert!(
        offsets.contains(&tomb.offset),
        "the tombstone stays for now"
    );
    assert!(offsets.contains(&1));
    // Not yet due: the pass is skipped or keeps it.
    p.compact(t + 59_999).unwrap();
    assert!(read_recs(&p).iter().any(|r| r.offset == tomb.offset));
    let r = p.compact(t + 60_000).unwrap();
    assert!(r.ran, "a due tombstone makes the pass run");
    let after = read_recs(&p);
    assert!(
        !after.iter().any(|r| r.offset == tomb.offset),
        "tombstone gone"
    );
    assert!(after.iter().any(|r| r.offset == 1));
    assert_eq!(
        p.log_start_offset(),
        0,
        "compaction never moves the log start"
    );
}

#[test]
fn min_compaction_lag_keeps_recent_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("c", compacted(0, 10_000)).unwrap();
    let p = part(&log, "c");
    let t = now();
    put(&p, "a", Some("old"), t);
    for i in 0..8 {
        put(&p, "a", Some(&format!("{i}{}", "x".repeat(200))), t + 1);
    }
    assert!(p.segment_count() > 1);
    p.compact(t + 5_000).unwrap();
    assert!(
        read_recs(&p).iter().any(|r| r.offset == 0),
        "younger than the lag: kept"
    );
    let r = p.compact(t + 10_001).unwrap();
    assert!(r.ran && r.records_removed > 0, "{r:?}");
    let got = read_recs(&p);
    assert!(!got.iter().any(|r| r.offset == 0));
    assert_eq!(got.last().unwrap().offset, 8, "the latest survives");
}

#[test]
fn compacted_topics_refuse_null_keys_on_both_append_paths() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("c", compacted(DAY as u64, 0)).unwrap();
    let p = part(&log, "c");
    let e = p.append(&[Record {
        value: Some(b"v"),
        ..Record::default()
    }]);
    assert!(
        matches!(e, Err(AppendError::NullKeyInCompactedTopic)),
        "{e:?}"
    );
    let mut raw = encode(
        &[Record {
            value: Some(b"v"),
            ..Record::default()
        }],
        now(),
    );
    let e = p.append_batch(&mut raw);
    assert!(
        matches!(e, Err(AppendError::NullKeyInCompactedTopic)),
        "{e:?}"
    );
    assert_eq!(p.high_watermark(), 0);
    // A delete topic still takes them.
    log.create_topic("d", TopicConfig::default()).unwrap();
    part(&log, "d").append_batch(&mut raw).unwrap();
}

/// Five versions of eight keys, then a compaction: the layout most reads below start from.
fn compacted_partition(log: &Log) -> (Arc<Partition>, Vec<Rec>) {
    log.create_topic("c", compacted(DAY as u64, 0)).unwrap();
    let p = part(log, "c");
    let t0 = now() - 100_000;
    let mut appended = Vec::new();
    for round in 0..5 {
        for k in 0..8 {
            let ts = t0 + round * 1000 + k;
            appended.push(put(
                &p,
                &format!("k{k}"),
                Some(&format!("{round}{}", "v".repeat(60))),
                ts,
            ));
        }
    }
    let r = p.compact(now()).unwrap();
    assert!(
        r.segments_rewritten > 0 && r.bytes_after < r.bytes_before,
        "{r:?}"
    );
    (p, appended)
}

#[test]
fn reads_at_compacted_offsets_return_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    // Index entries every few batches, so lookups go through the rebuilt sparse indexes.
    let log = Log::open(
        dir.path(),
        rill_log::LogOptions {
            index_interval_bytes: 100,
            ..quiet_opts()
        },
    )
    .unwrap();
    let (p, appended) = compacted_partition(&log);
    let got = read_recs(&p);
    let kept: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert!(kept.len() < appended.len());
    assert_eq!(p.log_start_offset(), 0);
    assert_eq!(p.high_watermark(), appended.len() as i64);
    // From every offset, read, read_into and read_committed serve whole batches whose first
    // surviving record at or after the offset is the next kept one.
    for from in 0..p.high_watermark() {
        let want = kept.iter().copied().find(|&o| o >= from);
        let first = |bytes: &[u8]| {
            batches(bytes)
                .flat_map(|b| {
                    b.unwrap()
                        .records()
                        .map(|r| r.unwrap().offset)
                        .collect::<Vec<_>>()
                })
                .find(|&o| o >= from)
        };
        // Read until a record shows (an emptied run is one empty batch).
        let mut at = from;
        let mut found = None;
        while found.is_none() && at < p.high_watermark() {
            let r = p.read(at, 100).unwrap();
            assert!(r.next_offset > at);
            found = first(&r.bytes);
            at = r.next_offset;
        }
        assert_eq!(found, want, "read from {from}");
        let (mut at, mut found, mut buf) = (from, None, Vec::new());
        while found.is_none() && at < p.last_stable_offset() {
            let r = p.read_committed_into(at, 1 << 20, &mut buf).unwrap();
            assert!(r.next_offset > at);
            found = first(&buf[..r.len]);
            at = r.next_offset;
        }
        assert_eq!(found, want, "read_committed from {from}");
    }
    // Timestamps: each kept record's own; a compacted-away one's next kept record.
    for r in &appended {
        let want = got.iter().find(|g| g.ts >= r.ts).map(|g| g.offset);
        assert_eq!(p.offset_for_timestamp(r.ts).unwrap(), want, "ts {}", r.ts);
    }
    // The same after a reopen, whose sealed segments are trusted with their rebuilt indexes.
    drop(p);
    drop(log);
    let log = Log::open(
        dir.path(),
        rill_log::LogOptions {
            index_interval_bytes: 100,
            ..quiet_opts()
        },
    )
    .unwrap();
    let p = part(&log, "c");
    assert_eq!(read_recs(&p), got);
    for r in &appended {
        let want = got.iter().find(|g| g.ts >= r.ts).map(|g| g.offset);
        assert_eq!(p.offset_for_timestamp(r.ts).unwrap(), want, "ts {}", r.ts);
    }
}

#[test]
fn compaction_runs_while_others_append_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    log.create_topic("c", compacted(0, 0)).unwrap();
    let p = part(&log, "c");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let p = p.clone();
        std::thread::spawn(move || {
            let mut last = HashMap::new();
            for i in 0..3000 {
                let k = format!("k{}", i % 16);
                let r = put(&p, &k, Some(&format!("{i}-{}", "p".repeat(40))), now());
                last.insert(k, r);
            }
            last
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|seed| {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(seed + 7);
                let mut buf = Vec::new();
                let mut reads = 0;
                while !stop.load(Ordering::Acquire) {
                    let hw = p.high_watermark();
                    if hw == 0 {
                        continue;
                    }
                    let from = rng.below(hw as u64) as i64;
                    let r = p
                        .read_into(from, 2048, &mut buf)
                        .expect("read during compaction");
                    assert!(r.len > 0 && r.next_offset > from);
                    for b in batches(&buf[..r.len]) {
                        b.unwrap().validate().unwrap();
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let compactor = {
        let (p, stop) = (p.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rewritten = 0;
            while !stop.load(Ordering::Acquire) {
                rewritten += p.compact(now()).unwrap().segments_rewritten;
            }
            rewritten
        })
    };
    let last = writer.join().unwrap();
    stop.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    compactor.join().unwrap();
    p.compact(now() + 1).unwrap();
    let got = read_recs(&p);
    for (_, r) in last {
        assert!(got.contains(&r), "latest value of {:?} lost", r.key);
    }
    assert!(got.len() < 3000);
}

#[test]
fn reopening_after_compaction_is_identical_and_removes_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let (p, _) = compacted_partition(&log);
    let before = read_recs(&p);
    drop(p);
    log.close().unwrap();
    drop(log);
    let pdir = dir.path().join("topics").join("c").join("0");
    // What a crash leaves at each step of the swap: a cleaned file not yet renamed, and a
    // renamed segment whose indexes are gone.
    std::fs::write(
        pdir.join("00000000000000000000.log.cleaned"),
        b"half a segment",
    )
    .unwrap();
    std::fs::remove_file(pdir.join("00000000000000000000.index")).unwrap();
    std::fs::remove_file(pdir.join("00000000000000000000.timeindex")).unwrap();
    let log = open(dir.path());
    let p = part(&log, "c");
    assert!(!pdir.join("00000000000000000000.log.cleaned").exists());
    assert!(
        log.recovery_report()
            .iter()
            .any(|e| e.action == rill_log::RecoveryAction::LeftoverRemoved),
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(read_recs(&p), before);
    // And compaction goes on from there.
    put(&p, "k0", Some("after"), now());
    p.compact(now()).unwrap();
    assert!(
        read_recs(&p)
            .iter()
            .any(|r| r.value.as_deref() == Some(&b"after"[..]))
    );
}

#[test]
fn compact_alone_ignores_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let cfg = TopicConfig {
        retention_ms: Some(1),
        retention_bytes: Some(1),
        ..compacted(DAY as u64, 0)
    };
    log.create_topic("c", cfg.clone()).unwrap();
    log.create_topic(
        "cd",
        TopicConfig {
            cleanup_policy: CleanupPolicy::CompactDelete,
            ..cfg
        },
    )
    .unwrap();
    for t in ["c", "cd"] {
        let p = part(&log, t);
        for i in 0..20 {
            put(&p, &format!("k{i}"), Some(&"x".repeat(100)), 1000);
        }
        log.flush().unwrap();
    }
    let r = log.enforce_retention_at(now()).unwrap();
    assert_eq!(part(&log, "c").log_start_offset(), 0);
    assert!(part(&log, "cd").log_start_offset() > 0);
    assert!(r.segments_deleted > 0);
}

fn txn_batch(keys: &[(&str, &str)], pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let recs: Vec<Record<'_>> = keys
        .iter()
        .map(|(k, v)| Record {
            key: Some(k.as_bytes()),
            value: Some(v.as_bytes()),
            ..Record::default()
        })
        .collect();
    let mut b = encode(&recs, now());
    set_producer(
        &mut b,
        ProducerFields {
            producer_id: pid,
            epoch,
            base_sequence: seq,
            transactional: true,
        },
    );
    b
}

/// (key, value) of every record a read_committed consumer sees.
fn committed(p: &Partition) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut at = p.log_start_offset();
    let mut buf = Vec::new();
    while at < p.last_stable_offset() {
        let r = p.read_committed_into(at, 1 << 20, &mut buf).unwrap();
        let aborted = p.aborted_transactions(at, r.next_offset);
        for b in batches(&buf[..r.len]) {
            let b = b.unwrap();
            if b.is_control() || aborted.iter().any(|a| a.covers(&b)) {
                continue;
            }
            for r in b.records() {
                let r = r.unwrap();
                if r.offset >= at {
                    let s = |b: Option<&[u8]>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                    out.push((s(r.key), s(r.value)));
                }
            }
        }
        at = r.next_offset;
    }
    out
}

#[test]
fn committed_and_aborted_transactions_survive_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("c", compacted(DAY as u64, 0)).unwrap();
    let p = part(&log, "c");
    let parts = vec![("c".to_string(), 0)];
    let (pid, e) = log.init_producer_id(Some("tx"), 60_000, None).unwrap();
    let mut seq = 0;
    let big = "t".repeat(150);
    for round in 0..4 {
        log.add_partitions_to_txn("tx", pid, e, &parts).unwrap();
        let v = format!("{round}{big}");
        p.append_batch(&mut txn_batch(&[("a", &v), ("b", &v)], pid, e, seq))
            .unwrap();
        seq += 2;
        // Rounds 1 and 3 abort: their values must never become the "latest".
        log.end_txn("tx", pid, e, round % 2 == 0).unwrap();
    }
    // A plain record so the last marker is in a sealed segment too.
    for i in 0..6 {
        put(&p, &format!("z{i}"), Some(&big), now());
    }
    let before = committed(&p);
    let r = p.compact(now()).unwrap();
    assert!(r.records_removed > 0, "{r:?}");
    let after = committed(&p);
    let want: Vec<(String, String)> = [("a", "2"), ("b", "2")]
        .iter()
        .map(|(k, v)| (k.to_string(), format!("{v}{big}")))
        .chain(before.iter().filter(|(k, _)| k.starts_with('z')).cloned())
        .collect();
    assert_eq!(after, want);
    // The producer's sequence goes on where it was, after a reopen too.
    drop(p);
    drop(log);
    let log = open(dir.path());
    let p = part(&log, "c");
    log.add_partitions_to_txn("tx", pid, e, &parts).unwrap();
    p.append_batch(&mut txn_batch(&[("a", "next")], pid, e, seq))
        .unwrap();
    log.end_txn("tx", pid, e, true).unwrap();
    assert!(committed(&p).contains(&("a".into(), "next".into())));
}

#[test]
fn a_failed_rewrite_leaves_the_segment_whole_and_the_next_pass_succeeds() {
    use rill_log::LogOptions;
    use rill_log::io::FaultIo;
    for fault_kind in ["sync", "enospc"] {
        let dir = tempfile::tempdir().unwrap();
        let fault = FaultIo::new();
        let opts = LogOptions {
            io: Arc::new(fault.clone()),
            ..quiet_opts()
        };
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        log.create_topic("c", compacted(DAY as u64, 0)).unwrap();
        let p = part(&log, "c");
        let t = now();
        for round in 0..5 {
            for k in 0..8 {
                put(
                    &p,
                    &format!("k{k}"),
                    Some(&format!("{round}{}", "v".repeat(60))),
                    t,
                );
            }
        }
        log.flush().unwrap();
        let before = read_recs(&p);
        match fault_kind {
            "sync" => fault.fail_next_syncs(1),
            _ => fault.set_space_left(10),
        }
        assert!(
            p.compact(t).is_err(),
            "{fault_kind}: the pass reports the failure"
        );
        fault.set_space_left(u64::MAX);
        assert_eq!(
            read_recs(&p),
            before,
            "{fault_kind}: nothing changed for readers"
        );
        let r = p.compact(t + 1).unwrap();
        assert!(r.segments_rewritten > 0, "{fault_kind}: {r:?}");
        let after = read_recs(&p);
        assert!(after.len() < before.len());
        drop(p);
        drop(log);
        let log = Log::open(dir.path(), opts).unwrap();
        assert_eq!(read_recs(&part(&log, "c")), after, "{fault_kind}: reopened");
    }
}

#[test]
fn the_tombstone_clock_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let tomb = {
        let log = open(dir.path());
        log.create_topic("c", compacted(60_000, 0)).unwrap();
        let p = part(&log, "c");
        put(&p, "a", Some("1"), t);
        let tomb = put(&p, "a", None, t);
        for i in 0..8 {
            put(&p, &format!("z{i}"), Some(&"f".repeat(200)), t);
        }
        assert!(p.compact(t).unwrap().ran);
        assert!(read_recs(&p).contains(&tomb));
        tomb
    };
    let pdir = dir.path().join("topics").join("c").join("0");
    assert!(pdir.join("cleaner-first-seen").exists());
    let log = open(dir.path());
    let p = part(&log, "c");
    // The first pass after the reopen is at the horizon of the first pass before it.
    p.compact(t + 60_000).unwrap();
    assert!(!read_recs(&p).contains(&tomb), "the horizon kept its start");
}

#[test]
fn a_segment_larger_than_the_write_buffer_is_cleaned_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let cfg = TopicConfig {
        segment_bytes: 8 << 20,
        ..compacted(DAY as u64, 0)
    };
    log.create_topic("c", cfg).unwrap();
    let p = part(&log, "c");
    let value = "v".repeat(1000);
    let t = now();
    // About 9 MiB of distinct keys, every tenth key written twice: the first segment (8 MiB)
    // keeps most of its bytes, more than the cleaner buffers before writing.
    let mut appended = Vec::new();
    for i in 0..9000 {
        appended.push(put(&p, &format!("k{i}"), Some(&value), t));
        if i % 10 == 0 {
            appended.push(put(&p, &format!("k{i}"), Some("again"), t));
        }
    }
    assert!(p.segment_count() > 1);
    let r = p.compact(t).unwrap();
    assert!(r.bytes_after > 4 << 20 && r.records_removed > 0, "{r:?}");
    let got = read_recs(&p);
    let latest = latest(&appended);
    let want: Vec<Rec> = appended
        .iter()
        .filter(|a| latest[a.key.as_ref().unwrap()] == a.offset || a.offset >= r.cleaned_up_to)
        .cloned()
        .collect();
    assert_eq!(got, want);
    assert!(
        !dir.path()
            .join("topics/c/0/00000000000000000000.log.cleaned")
            .exists()
    );
}
