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
            o.commit("g", "t", 0, -1),
            Err(OffsetsError::InvalidOffset(-1))
        ));
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
