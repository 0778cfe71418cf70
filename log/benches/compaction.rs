//! Compaction throughput against a raw sequential copy of the same segment files (printed,
//! not a criterion bench: each run compacts a fresh copy of one prepared data dir).
//!
//! Writes `RILL_COMPACTION_MIB` MiB (default 64) of 100-byte values over
//! `RILL_COMPACTION_KEYS` keys (default 10,000), in batches of 100 records, to one partition
//! of a `compact` topic with 8 MiB segments, and seals them. Then three times, median
//! printed, each on a fresh copy of that dir (the copy is not timed):
//!
//! - `compact`: one `Log::compact_at` pass over every sealed segment (key map, rewrite with
//!   fsyncs, index rebuild, swap), in MB/s of sealed segment bytes examined;
//! - baseline `raw copy`: reading each sealed `.log` 1 MiB at a time, writing it to a new
//!   file and fsyncing it: what a rewrite cannot beat.
//!
//! Run: `cargo bench -p rill-log --bench compaction`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rill_log::{CleanupPolicy, Log, LogOptions, Record, TopicConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).expect("copy");
        }
    }
}

/// The sealed segments' `.log` files (all but the last).
fn sealed_logs(data: &Path) -> Vec<PathBuf> {
    let dir = data.join("topics/c/0");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop();
    logs
}

/// Reads `src` 1 MiB at a time into `dst`, then fsyncs it.
fn raw_copy(src: &Path, dst: &Path) {
    let mut r = File::open(src).expect("open");
    let mut w = File::create(dst).expect("create");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n]).expect("write");
    }
    w.sync_data().expect("fsync");
}

fn main() {
    let mib = env_u64("RILL_COMPACTION_MIB", 64);
    let keys = env_u64("RILL_COMPACTION_KEYS", 10_000);
    let base = tempfile::tempdir().expect("tempdir");
    let prepared = base.path().join("prepared");
    {
        let log = Log::open(&prepared, LogOptions::default()).expect("open");
        let cfg = TopicConfig {
            cleanup_policy: CleanupPolicy::Compact,
            segment_bytes: 8 << 20,
            ..TopicConfig::default()
        };
        log.create_topic("c", cfg).expect("topic");
        let p = log
            .topic("c")
            .expect("topic")
            .partition(0)
            .expect("p")
            .clone();
        let value = [7u8; 100];
        let names: Vec<String> = (0..keys).map(|k| format!("key-{k:08}")).collect();
        let mut written = 0u64;
        let mut i = 0u64;
        while written < mib << 20 {
            let recs: Vec<Record<'_>> = (0..100)
                .map(|j| Record {
                    key: Some(names[((i * 100 + j) % keys) as usize].as_bytes()),
                    value: Some(&value),
                    ..Record::default()
                })
                .collect();
            p.append(&recs).expect("append");
            written += 100 * 120;
            i += 1;
        }
        log.close().expect("close");
    }
    let sealed: u64 = sealed_logs(&prepared)
        .iter()
        .map(|p| p.metadata().expect("meta").len())
        .sum();
    let mb = sealed as f64 / 1e6;
    println!("{:.1} MB of sealed segments, {keys} keys", mb);
    let mut compact = Vec::new();
    let mut removed = 0;
    for run in 0..3 {
        let dir = base.path().join(format!("run-{run}"));
        copy_dir(&prepared, &dir);
        let log = Log::open(&dir, LogOptions::default()).expect("open copy");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let t = Instant::now();
        let report = log.compact_at(now).expect("compact");
        compact.push(t.elapsed());
        removed = report.records_removed;
        drop(log);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
    let mut raw = Vec::new();
    for run in 0..3 {
        let out = base.path().join(format!("raw-{run}"));
        std::fs::create_dir_all(&out).expect("mkdir");
        let t = Instant::now();
        for (i, src) in sealed_logs(&prepared).iter().enumerate() {
            raw_copy(src, &out.join(format!("{i}.log")));
        }
        raw.push(t.elapsed());
        std::fs::remove_dir_all(&out).expect("cleanup");
    }
    let (c, r) = (median(compact), median(raw));
    println!(
        "compact   {:>8.1} ms  {:>8.1} MB/s  ({removed} records removed)",
        c.as_secs_f64() * 1e3,
        mb / c.as_secs_f64()
    );
    println!(
        "raw copy  {:>8.1} ms  {:>8.1} MB/s",
        r.as_secs_f64() * 1e3,
        mb / r.as_secs_f64()
    );
}
