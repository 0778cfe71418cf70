//! Crash consistency: torn and scribbled tails, corrupt sealed segments, injected I/O faults.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rill_log::io::FaultIo;
use rill_log::{AppendError, FlushPolicy, Log, LogOptions, ReadError, RecoveryAction, TopicConfig};

use crate::common::{Row, open, partition0, read_all, rec, segment_logs};

type Rows = Vec<Row>;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else if e.file_name() != ".lock" {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

fn active_segment(data: &Path) -> PathBuf {
    segment_logs(data, "t", 0).pop().unwrap()
}

/// Writes `batches` acknowledged batches under `always`, then crashes. Returns the data dir,
/// the expected rows, and the byte range of the last batch in the active segment.
fn acked_log(batches: usize) -> (tempfile::TempDir, Rows, std::ops::Range<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let cfg = TopicConfig {
        flush: FlushPolicy::Always,
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    let mut rows = Vec::new();
    let mut last_start = 0;
    for i in 0..batches {
        last_start = p.size_bytes();
        let k = format!("k{i}");
        let v = format!("value-{i}");
        let info = p.append(&[rec(v.as_bytes()), rec(k.as_bytes())]).unwrap();
        rows.push((info.base_offset, None, Some(v.into_bytes())));
        rows.push((info.last_offset, None, Some(k.into_bytes())));
    }
    let end = p.size_bytes();
    drop(p);
    log.simulate_crash();
    (dir, rows, last_start..end)
}

fn reopen_and_check(data: &Path, expect: &[Row]) -> Log {
    let log = open(data);
    let p = log.topic("t").unwrap().partition(0).unwrap().clone();
    assert_eq!(p.high_watermark(), expect.len() as i64);
    assert_eq!(read_all(&p, 0), expect);
    // The log accepts appends again, right after the surviving records.
    assert_eq!(
        p.append(&[rec(b"after")]).unwrap().base_offset,
        expect.len() as i64
    );
    log
}

#[test]
fn cut_at_every_byte_of_the_last_batch() {
    let (dir, rows, last) = acked_log(5);
    let seg = active_segment(dir.path());
    for cut in last.start..=last.end {
        let work = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), work.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(active_segment(work.path()))
            .unwrap();
        f.set_len(cut).unwrap();
        let expect = if cut == last.end {
            &rows[..]
        } else {
            &rows[..rows.len() - 2]
        };
        let log = reopen_and_check(work.path(), expect);
        let truncated = log
            .recovery_report()
            .iter()
            .any(|e| matches!(e.action, RecoveryAction::Truncated { .. }));
        assert_eq!(
            truncated,
            cut > last.start && cut < last.end,
            "cut at {cut}"
        );
        assert!(seg.exists());
    }
}

#[test]
fn garbage_over_the_last_batch_or_after_it() {
    let (dir, rows, last) = acked_log(4);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for at in last.start..last.end {
        let work = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), work.path());
        let path = active_segment(work.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let len = (rand() % 16 + 1) as usize;
        // partitionLeaderEpoch (bytes 12..16) is covered by no check, in Kafka either.
        if at >= last.start + 12 && at + len as u64 <= last.start + 16 {
            continue;
        }
        for b in bytes.iter_mut().skip(at as usize).take(len) {
            *b ^= (rand() % 255 + 1) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        let log = reopen_and_check(work.path(), &rows[..rows.len() - 2]);
        let e = &log.recovery_report()[0];
        assert_eq!(e.position, last.start, "garbage at {at}: {e}");
    }
    // Garbage (or preallocated zeros) after the last batch is cut off too.
    for tail in [vec![0u8; 100], (0..300).map(|_| rand() as u8).collect()] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), work.path());
        let path = active_segment(work.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        let log = reopen_and_check(work.path(), &rows);
        assert_eq!(log.recovery_report()[0].position, last.end);
    }
}

#[test]
fn corrupt_sealed_segment_is_reported_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TopicConfig {
        segment_bytes: 2048,
        ..TopicConfig::default()
    };
    {
        let log = open(dir.path());
        let p = partition0(&log, "t", cfg);
        for i in 0..100 {
            p.append(&[rec(
                format!("record number {i:04} padded to some length").as_bytes()
            )])
            .unwrap();
        }
        assert!(p.segment_count() > 2);
        log.close().unwrap();
    }
    let first = dir.path().join("topics/t/0/00000000000000000000.log");
    let mut bytes = std::fs::read(&first).unwrap();
    // Damage the last byte of batch 2 (a CRC mismatch) and the base offset of batch 5.
    let mut starts = vec![0usize];
    for b in rill_log::batches(&bytes) {
        starts.push(starts.last().unwrap() + b.unwrap().as_bytes().len());
    }
    bytes[starts[2] - 1] ^= 0x55;
    bytes[starts[4] + 7] ^= 0x01;
    std::fs::write(&first, &bytes).unwrap();
    let log = open(dir.path());
    let p = log.topic("t").unwrap().partition(0).unwrap().clone();
    let mut corrupt = Vec::new();
    for o in 0..p.high_watermark() {
        match p.read(o, 1) {
            Ok(r) => {
                for b in rill_log::batches(&r.bytes) {
                    let b = b.unwrap();
                    assert!(b.crc_ok());
                    assert!(b.base_offset() <= o && o <= b.last_offset());
                }
            }
            Err(ReadError::Corrupt { path, position, .. }) => {
                assert_eq!(path, first);
                corrupt.push((o, position));
            }
            Err(e) => panic!("{e}"),
        }
    }
    // Offset 1 (bad CRC) and everything at or after offset 4 in the segment (its header lies).
    assert_eq!(corrupt[0], (1, starts[1] as u64));
    assert!(
        corrupt
            .iter()
            .any(|&(o, pos)| o == 4 && pos == starts[4] as u64),
        "{corrupt:?}"
    );
    assert!(p.read(0, 1).is_ok() && p.read(2, 1).is_ok());
    // A large read serves the good batch before the damaged one and stops there.
    let r = p.read(0, 1 << 20).unwrap();
    assert_eq!(r.next_offset, 1);
    assert_eq!(rill_log::batches(&r.bytes).count(), 1);
}

#[test]
fn fsync_failure_fails_the_append_and_recovers_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultIo::new();
    let opts = LogOptions {
        io: Arc::new(fault.clone()),
        ..LogOptions::default()
    };
    let log = Log::open(dir.path(), opts).unwrap();
    let cfg = TopicConfig {
        flush: FlushPolicy::Always,
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    p.append(&[rec(b"acked")]).unwrap();
    fault.fail_next_syncs(1);
    assert!(matches!(
        p.append(&[rec(b"lost?")]),
        Err(AppendError::Io(_))
    ));
    // Never made visible, and the partition refuses writes until reopened.
    assert_eq!(p.high_watermark(), 1);
    assert!(matches!(
        p.append(&[rec(b"refused")]),
        Err(AppendError::Failed)
    ));
    drop(p);
    log.simulate_crash();
    let log = open(dir.path());
    let p = log.topic("t").unwrap().partition(0).unwrap().clone();
    let rows = read_all(&p, 0);
    assert_eq!(rows[0].2.as_deref(), Some(&b"acked"[..]));
    // The unacknowledged record may or may not have survived, but nothing else did.
    assert!(rows.len() <= 2);
    p.append(&[rec(b"again")]).unwrap();
}

#[test]
fn short_writes_and_enospc_leave_the_partition_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultIo::new();
    let opts = LogOptions {
        io: Arc::new(fault.clone()),
        ..LogOptions::default()
    };
    let log = Log::open(dir.path(), opts).unwrap();
    let p = partition0(&log, "t", TopicConfig::default());
    fault.set_short_writes(true);
    p.append(&[rec(&[1u8; 1000])]).unwrap();
    fault.set_short_writes(false);
    fault.set_space_left(100);
    assert!(matches!(
        p.append(&[rec(&[2u8; 1000])]),
        Err(AppendError::Io(_))
    ));
    fault.set_space_left(u64::MAX);
    p.append(&[rec(&[3u8; 10])]).unwrap();
    let rows = read_all(&p, 0);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].0, 1);
    drop(p);
    log.simulate_crash();
    let log = open(dir.path());
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(
        read_all(log.topic("t").unwrap().partition(0).unwrap(), 0).len(),
        2
    );
}

#[test]
fn missing_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || LogOptions {
        index_interval_bytes: 128,
        ..LogOptions::default()
    };
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        let cfg = TopicConfig {
            segment_bytes: 4096,
            ..TopicConfig::default()
        };
        let p = partition0(&log, "t", cfg);
        for i in 0..200i64 {
            p.append(&[rill_log::Record {
                value: Some(&[7; 50]),
                timestamp_ms: Some(i),
                ..Default::default()
            }])
            .unwrap();
        }
        drop(p);
        log.simulate_crash();
    }
    let pdir = dir.path().join("topics/t/0");
    std::fs::remove_file(pdir.join("00000000000000000000.index")).unwrap();
    std::fs::remove_file(pdir.join("00000000000000000000.timeindex")).unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    assert!(
        log.recovery_report()
            .iter()
            .any(|e| e.action == RecoveryAction::IndexRebuilt)
    );
    assert!(
        std::fs::metadata(pdir.join("00000000000000000000.index"))
            .unwrap()
            .len()
            > 0
    );
    let p = log.topic("t").unwrap().partition(0).unwrap().clone();
    assert_eq!(read_all(&p, 17)[0].0, 17);
    assert_eq!(p.offset_for_timestamp(42).unwrap(), Some(42));
    assert_eq!(p.high_watermark(), 200);
}

#[test]
fn process_crash_under_never_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        let p = partition0(&log, "t", TopicConfig::default());
        for i in 0..1000 {
            p.append(&[rec(format!("{i}").as_bytes())]).unwrap();
        }
        drop(p);
        log.simulate_crash();
    }
    let log = open(dir.path());
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(
        read_all(log.topic("t").unwrap().partition(0).unwrap(), 0).len(),
        1000
    );
}

/// A rolled segment whose seal (owed by the background flusher under `never`) did not happen
/// before the crash is validated like a tail; if torn, and no later segment was sealed
/// either, the segments after it go too, so the log stays contiguous (what Kafka does).
#[test]
fn unsealed_middle_segment_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        let cfg = TopicConfig {
            segment_bytes: 2048,
            ..TopicConfig::default()
        };
        let p = partition0(&log, "t", cfg);
        for i in 0..100 {
            p.append(&[rec(
                format!("record {i:04} with some padding to fill").as_bytes()
            )])
            .unwrap();
        }
        assert!(p.segment_count() >= 4);
        drop(p);
        log.close().unwrap();
    }
    let pdir = dir.path().join("topics/t/0");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    // "Unseal" segment 1: without its time index it looks rolled-but-not-sealed.
    let second = &logs[1];
    std::fs::remove_file(second.with_extension("timeindex")).unwrap();
    {
        let log = open(dir.path());
        assert!(
            log.recovery_report()
                .iter()
                .all(|e| e.action == RecoveryAction::IndexRebuilt)
        );
        assert_eq!(
            read_all(log.topic("t").unwrap().partition(0).unwrap(), 0).len(),
            100
        );
        log.simulate_crash();
    }
    // Now make every rolled segment from 1 on look unsealed, as after a crash under `never`
    // before the flusher sealed them, with no recovery checkpoint, and tear segment 1: cut
    // its last batch in half.
    for l in &logs[1..logs.len() - 1] {
        std::fs::remove_file(l.with_extension("timeindex")).unwrap();
    }
    std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let len = std::fs::metadata(second).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(second)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let first_base: i64 = logs[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let second_end: i64 = logs[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let log = open(dir.path());
    let p = log.topic("t").unwrap().partition(0).unwrap().clone();
    assert_eq!(
        p.high_watermark(),
        second_end - 1,
        "the torn last batch of segment 1 is gone"
    );
    assert!(p.high_watermark() > first_base);
    assert_eq!(p.segment_count(), 2);
    let removed = log
        .recovery_report()
        .iter()
        .filter(|e| matches!(e.action, RecoveryAction::Truncated { .. }))
        .count();
    assert_eq!(removed, 1 + logs.len() - 2, "{:?}", log.recovery_report());
    let rows = read_all(&p, 0);
    assert_eq!(rows.len() as i64, second_end - 1);
    assert_eq!(
        p.append(&[rec(b"next")]).unwrap().base_offset,
        second_end - 1
    );
}
