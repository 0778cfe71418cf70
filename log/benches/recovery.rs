//! Restart time after a crash, with and without the recovery checkpoint (printed, not a
//! criterion bench: each case opens the same multi-GiB data dir).
//!
//! Writes `RILL_RECOVERY_GIB` GiB (default 2) across `RILL_RECOVERY_PARTITIONS` partitions
//! (default 4) of a `never` topic whose segments are large enough that all of it stays in
//! unsealed active segments, then stops as a crashed process would (the page cache keeps
//! everything, as after SIGKILL). Then, each case three times, median printed:
//!
//! - `checkpoint`: `Log::open` as it is after the crash, using the recovery checkpoint the
//!   flusher kept within `LogOptions::recovery_scan_budget_bytes` while writing;
//! - `checkpoint + 64 MiB tail`: the same after a flush, with 64 MiB more appended after it;
//! - `no checkpoint`: the checkpoint file removed, so every unsealed byte is CRC-scanned (the
//!   behaviour before checkpoints);
//! - `clean close`: after `Log::close`;
//! - baseline `raw pread+crc32c`: reading every segment file 1 MiB at a time and computing
//!   CRC-32C over it, on one thread and on one thread per partition, in the same run.
//!
//! Run: `cargo bench -p rill-log --bench recovery`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rill_log::{Log, LogOptions, Record, TopicConfig};

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

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let topic = dir.join("topics/r");
    for p in std::fs::read_dir(&topic).expect("topic dir") {
        let p = p.expect("entry").path();
        if !p.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&p).expect("partition dir") {
            let f = f.expect("entry").path();
            if f.extension().is_some_and(|x| x == "log") {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

/// Reads a file 1 MiB at a time and CRCs it: what a full scan cannot beat.
fn raw_scan(path: &Path) -> u32 {
    let f = File::open(path).expect("open segment");
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut crc = 0u32;
    loop {
        let n = f.read_at(&mut buf, pos).expect("read");
        if n == 0 {
            return crc;
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        pos += n as u64;
    }
}

fn open_timed(dir: &Path, label: &str, prepare: impl Fn()) -> Duration {
    let mut times = Vec::new();
    let mut scanned = 0;
    for _ in 0..3 {
        prepare();
        let t = Instant::now();
        let log = Log::open(dir, LogOptions::default()).expect("open");
        times.push(t.elapsed());
        scanned = log.recovery_stats().bytes_scanned;
        log.simulate_crash();
    }
    let m = median(times);
    println!(
        "{label:<28} {:>9.1} ms   scanned {:>6} MiB",
        m.as_secs_f64() * 1e3,
        scanned >> 20
    );
    m
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that excludes us means "skip".
    if std::env::args()
        .skip(1)
        .any(|a| a != "--bench" && !"recovery".contains(&a))
    {
        return;
    }
    let gib = env_u64("RILL_RECOVERY_GIB", 2);
    let partitions = env_u64("RILL_RECOVERY_PARTITIONS", 4) as u32;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("bench tempdir");
    let per_partition = (gib << 30) / u64::from(partitions);
    let value = vec![0x5au8; 1000];
    let records: Vec<Record<'_>> = (0..100)
        .map(|_| Record {
            value: Some(&value),
            ..Record::default()
        })
        .collect();
    let t = Instant::now();
    {
        let log = Log::open(dir.path(), LogOptions::default()).expect("open");
        let cfg = TopicConfig {
            partitions,
            // Big enough that nothing rolls: all data sits in unsealed active segments.
            segment_bytes: 2 << 30,
            ..TopicConfig::default()
        };
        let topic = log.create_topic("r", cfg).expect("create topic");
        std::thread::scope(|s| {
            for p in topic.partitions() {
                let records = &records;
                s.spawn(move || {
                    while p.size_bytes() < per_partition {
                        p.append(records).expect("append");
                    }
                });
            }
        });
        log.simulate_crash();
    }
    let total: u64 = segment_files(dir.path())
        .iter()
        .map(|f| std::fs::metadata(f).expect("stat").len())
        .sum();
    println!(
        "wrote {} MiB in {partitions} partitions ({:.1} s); recovery after a crash:",
        total >> 20,
        t.elapsed().as_secs_f64()
    );
    let files = segment_files(dir.path());
    let raw1 = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                for f in &files {
                    std::hint::black_box(raw_scan(f));
                }
                t.elapsed()
            })
            .collect(),
    );
    let raw_par = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                std::thread::scope(|s| {
                    for f in &files {
                        s.spawn(move || std::hint::black_box(raw_scan(f)));
                    }
                });
                t.elapsed()
            })
            .collect(),
    );
    let cp_path = dir.path().join("recovery-point");
    let with_cp = open_timed(dir.path(), "checkpoint", || {});
    // Flush (fsync + checkpoint at the end), then a 64 MiB tail after it.
    {
        let log = Log::open(dir.path(), LogOptions::default()).expect("open");
        log.flush().expect("flush");
        let topic = log.topic("r").expect("topic");
        let tail = (64u64 << 20) / u64::from(partitions);
        for p in topic.partitions() {
            let start = p.size_bytes();
            while p.size_bytes() - start < tail {
                p.append(&records).expect("append");
            }
        }
        log.simulate_crash();
    }
    let saved = std::fs::read(&cp_path).expect("checkpoint");
    let with_tail = open_timed(dir.path(), "checkpoint + 64 MiB tail", || {
        std::fs::write(&cp_path, &saved).expect("restore checkpoint")
    });
    let without = open_timed(dir.path(), "no checkpoint (full scan)", || {
        let _ = std::fs::remove_file(&cp_path);
    });
    {
        let log = Log::open(dir.path(), LogOptions::default()).expect("open");
        log.close().expect("close");
    }
    let mut clean = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let log = Log::open(dir.path(), LogOptions::default()).expect("open");
        clean.push(t.elapsed());
        log.close().expect("close");
    }
    let clean = median(clean);
    println!(
        "{:<28} {:>9.1} ms",
        "clean close",
        clean.as_secs_f64() * 1e3
    );
    println!(
        "{:<28} {:>9.1} ms   ({:.1} ms with a thread per segment)",
        "raw pread+crc32c, 1 thread",
        raw1.as_secs_f64() * 1e3,
        raw_par.as_secs_f64() * 1e3
    );
    let ratio = |d: Duration| d.as_secs_f64() / raw1.as_secs_f64();
    println!(
        "vs raw 1-thread scan: checkpoint {:.3}x, +tail {:.3}x, no checkpoint {:.2}x, clean {:.3}x",
        ratio(with_cp),
        ratio(with_tail),
        ratio(without),
        ratio(clean)
    );
}
