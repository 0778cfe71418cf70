//! The recovery checkpoint: what a restart reads, and what it does when the checkpoint is
//! missing, damaged or does not match the files.

use std::path::Path;
use std::sync::Arc;

use rill_log::{
    CheckpointStatus, FlushPolicy, Log, LogOptions, Partition, RecoveryAction, TopicConfig,
};

use crate::common::{partition0, quiet_opts, read_all, rec, segment_logs};

fn part(log: &Log, topic: &str, id: u32) -> Arc<Partition> {
    log.topic(topic).unwrap().partition(id).unwrap().clone()
}

fn append_n(p: &Partition, from: usize, n: usize) {
    for i in from..from + n {
        p.append(&[rec(
            format!("record {i:06} with a little padding").as_bytes()
        )])
        .unwrap();
    }
}

fn values(p: &Partition) -> Vec<String> {
    read_all(p, p.log_start_offset())
        .into_iter()
        .map(|r| String::from_utf8(r.2.unwrap()).unwrap())
        .collect()
}

fn expected(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("record {i:06} with a little padding"))
        .collect()
}

/// A log with one `never` partition: `before` records, a flush (checkpoint), then `after`
/// more records, then a crash. Returns the bytes appended after the checkpoint.
fn crashed_after_checkpoint(dir: &Path, before: usize, after: usize) -> u64 {
    let log = Log::open(dir, quiet_opts()).unwrap();
    let p = partition0(&log, "t", TopicConfig::default());
    append_n(&p, 0, before);
    log.flush().unwrap();
    let at_checkpoint = p.size_bytes();
    append_n(&p, before, after);
    let tail = p.size_bytes() - at_checkpoint;
    drop(p);
    log.simulate_crash();
    tail
}

#[test]
fn a_crash_scans_only_what_follows_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let tail = crashed_after_checkpoint(dir.path(), 2000, 150);
    assert!(tail > 0);
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let stats = log.recovery_stats();
    assert_eq!(stats.checkpoint, CheckpointStatus::Loaded);
    assert_eq!(stats.partitions, 1);
    assert_eq!(stats.partitions_from_checkpoint, 1);
    assert_eq!(stats.bytes_scanned, tail, "{stats:?}");
    // Checking the checkpoint's position walks at most one index interval of headers.
    assert!(stats.bytes_walked <= 4096 + 200, "{stats:?}");
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
    let p = part(&log, "t", 0);
    assert_eq!(values(&p), expected(2150));
    assert_eq!(p.append(&[rec(b"next")]).unwrap().base_offset, 2150);
}

#[test]
fn a_clean_close_leaves_nothing_to_scan() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        let cfg = TopicConfig {
            partitions: 3,
            segment_bytes: 64 * 1024,
            ..TopicConfig::default()
        };
        let t = log.create_topic("t", cfg).unwrap();
        for p in t.partitions() {
            append_n(p, 0, 3000);
        }
        log.close().unwrap();
    }
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let stats = log.recovery_stats();
    assert_eq!(stats.bytes_scanned, 0, "{stats:?}");
    assert_eq!(stats.partitions_from_checkpoint, 3);
    assert!(log.recovery_report().is_empty());
    for id in 0..3 {
        assert_eq!(values(&part(&log, "t", id)), expected(3000));
    }
}

#[test]
fn a_damaged_checkpoint_falls_back_to_a_full_scan_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    crashed_after_checkpoint(dir.path(), 500, 20);
    let cp = dir.path().join("recovery-point");
    let mut bytes = std::fs::read(&cp).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&cp, &bytes).unwrap();
    let total: u64 = segment_logs(dir.path(), "t", 0)
        .iter()
        .map(|l| std::fs::metadata(l).unwrap().len())
        .sum();
    {
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        let stats = log.recovery_stats().clone();
        assert!(
            matches!(stats.checkpoint, CheckpointStatus::Invalid(_)),
            "{stats:?}"
        );
        assert_eq!(stats.partitions_from_checkpoint, 0);
        assert_eq!(stats.bytes_scanned, total);
        assert_eq!(values(&part(&log, "t", 0)), expected(520));
        log.simulate_crash();
    }
    // Open replaced the damaged file with a valid one.
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert_eq!(log.recovery_stats().checkpoint, CheckpointStatus::Loaded);
    assert_eq!(values(&part(&log, "t", 0)), expected(520));
}

#[test]
fn a_missing_checkpoint_scans_every_unsealed_byte() {
    let dir = tempfile::tempdir().unwrap();
    crashed_after_checkpoint(dir.path(), 300, 30);
    std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let total = std::fs::metadata(&segment_logs(dir.path(), "t", 0)[0])
        .unwrap()
        .len();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert_eq!(log.recovery_stats().checkpoint, CheckpointStatus::Missing);
    assert_eq!(log.recovery_stats().bytes_scanned, total);
    assert_eq!(values(&part(&log, "t", 0)), expected(330));
}

/// The checkpoint says the segment holds whole batches up to a position; if the file no
/// longer agrees (here it was cut below that position), the checkpoint is ignored for the
/// partition and the segment is scanned from its start.
#[test]
fn a_checkpoint_that_does_not_match_the_files_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    crashed_after_checkpoint(dir.path(), 400, 0);
    let seg = &segment_logs(dir.path(), "t", 0)[0];
    let bytes = std::fs::read(seg).unwrap();
    let starts = crate::common::batch_starts(&bytes);
    // Keep 100 whole batches: the checkpoint's position (the end) is now past the file end.
    std::fs::write(seg, &bytes[..starts[100]]).unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert!(
        log.recovery_report()
            .iter()
            .any(|e| e.action == RecoveryAction::CheckpointIgnored),
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(log.recovery_stats().partitions_from_checkpoint, 0);
    assert_eq!(log.recovery_stats().bytes_scanned, starts[100] as u64);
    assert_eq!(values(&part(&log, "t", 0)), expected(100));
}

/// A checkpoint whose position no longer falls on a batch boundary (the file was replaced
/// by another of the same length) is not trusted.
#[test]
fn a_checkpoint_off_a_batch_boundary_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    crashed_after_checkpoint(dir.path(), 50, 0);
    let seg = &segment_logs(dir.path(), "t", 0)[0];
    let len = std::fs::metadata(seg).unwrap().len() as usize;
    // Build one batch of about half that size in another log, and pad it with zeros.
    let big = vec![7u8; len / 2];
    let fresh = tempfile::tempdir().unwrap();
    {
        let log = Log::open(fresh.path(), quiet_opts()).unwrap();
        let p = partition0(&log, "t", TopicConfig::default());
        p.append(&[rec(&big)]).unwrap();
        drop(p);
        log.close().unwrap();
    }
    let mut other = std::fs::read(&segment_logs(fresh.path(), "t", 0)[0]).unwrap();
    assert!(other.len() < len - 12);
    other.resize(len, 0);
    std::fs::write(seg, &other).unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert!(
        log.recovery_report()
            .iter()
            .any(|e| e.action == RecoveryAction::CheckpointIgnored),
        "{:?}",
        log.recovery_report()
    );
    // The scan keeps the one valid batch and cuts the zeros after it.
    let p = part(&log, "t", 0);
    assert_eq!(p.high_watermark(), 1);
    assert_eq!(read_all(&p, 0)[0].2.as_deref(), Some(&big[..]));
}

/// Under `never` nothing is fsynced by appends, so the flusher fsyncs in the background to
/// keep what a crash would make recovery scan within the budget.
#[test]
fn the_scan_budget_makes_the_flusher_advance_the_checkpoint_under_never() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || LogOptions {
        checkpoint_interval_ms: 3_600_000,
        recovery_scan_budget_bytes: 64 * 1024,
        ..LogOptions::default()
    };
    let total;
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        let p = partition0(&log, "t", TopicConfig::default());
        append_n(&p, 0, 10_000);
        total = p.size_bytes();
        assert!(total > 4 * 64 * 1024);
        // Wait (without a deadline on the outcome) until the flusher rewrote the checkpoint
        // past the budget: it samples every 100 ms.
        let cp = dir.path().join("recovery-point");
        let mut waited = 0;
        loop {
            let covered = std::fs::read(&cp)
                .ok()
                .and_then(|b| checkpoint_position(&b))
                .unwrap_or(0);
            if total - covered <= 64 * 1024 {
                break;
            }
            waited += 1;
            assert!(waited < 600, "the flusher never advanced the checkpoint");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        drop(p);
        log.simulate_crash();
    }
    let log = Log::open(dir.path(), opts()).unwrap();
    assert!(
        log.recovery_stats().bytes_scanned <= 64 * 1024,
        "{:?}",
        log.recovery_stats()
    );
    assert_eq!(values(&part(&log, "t", 0)), expected(10_000));
}

/// The byte position of the single entry of a checkpoint file (layout in
/// docs/log-format.md): header 12 bytes, then topic length, topic, partition, base, pos.
fn checkpoint_position(b: &[u8]) -> Option<u64> {
    let tlen = u16::from_be_bytes([*b.get(12)?, *b.get(13)?]) as usize;
    let at = 14 + tlen + 4 + 8;
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[test]
fn a_deleted_topic_leaves_no_points_behind() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let p = partition0(&log, "doomed-topic", TopicConfig::default());
    append_n(&p, 0, 100);
    drop(p);
    log.flush().unwrap();
    let cp = dir.path().join("recovery-point");
    let has = |needle: &[u8]| {
        std::fs::read(&cp)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    };
    assert!(has(b"doomed-topic"));
    log.delete_topic("doomed-topic").unwrap();
    assert!(!has(b"doomed-topic"));
    // A topic created again under the name starts without a checkpoint point, and recovers
    // its own data.
    let p = partition0(&log, "doomed-topic", TopicConfig::default());
    append_n(&p, 0, 10);
    drop(p);
    log.simulate_crash();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert!(log.recovery_report().is_empty());
    assert_eq!(values(&part(&log, "doomed-topic", 0)), expected(10));
}

#[test]
fn partitions_of_many_topics_recover_together() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        for t in ["a", "b", "c"] {
            let cfg = TopicConfig {
                partitions: 4,
                flush: FlushPolicy::IntervalMs(5),
                segment_bytes: 16 * 1024,
                ..TopicConfig::default()
            };
            for p in log.create_topic(t, cfg).unwrap().partitions() {
                append_n(p, 0, 700);
            }
        }
        log.simulate_crash();
    }
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert_eq!(log.recovery_stats().partitions, 12);
    assert!(
        log.recovery_report()
            .iter()
            .all(|e| e.action == RecoveryAction::IndexRebuilt),
        "{:?}",
        log.recovery_report()
    );
    for t in ["a", "b", "c"] {
        for id in 0..4 {
            assert_eq!(values(&part(&log, t, id)), expected(700), "{t}/{id}");
        }
    }
}

/// Under `always`, the checkpoint follows the group commit: after the interval, a crash
/// rescans nothing that was acknowledged before the last checkpoint write.
#[test]
fn under_always_a_close_after_acknowledged_appends_scans_nothing_that_was_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        let cfg = TopicConfig {
            flush: FlushPolicy::Always,
            segment_bytes: 8 * 1024,
            ..TopicConfig::default()
        };
        let p = partition0(&log, "t", cfg);
        append_n(&p, 0, 300);
        // No flush needed for durability; the checkpoint write is what `flush` adds.
        log.flush().unwrap();
        append_n(&p, 300, 5);
        drop(p);
        log.simulate_crash();
    }
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let stats = log.recovery_stats();
    assert_eq!(stats.partitions_from_checkpoint, 1);
    assert!(
        stats.bytes_scanned > 0 && stats.bytes_scanned < 8 * 1024,
        "{stats:?}"
    );
    assert_eq!(values(&part(&log, "t", 0)), expected(305));
}

/// A topic directory left by a creation that did not finish (no `topic.toml`) may still
/// have points in the checkpoint; creating the topic again drops them first.
#[test]
fn recreating_over_a_leftover_directory_drops_its_points() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        let p = partition0(&log, "left-over", TopicConfig::default());
        append_n(&p, 0, 300);
        log.flush().unwrap();
        drop(p);
        log.simulate_crash();
    }
    std::fs::remove_file(dir.path().join("topics/left-over/topic.toml")).unwrap();
    let cp = dir.path().join("recovery-point");
    let has = || {
        std::fs::read(&cp)
            .unwrap()
            .windows(9)
            .any(|w| w == b"left-over")
    };
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert!(log.topic("left-over").is_none());
    assert!(has());
    let p = partition0(&log, "left-over", TopicConfig::default());
    assert!(!has());
    append_n(&p, 0, 3);
    drop(p);
    log.simulate_crash();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(values(&part(&log, "left-over", 0)), expected(3));
}
