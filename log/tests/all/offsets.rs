//! Consumer-group offsets: commit, fetch, reopen, compaction, torn entries.

use rill_log::{FlushPolicy, Log, LogOptions, OffsetsError};

use crate::common::open;

fn commits_file(data: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(data.join("offsets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("commits-")
        })
        .unwrap()
}

#[test]
fn commit_fetch_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        let o = log.offsets();
        assert_eq!(o.fetch("g", "t", 0), None);
        o.commit("g", "t", 0, 5).unwrap();
        o.commit("g", "t", 1, 7).unwrap();
        o.commit("g", "t", 0, 6).unwrap();
        o.commit("h", "u", 3, 1).unwrap();
        assert!(matches!(
            o.commit("", "t", 0, 1),
            Err(OffsetsError::InvalidKey(_))
        ));
        assert_eq!(o.fetch("g", "t", 0), Some(6));
        assert_eq!(o.groups(), ["g", "h"]);
        assert_eq!(
            o.committed("g"),
            vec![("t".to_string(), 0, 6), ("t".to_string(), 1, 7)]
        );
        log.simulate_crash();
    }
    let log = open(dir.path());
    let o = log.offsets();
    assert_eq!(o.fetch("g", "t", 0), Some(6));
    assert_eq!(o.fetch("g", "t", 1), Some(7));
    assert_eq!(o.fetch("h", "u", 3), Some(1));
    o.delete_group("g").unwrap();
    assert_eq!(o.groups(), ["h"]);
    assert_eq!(o.fetch("g", "t", 0), None);
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.offsets().groups(), ["h"]);
    log.offsets().commit("g", "t", 0, 9).unwrap();
    assert_eq!(log.offsets().fetch("g", "t", 0), Some(9));
}

/// Issue 11: Kafka stores a committed negative offset as is (clients commit -1/-2 as reset
/// markers after OFFSET_OUT_OF_RANGE or an admin reset) and OffsetFetch returns it; so do
/// we, across a crash, a clean reopen and generation switches, while `delete_group`'s
/// tombstones still delete.
#[test]
fn issue11_negative_commits_are_stored_as_is() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        let o = log.offsets();
        o.commit("g", "t", 0, 5).unwrap();
        o.commit("g", "t", 0, -1).unwrap();
        o.commit("g", "t", 1, -2).unwrap();
        o.commit("d", "t", 0, -2).unwrap();
        o.delete_group("d").unwrap();
        assert_eq!(o.fetch("g", "t", 0), Some(-1));
        assert_eq!(o.fetch("g", "t", 1), Some(-2));
        assert_eq!(o.groups(), ["g"]);
        log.simulate_crash();
    }
    for _ in 0..2 {
        let log = open(dir.path());
        let o = log.offsets();
        assert_eq!(o.fetch("g", "t", 0), Some(-1));
        assert_eq!(o.fetch("g", "t", 1), Some(-2));
        assert_eq!(o.fetch("d", "t", 0), None);
        assert!(!o.groups().contains(&"d".to_string()));
        // Enough commits to switch generations: live negative values are copied over.
        for i in 0..70_000 {
            o.commit("h", "u", 0, i).unwrap();
        }
        assert_eq!(o.fetch("g", "t", 1), Some(-2));
    }
}

#[test]
fn compaction_when_the_file_fills() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for i in 0..200_000i64 {
            log.offsets().commit("g", "t", (i % 7) as u32, i).unwrap();
        }
        log.simulate_crash();
    }
    let log = open(dir.path());
    for p in 0..7u32 {
        let last = (0..200_000i64)
            .filter(|i| i % 7 == i64::from(p))
            .max()
            .unwrap();
        assert_eq!(log.offsets().fetch("g", "t", p), Some(last));
    }
    // Only one generation remains.
    let n = std::fs::read_dir(dir.path().join("offsets"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .starts_with("commits-")
        });
    assert_eq!(n.count(), 1);
}

#[test]
fn torn_last_entry_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.offsets().commit("g", "t", 0, 10).unwrap();
        log.offsets().commit("g", "t", 0, 11).unwrap();
        log.simulate_crash();
    }
    // Entries start at 0; the live set was compacted on open... find the last non-zero entry.
    let path = commits_file(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes
        .chunks_exact(32)
        .rposition(|e| e.iter().any(|&b| b != 0))
        .unwrap();
    bytes[last * 32 + 12] ^= 0xff; // inside the offset field
    std::fs::write(&path, &bytes).unwrap();
    let log = open(dir.path());
    assert_eq!(log.offsets().fetch("g", "t", 0), Some(10));
}

#[test]
fn torn_names_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.offsets().commit("g", "t", 0, 1).unwrap();
        log.offsets().commit("g2", "t", 0, 2).unwrap();
        log.simulate_crash();
    }
    let names = dir.path().join("offsets/names");
    let len = std::fs::metadata(&names).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&names)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let log = open(dir.path());
    assert_eq!(log.offsets().fetch("g", "t", 0), Some(1));
    assert_eq!(log.offsets().fetch("g2", "t", 0), None);
    log.offsets().commit("g3", "t", 0, 3).unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.offsets().fetch("g3", "t", 0), Some(3));
}

#[test]
fn always_policy_commits_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        offsets_flush: FlushPolicy::Always,
        ..LogOptions::default()
    };
    let log = Log::open(dir.path(), opts).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let log = &log;
            s.spawn(move || {
                for i in 0..20 {
                    log.offsets().commit("g", "t", t, i).unwrap();
                }
            });
        }
    });
    assert_eq!(log.offsets().committed("g").len(), 4);
}

fn fault_log(dir: &std::path::Path, policy: FlushPolicy) -> (Log, rill_log::io::FaultIo) {
    let fault = rill_log::io::FaultIo::new();
    let opts = LogOptions {
        io: std::sync::Arc::new(fault.clone()),
        offsets_flush: policy,
        ..crate::common::quiet_opts()
    };
    (Log::open(dir, opts).unwrap(), fault)
}

/// Review 7: under `always`, a commit whose fsync failed returned an error but `fetch` showed
/// its value, and later commits were accepted.
#[test]
fn review_7_a_failed_commit_fsync_hides_the_commit_and_fails_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fault) = fault_log(dir.path(), FlushPolicy::Always);
    let o = log.offsets();
    o.commit("g", "t", 0, 5).unwrap();
    fault.fail_next_syncs(1);
    assert!(matches!(
        o.commit("g", "t", 0, 6),
        Err(OffsetsError::Io { .. })
    ));
    assert_eq!(o.fetch("g", "t", 0), Some(5));
    assert!(matches!(
        o.commit("g", "t", 0, 7),
        Err(OffsetsError::Failed)
    ));
    assert!(matches!(o.delete_group("g"), Err(OffsetsError::Failed)));
    assert_eq!(o.fetch("g", "t", 0), Some(5));
}

/// Review 7: a failed `flush` (the `never`/`interval` path) did not mark the store failed.
#[test]
fn review_7_a_failed_flush_fails_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fault) = fault_log(dir.path(), FlushPolicy::Never);
    let o = log.offsets();
    o.commit("g", "t", 0, 5).unwrap();
    fault.fail_next_syncs(1);
    assert!(o.flush().is_err());
    assert!(matches!(
        o.commit("g", "t", 0, 6),
        Err(OffsetsError::Failed)
    ));
    // Acknowledged under `never`, so still visible.
    assert_eq!(o.fetch("g", "t", 0), Some(5));
}

/// Generation switches (prepared off the hot path) keep every commit, deletes included, and
/// leave one generation after a reopen.
#[test]
fn generation_switches_keep_commits_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        let o = log.offsets();
        for i in 0..150_000i64 {
            o.commit("g", "t", (i % 5) as u32, i).unwrap();
            if i % 40_000 == 0 {
                o.commit("doomed", "t", 0, i).unwrap();
            }
            if i == 120_001 {
                o.delete_group("doomed").unwrap();
            }
        }
        log.simulate_crash();
    }
    let log = open(dir.path());
    for p in 0..5u32 {
        let last = (0..150_000i64)
            .filter(|i| i % 5 == i64::from(p))
            .max()
            .unwrap();
        assert_eq!(log.offsets().fetch("g", "t", p), Some(last));
    }
    assert_eq!(log.offsets().fetch("doomed", "t", 0), None);
    assert_eq!(log.offsets().groups(), ["g"]);
}

/// A commits entry as the store writes it (docs/log-format.md).
fn entry(key: u32, partition: u32, offset: i64, seq: u64) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0..4].copy_from_slice(&key.to_be_bytes());
    e[4..8].copy_from_slice(&partition.to_be_bytes());
    e[8..16].copy_from_slice(&offset.to_be_bytes());
    e[16..24].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&e[..24]);
    e[24..28].copy_from_slice(&crc.to_be_bytes());
    e
}

/// A crash in the middle of a generation switch leaves a newer generation whose copy of the
/// live entries is incomplete: recovery replays the older, complete one first. A complete
/// newer generation is used alone, so deletes it reflects stay deleted.
#[test]
fn an_interrupted_generation_switch_loses_nothing() {
    for complete in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path());
            log.offsets().commit("g", "t", 0, 5).unwrap();
            log.offsets().commit("g", "t", 1, 6).unwrap();
            log.simulate_crash();
        }
        let current = commits_file(dir.path());
        let generation: u64 = current
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_prefix("commits-")
            .unwrap()
            .parse()
            .unwrap();
        // Key id 0 is ("g", "t"). The newer file announces 2 live entries (or 1, when it is
        // complete and partition 1 was deleted) and holds one.
        let seq = 1u64 << 40;
        let announced = if complete { 1 } else { 2 };
        let mut newer = Vec::new();
        newer.extend_from_slice(&entry(u32::MAX, 0, announced, seq));
        newer.extend_from_slice(&entry(0, 0, 5, seq + 1));
        newer.resize(4096, 0);
        let newer_path = dir
            .path()
            .join(format!("offsets/commits-{:020}", generation + 1));
        std::fs::write(&newer_path, &newer).unwrap();
        let log = open(dir.path());
        assert_eq!(log.offsets().fetch("g", "t", 0), Some(5));
        let want = if complete { None } else { Some(6) };
        assert_eq!(
            log.offsets().fetch("g", "t", 1),
            want,
            "complete {complete}"
        );
    }
}
