//! Throughput of the log, each case next to a raw-file baseline measured in the same run.
//!
//! - `append/<size>B/x<batch>/<policy>/{log,raw}`: `Partition::append` of `batch` records of
//!   `size` bytes, against `write(2)` of the same encoded bytes to a file in the same
//!   directory, with `fdatasync` on the same schedule (after every write under `always`,
//!   every 10 ms under `interval`, never under `never`). Under `never`, `log_append_batch`
//!   also measures `Partition::append_batch` of the pre-encoded batch (the Kafka produce path).
//! - `always_concurrent/…`: 8 threads appending one record each under `always` (group
//!   commit), against one `write` + `fdatasync` per append from 1 and from 8 threads.
//! - `read/…`: reading a 64 MiB partition 1 MiB at a time from offset 0 and from random
//!   offsets, against `pread` of the same segment file 1 MiB at a time.
//! - `offsets/commit_never`: one consumer-offset commit under `never`.
//! - `cpu/…`: encoding, CRC-32C and validation of a 1 MB batch, next to a memcpy.
//! - `paired append …` (printed, not a criterion bench): log and raw appends alternating in
//!   short rounds, so a shared machine's load hits both alike; prints the median ratio.
//!
//! Run: `cargo bench -p rill-log --bench log`.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rill_log::batch::encode;
use rill_log::{FlushPolicy, Log, LogOptions, Partition, Record, TopicConfig};

/// Files are cut back once they pass this size, outside the timed region, so a bench never
/// fills the disk.
const RESET_BYTES: u64 = 256 << 20;

fn bench_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("bench tempdir")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Xorshift(u64);
impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn topic(log: &Log, name: &str, flush: FlushPolicy) -> Arc<Partition> {
    let cfg = TopicConfig {
        flush,
        segment_bytes: 64 << 20,
        retention_bytes: Some(128 << 20),
        ..TopicConfig::default()
    };
    log.create_topic(name, cfg)
        .expect("create topic")
        .partition(0)
        .expect("partition 0")
        .clone()
}

/// The raw baseline: appends bytes to one file, syncing per `flush`.
struct RawFile {
    file: File,
    len: u64,
    flush: FlushPolicy,
    last_sync: Instant,
}

impl RawFile {
    fn create(path: &Path, flush: FlushPolicy) -> RawFile {
        let file = File::options()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(path)
            .expect("raw file");
        RawFile {
            file,
            len: 0,
            flush,
            last_sync: Instant::now(),
        }
    }
    fn append(&mut self, bytes: &[u8]) {
        self.file.write_all(bytes).expect("write");
        self.len += bytes.len() as u64;
        match self.flush {
            FlushPolicy::Always => self.file.sync_data().expect("fdatasync"),
            FlushPolicy::IntervalMs(ms)
                if self.last_sync.elapsed() >= Duration::from_millis(ms) =>
            {
                self.file.sync_data().expect("fdatasync");
                self.last_sync = Instant::now();
            }
            _ => {}
        }
    }
    fn maybe_reset(&mut self) {
        if self.len > RESET_BYTES {
            self.file.set_len(0).expect("truncate");
            use std::io::Seek;
            self.file.seek(std::io::SeekFrom::Start(0)).expect("seek");
            self.len = 0;
        }
    }
}

fn append_benches(c: &mut Criterion) {
    let dir = bench_dir();
    let log = Log::open(dir.path().join("data"), LogOptions::default()).expect("open");
    let policies = [
        ("never", FlushPolicy::Never),
        ("interval10ms", FlushPolicy::IntervalMs(10)),
        ("always", FlushPolicy::Always),
    ];
    for size in [100usize, 1024] {
        let value = vec![b'x'; size];
        for batch in [1usize, 100, 1000] {
            let recs: Vec<Record<'_>> = (0..batch)
                .map(|_| Record {
                    value: Some(&value),
                    ..Record::default()
                })
                .collect();
            let encoded = encode(&recs, now_ms());
            let mut g = c.benchmark_group(format!("append/{size}B/x{batch}"));
            g.throughput(Throughput::Bytes((size * batch) as u64));
            for (pname, policy) in policies {
                let p = topic(&log, &format!("a{size}-{batch}-{pname}"), policy);
                g.bench_function(BenchmarkId::new(pname, "log"), |b| {
                    b.iter_custom(|iters| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            let t = Instant::now();
                            p.append(&recs).expect("append");
                            spent += t.elapsed();
                            if p.size_bytes() > RESET_BYTES {
                                log.enforce_retention().expect("retention");
                            }
                        }
                        spent
                    })
                });
                if policy == FlushPolicy::Never {
                    // The write path alone: a producer's pre-encoded batch, validated and stored.
                    let p = topic(&log, &format!("b{size}-{batch}-{pname}"), policy);
                    let mut raw_batch = encoded.clone();
                    g.bench_function(BenchmarkId::new(pname, "log_append_batch"), |b| {
                        b.iter_custom(|iters| {
                            let mut spent = Duration::ZERO;
                            for _ in 0..iters {
                                let t = Instant::now();
                                p.append_batch(&mut raw_batch).expect("append_batch");
                                spent += t.elapsed();
                                if p.size_bytes() > RESET_BYTES {
                                    log.enforce_retention().expect("retention");
                                }
                            }
                            spent
                        })
                    });
                }
                let mut raw = RawFile::create(
                    &dir.path().join(format!("raw-{size}-{batch}-{pname}")),
                    policy,
                );
                g.bench_function(BenchmarkId::new(pname, "raw"), |b| {
                    b.iter_custom(|iters| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            let t = Instant::now();
                            raw.append(&encoded);
                            spent += t.elapsed();
                            raw.maybe_reset();
                        }
                        spent
                    })
                });
            }
            g.finish();
        }
    }
}

fn concurrent_always(c: &mut Criterion) {
    const THREADS: u64 = 8;
    let dir = bench_dir();
    let log = Log::open(dir.path().join("data"), LogOptions::default()).expect("open");
    let p = topic(&log, "conc", FlushPolicy::Always);
    let value = [b'x'; 100];
    let recs = [Record {
        value: Some(&value),
        ..Record::default()
    }];
    let encoded = encode(&recs, now_ms());
    let mut g = c.benchmark_group("always_concurrent/100B");
    g.throughput(Throughput::Elements(1));
    g.bench_function("log_8_appenders", |b| {
        b.iter_custom(|iters| {
            let per = iters.div_ceil(THREADS);
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        for _ in 0..per {
                            p.append(&recs).expect("append");
                        }
                    });
                }
            });
            // Report time per append actually made.
            t.elapsed().mul_f64(iters as f64 / (per * THREADS) as f64)
        })
    });
    let raw_path = dir.path().join("raw-conc");
    g.bench_function("raw_fsync_per_append_1_thread", |b| {
        let mut raw = RawFile::create(&raw_path, FlushPolicy::Always);
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                raw.append(&encoded);
            }
            t.elapsed()
        })
    });
    g.bench_function("raw_fsync_per_append_8_threads", |b| {
        let file = File::options()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&raw_path)
            .expect("raw");
        let pos = std::sync::atomic::AtomicU64::new(0);
        b.iter_custom(|iters| {
            let per = iters.div_ceil(THREADS);
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        for _ in 0..per {
                            let at = pos.fetch_add(
                                encoded.len() as u64,
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            file.write_all_at(&encoded, at).expect("write");
                            file.sync_data().expect("fdatasync");
                        }
                    });
                }
            });
            t.elapsed().mul_f64(iters as f64 / (per * THREADS) as f64)
        })
    });
    g.finish();
}

fn read_benches(c: &mut Criterion) {
    const TOTAL: u64 = 64 << 20;
    const CHUNK: usize = 1 << 20;
    let dir = bench_dir();
    let log = Log::open(dir.path().join("data"), LogOptions::default()).expect("open");
    let cfg = TopicConfig {
        segment_bytes: 1 << 30,
        ..TopicConfig::default()
    };
    let p = log
        .create_topic("r", cfg)
        .expect("topic")
        .partition(0)
        .expect("p0")
        .clone();
    let value = [b'r'; 1024];
    let recs: Vec<Record<'_>> = (0..100)
        .map(|_| Record {
            value: Some(&value),
            ..Record::default()
        })
        .collect();
    while p.size_bytes() < TOTAL {
        p.append(&recs).expect("append");
    }
    let hw = p.high_watermark();
    let seg =
        File::open(dir.path().join("data/topics/r/0/00000000000000000000.log")).expect("segment");
    let seg_len = seg.metadata().expect("len").len();
    // Warm the page cache and the CRC-verified mark for both readers.
    let mut next = 0;
    while next < hw {
        next = p.read(next, CHUNK).expect("read").next_offset;
    }
    let mut g = c.benchmark_group("read/64MiB");
    g.throughput(Throughput::Bytes(seg_len));
    g.bench_function("log_from_0", |b| {
        b.iter(|| {
            let mut next = 0;
            let mut bytes = 0;
            while next < hw {
                let r = p.read(next, CHUNK).expect("read");
                bytes += r.bytes.len();
                next = r.next_offset;
            }
            bytes
        })
    });
    g.bench_function("raw_sequential_pread", |b| {
        let mut buf = vec![0u8; CHUNK];
        b.iter(|| {
            let mut pos = 0;
            while pos < seg_len {
                pos += seg.read_at(&mut buf, pos).expect("pread") as u64;
            }
            pos
        })
    });
    g.finish();
    let mut g = c.benchmark_group("read/1MiB_random");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    g.bench_function("log_random_offset", |b| {
        b.iter(|| {
            p.read((rng.next() % hw as u64) as i64, CHUNK)
                .expect("read")
                .bytes
                .len()
        })
    });
    g.bench_function("raw_random_pread", |b| {
        let mut buf = vec![0u8; CHUNK];
        b.iter(|| {
            seg.read_at(&mut buf, rng.next() % (seg_len - CHUNK as u64))
                .expect("pread")
        })
    });
    g.finish();
}

fn offsets_bench(c: &mut Criterion) {
    let dir = bench_dir();
    let log = Log::open(dir.path().join("data"), LogOptions::default()).expect("open");
    let mut next = 0i64;
    c.bench_function("offsets/commit_never", |b| {
        b.iter(|| {
            next += 1;
            log.offsets()
                .commit("group", "topic", (next % 4) as u32, next)
                .expect("commit")
        })
    });
}

/// Where append time goes besides the write: encoding records and the CRC.
fn cpu_benches(c: &mut Criterion) {
    let value = vec![b'x'; 1024];
    let recs: Vec<Record<'_>> = (0..1000)
        .map(|_| Record {
            value: Some(&value),
            ..Record::default()
        })
        .collect();
    let mut g = c.benchmark_group("cpu/1024B/x1000");
    g.throughput(Throughput::Bytes(1024 * 1000));
    let mut buf = Vec::new();
    let small = [b'x'; 100];
    let small_recs: Vec<Record<'_>> = (0..1000)
        .map(|_| Record {
            value: Some(&small),
            ..Record::default()
        })
        .collect();
    g.bench_function("push_per_record_100B_x1000", |b| {
        b.iter(|| {
            let mut bb = rill_log::BatchBuilder::into_buffer(&mut buf);
            for r in &small_recs {
                bb.push(r, 0);
            }
            bb.finish();
        })
    });
    g.bench_function("encode_into_100B_x1000", |b| {
        b.iter(|| rill_log::batch::encode_into(&small_recs, 0, &mut buf))
    });
    g.bench_function("encode_into", |b| {
        b.iter(|| rill_log::batch::encode_into(&recs, 0, &mut buf))
    });
    g.bench_function("crc32c", |b| b.iter(|| crc32c::crc32c(&buf)));
    let mut copy = vec![0u8; buf.len()];
    g.bench_function("memcpy", |b| b.iter(|| copy.copy_from_slice(&buf)));
    g.bench_function("validate", |b| {
        b.iter(|| {
            let (batch, _) = rill_log::RecordBatch::parse(&buf).expect("parse");
            batch.validate().expect("valid");
            batch.records().count()
        })
    });
    g.finish();
}

/// The machine is shared, so load shifts between two criterion benches. This measures the
/// no-fsync append targets *paired*: log and raw alternate in short rounds, and the median of
/// the per-round ratios is printed, so both sides see the same load.
fn paired_targets(_c: &mut Criterion) {
    const ROUNDS: usize = 40;
    let dir = bench_dir();
    let log = Log::open(dir.path().join("data"), LogOptions::default()).expect("open");
    for (size, batch, per_round) in [
        (100usize, 1usize, 2000usize),
        (1024, 1, 2000),
        (100, 1000, 40),
        (1024, 100, 40),
        (1024, 1000, 8),
    ] {
        let value = vec![b'x'; size];
        let recs: Vec<Record<'_>> = (0..batch)
            .map(|_| Record {
                value: Some(&value),
                ..Record::default()
            })
            .collect();
        let encoded = encode(&recs, now_ms());
        let p = topic(&log, &format!("paired-{size}-{batch}"), FlushPolicy::Never);
        let mut raw = RawFile::create(
            &dir.path().join(format!("paired-raw-{size}-{batch}")),
            FlushPolicy::Never,
        );
        let mut ratios = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS + 5 {
            // Alternate which side goes first, so neither always runs on a cold cache.
            let time_log = |p: &Partition| {
                let t = Instant::now();
                for _ in 0..per_round {
                    p.append(&recs).expect("append");
                }
                t.elapsed()
            };
            let time_raw = |raw: &mut RawFile| {
                let t = Instant::now();
                for _ in 0..per_round {
                    raw.append(&encoded);
                }
                t.elapsed()
            };
            let (log_t, raw_t) = if round % 2 == 0 {
                let l = time_log(&p);
                (l, time_raw(&mut raw))
            } else {
                let r = time_raw(&mut raw);
                (time_log(&p), r)
            };
            if p.size_bytes() > RESET_BYTES {
                log.enforce_retention().expect("retention");
            }
            raw.maybe_reset();
            // The first rounds warm up.
            if round >= 5 {
                ratios.push(raw_t.as_secs_f64() / log_t.as_secs_f64());
            }
        }
        ratios.sort_by(f64::total_cmp);
        let (q1, med, q3) = (
            ratios[ROUNDS / 4],
            ratios[ROUNDS / 2],
            ratios[3 * ROUNDS / 4],
        );
        eprintln!(
            "paired append {size}B x{batch} never: log/raw rate = {:.0}% (quartiles {:.0}%..{:.0}%)",
            med * 100.0,
            q1 * 100.0,
            q3 * 100.0
        );
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
}

criterion_group! { name = benches; config = config(); targets = append_benches, concurrent_always, read_benches, offsets_bench, cpu_benches, paired_targets }
criterion_main!(benches);
