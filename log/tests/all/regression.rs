//! Regression tests, one or more per finding of the storage review (`review_<n>_…`).

use std::sync::Arc;

use rill_log::io::FaultIo;
use rill_log::{
    AppendError, BatchBuilder, BatchError, FlushPolicy, Log, LogOptions, Partition, ReadError,
    Record, RecoveryAction, StorageError, TopicConfig,
};

use crate::common::{base_of, batch_starts, partition0, quiet_opts, read_all, rec, segment_logs};

fn part(log: &Log, topic: &str) -> Arc<Partition> {
    log.topic(topic).unwrap().partition(0).unwrap().clone()
}

fn fill(p: &Partition, n: usize) {
    for i in 0..n {
        p.append(&[rec(
            format!("record {i:05} padded to a reasonable length").as_bytes()
        )])
        .unwrap();
    }
}

/// An `always` topic of several sealed segments, closed after a crash-like stop (the
/// checkpoint written by `flush` is at the end of the log). Returns the data dir.
fn always_segments(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let cfg = TopicConfig {
        flush: FlushPolicy::Always,
        segment_bytes: 2048,
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    fill(&p, n);
    assert!(p.segment_count() >= 4);
    log.flush().unwrap();
    drop(p);
    log.simulate_crash();
    dir
}

/// Flips one byte inside the value of batch `batch` of `seg` (not its header), so only its
/// CRC fails.
fn flip_payload(seg: &std::path::Path, batch: usize) {
    let mut bytes = std::fs::read(seg).unwrap();
    let starts = batch_starts(&bytes);
    bytes[starts[batch + 1] - 3] ^= 0x20;
    std::fs::write(seg, &bytes).unwrap();
}

/// Review 1: a middle segment whose time index was lost looked unsealed, and one bad byte
/// in it made recovery delete every later segment, acknowledged `always` data included.
#[test]
fn review_1_lost_time_index_and_a_bad_byte_never_delete_later_segments() {
    for keep_checkpoint in [true, false] {
        let dir = always_segments(200);
        let logs = segment_logs(dir.path(), "t", 0);
        let second = &logs[1];
        std::fs::remove_file(second.with_extension("timeindex")).unwrap();
        flip_payload(second, 2);
        if !keep_checkpoint {
            std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
        }
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        let p = part(&log, "t");
        assert_eq!(
            p.segment_count(),
            logs.len(),
            "checkpoint {keep_checkpoint}"
        );
        assert_eq!(p.high_watermark(), 200);
        assert!(
            log.recovery_report()
                .iter()
                .all(|e| !matches!(e.action, RecoveryAction::Truncated { .. })),
            "{:?}",
            log.recovery_report()
        );
        if !keep_checkpoint {
            // Scanned, found bad, and reported rather than cut.
            assert!(
                log.recovery_report()
                    .iter()
                    .any(|e| e.action == RecoveryAction::Reported && &e.segment == second),
                "{:?}",
                log.recovery_report()
            );
        }
        // The damaged batch is never served; everything after it is.
        let bad = base_of(second) + 2;
        assert!(
            matches!(p.read(bad, 1), Err(ReadError::Corrupt { ref path, .. }) if path == second)
        );
        let third = base_of(&logs[2]);
        assert_eq!(read_all(&p, third).len() as i64, 200 - third);
        assert_eq!(p.append(&[rec(b"next")]).unwrap().base_offset, 200);
    }
}

/// Review 1: a batch whose maxTimestamp is i64::MIN used to equal the "unknown" sentinel, so
/// sealing skipped the final time-index entry and the segment looked unsealed forever.
#[test]
fn review_1_a_segment_of_i64_min_timestamps_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        let cfg = TopicConfig {
            flush: FlushPolicy::Always,
            segment_bytes: 1024,
            ..TopicConfig::default()
        };
        let p = partition0(&log, "t", cfg);
        for _ in 0..40 {
            let mut b = BatchBuilder::new();
            b.push(
                &Record {
                    value: Some(&[1; 40]),
                    timestamp_ms: Some(i64::MIN),
                    ..Record::default()
                },
                0,
            );
            let mut bytes = b.finish();
            p.append_batch(&mut bytes).unwrap();
        }
        assert!(p.segment_count() >= 2);
        drop(p);
        log.simulate_crash();
    }
    std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let logs = segment_logs(dir.path(), "t", 0);
    let active = std::fs::metadata(logs.last().unwrap()).unwrap().len();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    // Only the active segment is read: every rolled one carries its seal entry.
    assert_eq!(log.recovery_stats().bytes_scanned, active);
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
}

/// Review 2: a failed seal fsync was queued again and retried; on Linux the retry
/// "succeeds" after the dirty pages were dropped, and the segment was then trusted.
#[test]
fn review_2_a_failed_seal_fails_the_partition_and_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultIo::new();
    let opts = || LogOptions {
        io: Arc::new(fault.clone()),
        ..quiet_opts()
    };
    let mut appended = 5;
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        let cfg = TopicConfig {
            segment_bytes: 1024,
            ..TopicConfig::default()
        };
        let p = partition0(&log, "t", cfg);
        fill(&p, appended);
        assert_eq!(p.segment_count(), 1);
        // The next fsync fails: that is the seal of the segment the next appends roll,
        // whether the flusher or `flush` gets to it first. Append until the roll and no
        // further: the flusher may fail the partition at once.
        fault.fail_next_syncs(1);
        while p.segment_count() < 2 {
            p.append(&[rec(format!("record {appended:05} padded").as_bytes())])
                .unwrap();
            appended += 1;
        }
        let flushed = log.flush();
        assert!(p.is_failed(), "{flushed:?}");
        assert!(matches!(
            p.append(&[rec(b"refused")]),
            Err(AppendError::Failed)
        ));
        // Not retried: flush and close keep reporting the failure.
        assert!(matches!(
            log.flush(),
            Err(StorageError::PartitionFailed { .. })
        ));
        assert!(matches!(
            log.close(),
            Err(StorageError::PartitionFailed { .. })
        ));
    }
    // The unsealed segment is validated on open, not trusted, and nothing is lost (the
    // process did not crash, the page cache has it all).
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert!(log.recovery_stats().bytes_scanned > 0);
    assert!(
        log.recovery_report()
            .iter()
            .any(|e| e.action == RecoveryAction::IndexRebuilt && e.reason.contains("not sealed")),
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(read_all(&part(&log, "t"), 0).len(), appended);
}

/// Review 3: closing a failed log wrote the clean-shutdown marker, so the next open trusted
/// a tail whose fsync had failed. Now the checkpoint stays at the last successful fsync.
#[test]
fn review_3_closing_a_failed_partition_leaves_its_tail_to_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultIo::new();
    let opts = LogOptions {
        io: Arc::new(fault.clone()),
        ..quiet_opts()
    };
    let acked;
    {
        let log = Log::open(dir.path(), opts).unwrap();
        let cfg = TopicConfig {
            flush: FlushPolicy::Always,
            ..TopicConfig::default()
        };
        let p = partition0(&log, "t", cfg);
        fill(&p, 5);
        acked = p.size_bytes();
        fault.fail_next_syncs(1);
        assert!(matches!(
            p.append(&[rec(b"not acknowledged")]),
            Err(AppendError::Io(_))
        ));
        assert!(matches!(
            log.close(),
            Err(StorageError::PartitionFailed { .. })
        ));
    }
    let seg = &segment_logs(dir.path(), "t", 0)[0];
    let len = std::fs::metadata(seg).unwrap().len();
    assert!(len > acked);
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert_eq!(log.recovery_stats().bytes_scanned, len - acked);
    assert_eq!(log.recovery_stats().partitions_from_checkpoint, 1);
}

/// Review 3: an offset below the high watermark that a segment no longer holds read as an
/// empty result with `next_offset == from`, so a consumer polled it forever.
#[test]
fn review_3_a_hole_reads_as_corrupt_naming_file_and_position() {
    let dir = always_segments(120);
    let logs = segment_logs(dir.path(), "t", 0);
    let first = &logs[0];
    let bytes = std::fs::read(first).unwrap();
    let starts = batch_starts(&bytes);
    // Drop the last batch of the (sealed, trusted) first segment.
    let cut = starts[starts.len() - 2];
    std::fs::write(first, &bytes[..cut]).unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let p = part(&log, "t");
    let missing = base_of(&logs[1]) - 1;
    match p.read(missing, 1 << 20) {
        Err(ReadError::Corrupt { path, position, .. }) => {
            assert_eq!(&path, first);
            assert_eq!(position, cut as u64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Offsets before the hole still read.
    let r = p.read(0, 1).unwrap();
    assert_eq!(
        rill_log::batches(&r.bytes)
            .next()
            .unwrap()
            .unwrap()
            .base_offset(),
        0
    );
}

/// Review 4: a failed index trim left entries without a mapping, and the next lookup
/// panicked.
#[test]
fn review_4_a_failed_index_trim_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultIo::new();
    let opts = LogOptions {
        io: Arc::new(fault.clone()),
        index_interval_bytes: 128,
        ..quiet_opts()
    };
    let log = Log::open(dir.path(), opts).unwrap();
    let cfg = TopicConfig {
        flush: FlushPolicy::Always,
        segment_bytes: 4096,
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    let mut n = 0;
    while p.size_bytes() + 100 < 4096 {
        p.append(&[Record {
            value: Some(&[9; 40]),
            timestamp_ms: Some(n),
            ..Record::default()
        }])
        .unwrap();
        n += 1;
    }
    // The append that rolls seals the segment inline; its offset-index trim fails.
    fault.fail_next_set_lens(1);
    let r = p.append(&[rec(&[1; 200])]);
    assert!(matches!(r, Err(AppendError::Io(_))), "{r:?}");
    assert!(p.is_failed());
    // Lookups through the index still work.
    for o in (0..n).step_by(7) {
        assert_eq!(read_all(&p, o)[0].0, o);
    }
    assert_eq!(p.offset_for_timestamp(n / 2).unwrap(), Some(n / 2));
}

/// Review 5: new partition directories and first segment files were never fsynced in
/// their parent directories.
#[test]
fn review_5_new_partitions_and_segments_are_fsynced_in_their_directories() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultIo::new();
    let opts = LogOptions {
        io: Arc::new(fault.clone()),
        ..quiet_opts()
    };
    let log = Log::open(dir.path(), opts).unwrap();
    let cfg = TopicConfig {
        partitions: 2,
        flush: FlushPolicy::Always,
        segment_bytes: 1024,
        ..TopicConfig::default()
    };
    let t = log.create_topic("t", cfg).unwrap();
    let tdir = dir.path().join("topics/t");
    let p0 = tdir.join("0");
    assert!(
        fault.synced_dirs().contains(&tdir),
        "{:?}",
        fault.synced_dirs()
    );
    assert!(!fault.synced_dirs().contains(&p0));
    // The first fsync of a partition makes its directory (and first segment) durable first.
    t.partition(0).unwrap().append(&[rec(b"a")]).unwrap();
    let syncs = fault.synced_dirs();
    assert!(syncs.contains(&p0), "{syncs:?}");
    // Each roll creates a segment and syncs the directory again.
    let before = syncs.iter().filter(|d| **d == p0).count();
    fill(t.partition(0).unwrap(), 40);
    let after = fault.synced_dirs().iter().filter(|d| **d == p0).count();
    assert!(after > before);
}

/// Review 6: retention cloned the segment list, dropped the lock and drained a prefix
/// later, unchecked, so concurrent passes deleted more than either decided.
#[test]
fn review_6_concurrent_retention_is_safe() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let limit = 8 * 1024;
    let cfg = TopicConfig {
        flush: FlushPolicy::Always,
        segment_bytes: 1024,
        retention_bytes: Some(limit),
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    fill(&p, 600);
    let deleted = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    let r = log.enforce_retention_at(0).unwrap();
                    deleted.fetch_add(r.segments_deleted, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    // No pass deleted what another did, or below the limit.
    assert!(p.size_bytes() >= limit);
    let files = segment_logs(dir.path(), "t", 0);
    assert_eq!(files.len(), p.segment_count());
    assert_eq!(base_of(&files[0]), p.log_start_offset());
    let total_segments = deleted.into_inner() + p.segment_count();
    assert_eq!(total_segments as i64, {
        // Every segment ever created: count rolls by re-creating the same log elsewhere.
        let d2 = tempfile::tempdir().unwrap();
        let l2 = Log::open(d2.path(), quiet_opts()).unwrap();
        let p2 = partition0(
            &l2,
            "t",
            TopicConfig {
                flush: FlushPolicy::Always,
                segment_bytes: 1024,
                ..TopicConfig::default()
            },
        );
        fill(&p2, 600);
        p2.segment_count() as i64
    });
    let start = p.log_start_offset();
    assert_eq!(read_all(&p, start).len() as i64, 600 - start);
}

/// Review 8: producer batches were trusted for recordsCount (compressed), maxTimestamp and
/// record offset deltas.
#[test]
fn review_8_producer_batches_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let p = partition0(&log, "t", TopicConfig::default());
    // A 61-byte "gzip" batch claiming 2^31 - 1 records.
    let mut tiny = compressed_batch(0, i32::MAX);
    assert!(matches!(
        p.append_batch(&mut tiny),
        Err(AppendError::InvalidBatch(BatchError::TooManyRecords { .. }))
    ));
    // Record offset deltas must run 0, 1, 2, ...
    let mut b = BatchBuilder::new();
    b.push_all(&[rec(b"a"), rec(b"b")], 5);
    let mut two = b.finish();
    let good = two.clone();
    // The second record's offsetDelta byte: record 1 starts after record 0.
    let r0_len = two[61] as usize / 2; // zigzag varint of a small length
    let delta_at = 61 + 1 + r0_len + 1 + 1 + 1;
    assert_eq!(two[delta_at], 2, "zigzag(1)");
    two[delta_at] = 4; // zigzag(2)
    refresh_crc(&mut two);
    assert!(matches!(
        p.append_batch(&mut two),
        Err(AppendError::InvalidBatch(BatchError::BadRecord(_)))
    ));
    let mut ok = good;
    assert_eq!(p.append_batch(&mut ok).unwrap().last_offset, 1);
}

/// Issue 11: a batch whose maxTimestamp is not its records' largest timestamp (a Go producer
/// writes -1 there) was refused as CORRUPT_MESSAGE. As Kafka's LogValidator does, it is
/// stored with the computed maxTimestamp and a fresh CRC, so the time index and ListOffsets
/// by timestamp see the real times.
#[test]
fn issue11_a_wrong_max_timestamp_is_recomputed_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let p = partition0(&log, "t", TopicConfig::default());
    let at = |ts: i64, v: &'static [u8]| Record {
        value: Some(v),
        timestamp_ms: Some(ts),
        ..Record::default()
    };
    for (first, claimed) in [(1_000, -1i64), (5_000, 999_999)] {
        let mut b = BatchBuilder::new();
        b.push_all(
            &[at(first, b"a"), at(first + 40, b"b"), at(first + 20, b"c")],
            0,
        );
        let mut batch = b.finish();
        batch[35..43].copy_from_slice(&claimed.to_be_bytes());
        refresh_crc(&mut batch);
        p.append_batch(&mut batch).unwrap();
    }
    let bytes = p.read(0, 1 << 20).unwrap().bytes;
    let stored: Vec<(i64, i64)> = rill_log::batches(&bytes)
        .map(|b| {
            let b = b.unwrap();
            assert!(b.crc_ok());
            (b.first_timestamp(), b.max_timestamp())
        })
        .collect();
    assert_eq!(stored, [(1_000, 1_040), (5_000, 5_040)]);
    // The first record at or after the target, exactly, with its own timestamp (issue 11,
    // ListOffsets): 1_030 is the second record of the first batch.
    assert_eq!(p.find_timestamp(1_030).unwrap(), Some((1, 1_040)));
    assert_eq!(p.find_timestamp(1_041).unwrap(), Some((3, 5_000)));
    assert_eq!(p.find_timestamp(5_041).unwrap(), None);
    drop(p);
    drop(log);
    // The time index rebuilt from the stored batches agrees.
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let p = log.topic("t").unwrap().partition(0).unwrap().clone();
    assert_eq!(p.find_timestamp(1_030).unwrap(), Some((1, 1_040)));
}

/// Review 8: huge (plausible) record counts roll the segment instead of pushing relative
/// offsets past u32.
#[test]
fn review_8_relative_offsets_never_overflow_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    // Each batch is 2 MiB (1 byte per 1024 claimed records): above Kafka's default
    // max.message.bytes, so the topic allows more.
    let cfg = TopicConfig {
        max_message_bytes: 4 << 20,
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    let count = i32::MAX;
    let data = (i64::from(count) / 1024 + 1) as usize;
    let mut offsets = Vec::new();
    for _ in 0..3 {
        let mut b = compressed_batch(data, count);
        offsets.push(p.append_batch(&mut b).unwrap().base_offset);
    }
    let n = i64::from(count);
    assert_eq!(offsets, [0, n, 2 * n]);
    // Two batches fit in 2^32 - 1 relative offsets, the third rolled.
    assert_eq!(p.segment_count(), 2);
    assert_eq!(base_of(&segment_logs(dir.path(), "t", 0)[1]), 2 * n);
    for o in [0, n - 1, n, 2 * n + 5] {
        let r = p.read(o, 1).unwrap();
        let b = rill_log::batches(&r.bytes).next().unwrap().unwrap();
        assert!(b.base_offset() <= o && o <= b.last_offset());
    }
    drop(p);
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert!(log.recovery_report().is_empty());
    assert_eq!(part(&log, "t").high_watermark(), 3 * n);
}

/// A v2 batch with the gzip codec bit, `data` arbitrary payload bytes (never decompressed)
/// and a claimed record count.
fn compressed_batch(data: usize, count: i32) -> Vec<u8> {
    let mut b = vec![0u8; 61 + data];
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&1i16.to_be_bytes()); // gzip
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[27..35].copy_from_slice(&1000i64.to_be_bytes());
    b[35..43].copy_from_slice(&1000i64.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    for (i, x) in b[61..].iter_mut().enumerate() {
        *x = (i * 31) as u8;
    }
    refresh_crc(&mut b);
    b
}

fn refresh_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Review 9: `offset_for_timestamp` swallowed read errors and skipped to later segments,
/// returning a wrong offset.
#[test]
fn review_9_offset_for_timestamp_reports_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        let cfg = TopicConfig {
            segment_bytes: 2048,
            ..TopicConfig::default()
        };
        let p = partition0(&log, "t", cfg);
        for i in 0..100 {
            p.append(&[Record {
                value: Some(&[3; 30]),
                timestamp_ms: Some(i * 10),
                ..Record::default()
            }])
            .unwrap();
        }
        drop(p);
        log.close().unwrap();
    }
    let first = &segment_logs(dir.path(), "t", 0)[0];
    let mut bytes = std::fs::read(first).unwrap();
    let starts = batch_starts(&bytes);
    bytes[starts[3] + 16] = 7; // the magic byte of batch 3
    std::fs::write(first, &bytes).unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    let p = part(&log, "t");
    assert_eq!(p.offset_for_timestamp(15).unwrap(), Some(2));
    match p.offset_for_timestamp(45) {
        Err(ReadError::Corrupt { path, position, .. }) => {
            assert_eq!(&path, first);
            assert_eq!(position, starts[3] as u64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Review 10: the age of the active segment restarted at every open, so a process
/// restarted more often than `segment_ms` never rolled by age.
#[test]
fn review_10_roll_by_age_survives_a_restart() {
    let day = 24 * 3600 * 1000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (age, rolls) in [(2 * day, true), (0, false)] {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Log::open(dir.path(), quiet_opts()).unwrap();
            let cfg = TopicConfig {
                segment_ms: day as u64,
                ..TopicConfig::default()
            };
            let p = partition0(&log, "t", cfg);
            p.append(&[Record {
                value: Some(b"old"),
                timestamp_ms: Some(now - age),
                ..Record::default()
            }])
            .unwrap();
            // Within the process the segment is as old as its creation: no roll.
            p.append(&[rec(b"same process")]).unwrap();
            assert_eq!(p.segment_count(), 1);
            drop(p);
            log.close().unwrap();
        }
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        let p = part(&log, "t");
        p.append(&[rec(b"after restart")]).unwrap();
        assert_eq!(p.segment_count(), if rolls { 2 } else { 1 }, "age {age}");
    }
}

/// Index entries are kept across restarts (below the checkpoint too) and carry no checksum:
/// an entry that points into the middle of a batch must not fail reads or time lookups.
#[test]
fn a_wrong_index_entry_never_fails_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || LogOptions {
        index_interval_bytes: 256,
        ..quiet_opts()
    };
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        let p = partition0(&log, "t", TopicConfig::default());
        for i in 0..200 {
            p.append(&[Record {
                value: Some(&[5; 60]),
                timestamp_ms: Some(i * 10),
                ..Record::default()
            }])
            .unwrap();
        }
        drop(p);
        log.close().unwrap();
    }
    let seg = &segment_logs(dir.path(), "t", 0)[0];
    let index = seg.with_extension("index");
    let mut ix = std::fs::read(&index).unwrap();
    assert!(ix.len() >= 8 * 10);
    // Entry 5: keep its relative offset, move its position 3 bytes further (still increasing).
    let pos = u32::from_be_bytes(ix[44..48].try_into().unwrap());
    ix[44..48].copy_from_slice(&(pos + 3).to_be_bytes());
    std::fs::write(&index, &ix).unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let p = part(&log, "t");
    let rows = read_all(&p, 0);
    assert_eq!(rows.len(), 200);
    for o in 0..200 {
        let r = p.read(o, 1).unwrap();
        let b = rill_log::batches(&r.bytes).next().unwrap().unwrap();
        assert_eq!(b.base_offset(), o);
    }
    for o in [0, 37, 99, 150, 199] {
        assert_eq!(p.offset_for_timestamp(o * 10).unwrap(), Some(o));
    }
}

/// A damaged middle segment that recovery kept (reported, unsealed) must not stop retention
/// from ever deleting past it.
#[test]
fn a_damaged_segment_kept_by_recovery_does_not_block_retention() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TopicConfig {
        flush: FlushPolicy::Always,
        segment_bytes: 2048,
        retention_bytes: Some(4096),
        ..TopicConfig::default()
    };
    {
        let log = Log::open(dir.path(), quiet_opts()).unwrap();
        let p = partition0(&log, "t", cfg);
        fill(&p, 200);
        drop(p);
        log.simulate_crash();
    }
    let logs = segment_logs(dir.path(), "t", 0);
    std::fs::remove_file(logs[1].with_extension("timeindex")).unwrap();
    flip_payload(&logs[1], 1);
    std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let log = Log::open(dir.path(), quiet_opts()).unwrap();
    assert!(
        log.recovery_report()
            .iter()
            .any(|e| e.action == RecoveryAction::Reported),
        "{:?}",
        log.recovery_report()
    );
    let rep = log.enforce_retention_at(0).unwrap();
    let p = part(&log, "t");
    assert!(rep.segments_deleted >= logs.len() - 3, "{rep:?}");
    assert!(p.log_start_offset() > base_of(&logs[1]));
    assert!(!logs[1].exists());
    assert_eq!(
        read_all(&p, p.log_start_offset()).len() as i64,
        200 - p.log_start_offset()
    );
}
