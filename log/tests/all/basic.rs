//! Append, read, topics, reopen, timestamps, listeners.

use std::sync::Arc;

use event_listener::Listener;

use rill_log::{
    AppendError, BatchBuilder, FlushPolicy, Header, Log, LogOptions, ReadError, Record,
    TopicConfig, TopicError,
};

use crate::common::{open, partition0, read_all, rec, records};

#[test]
fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log
        .create_topic(
            "t",
            TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let p = t.partition(1).unwrap();
    let info = p.append(&[rec(b"a"), rec(b"b")]).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 1));
    let info = p.append(&[rec(b"c")]).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (2, 2));
    assert_eq!(p.high_watermark(), 3);
    let got = read_all(p, 0);
    assert_eq!(
        got.iter().map(|r| r.2.clone().unwrap()).collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    // Reading from the middle of a batch returns the whole batch.
    let r = p.read(1, 1 << 20).unwrap();
    assert_eq!(records(&r.bytes)[0].0, 0);
    assert_eq!(r.next_offset, 3);
    assert!(p.read(3, 100).unwrap().bytes.is_empty());
    assert!(matches!(
        p.read(4, 100),
        Err(ReadError::OffsetOutOfRange {
            requested: 4,
            start: 0,
            end: 3
        })
    ));
    drop(t);
    log.close().unwrap();
    drop(log);
    let log = open(dir.path());
    assert!(log.recovery_report().is_empty());
    let t = log.topic("t").unwrap();
    assert_eq!(t.config().partitions, 2);
    let p = t.partition(1).unwrap();
    assert_eq!(p.high_watermark(), 3);
    assert_eq!(read_all(p, 0).len(), 3);
    assert_eq!(p.append(&[rec(b"d")]).unwrap().base_offset, 3);
}

#[test]
fn topic_admin() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for bad in ["", ".", "..", "a/b", "sp ace", &"x".repeat(250)] {
        assert!(
            matches!(
                log.create_topic(bad, TopicConfig::default()),
                Err(TopicError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    log.create_topic("b", TopicConfig::default()).unwrap();
    log.create_topic("a.x_y-z", TopicConfig::default()).unwrap();
    assert!(matches!(
        log.create_topic("b", TopicConfig::default()),
        Err(TopicError::AlreadyExists(_))
    ));
    let names: Vec<_> = log.topics().iter().map(|t| t.name().to_string()).collect();
    assert_eq!(names, ["a.x_y-z", "b"]);
    let p = log.topic("b").unwrap().partition(0).unwrap().clone();
    log.delete_topic("b").unwrap();
    assert!(matches!(p.append(&[rec(b"x")]), Err(AppendError::Closed)));
    assert!(log.topic("b").is_none());
    assert!(matches!(
        log.delete_topic("b"),
        Err(TopicError::NotFound(_))
    ));
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.topics().len(), 1);
    // Recreating a deleted topic starts empty.
    let t = log.create_topic("b", TopicConfig::default()).unwrap();
    assert_eq!(t.partition(0).unwrap().high_watermark(), 0);
}

#[test]
fn keyed_placement_and_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log
        .create_topic(
            "t",
            TopicConfig {
                partitions: 10,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    assert_eq!(t.partition_for_key(Some(b"foobar")), 6);
    let mut seen = [0; 10];
    for _ in 0..100 {
        seen[t.partition_for_key(None) as usize] += 1;
    }
    assert_eq!(seen, [10; 10]);
}

#[test]
fn raw_batches_keep_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let p = partition0(&log, "t", TopicConfig::default());
    p.append(&[rec(b"first")]).unwrap();
    let h = [Header {
        key: "h",
        value: Some(b"v"),
    }];
    let mut b = BatchBuilder::new();
    b.push(
        &Record {
            key: Some(b"k"),
            value: Some(b"v1"),
            headers: &h,
            timestamp_ms: Some(7),
        },
        0,
    );
    b.push(
        &Record {
            key: Some(b"k"),
            value: Some(b"v2"),
            headers: &[],
            timestamp_ms: Some(8),
        },
        0,
    );
    let mut one = b.finish();
    let mut two = one.clone();
    two.extend_from_slice(&one);
    let info = p.append_batch(&mut one).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (1, 2));
    // The append_batch call must reject two concatenated batches; append_batches takes them.
    assert!(p.append_batch(&mut two.clone()).is_err());
    let info = p.append_batches(&mut two).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (3, 6));
    let r = p.read(1, 1 << 20).unwrap();
    let got = records(&r.bytes);
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    // Corrupt CRC is refused, the log untouched.
    let mut bad = one.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(matches!(
        p.append_batch(&mut bad),
        Err(AppendError::InvalidBatch(_))
    ));
    assert!(matches!(
        p.append_batch(&mut [0u8; 10]),
        Err(AppendError::InvalidBatch(_))
    ));
    // An unknown codec (attributes bits 0-2 = 7) is refused even with a valid CRC.
    let mut odd = one.clone();
    odd[22] |= 7;
    let crc = crc32c::crc32c(&odd[21..]);
    odd[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        p.append_batch(&mut odd),
        Err(AppendError::InvalidBatch(_))
    ));
    assert_eq!(p.high_watermark(), 7);
}

#[test]
fn rolls_and_reads_across_segments_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogOptions {
            index_interval_bytes: 256,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let cfg = TopicConfig {
        segment_bytes: 4096,
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    let v = [9u8; 100];
    for i in 0..500i64 {
        p.append(&[Record {
            value: Some(&v),
            timestamp_ms: Some(1000 + i * 10),
            ..Record::default()
        }])
        .unwrap();
    }
    assert!(p.segment_count() > 5, "{}", p.segment_count());
    for from in [0, 1, 37, 250, 499] {
        let r = p.read(from, 1).unwrap();
        let got = records(&r.bytes);
        assert_eq!(got[0].0, from);
        assert_eq!(got.len(), 1);
    }
    assert_eq!(read_all(&p, 0).len(), 500);
    assert_eq!(p.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(p.offset_for_timestamp(1000).unwrap(), Some(0));
    assert_eq!(p.offset_for_timestamp(1001).unwrap(), Some(1));
    assert_eq!(p.offset_for_timestamp(3005).unwrap(), Some(201));
    assert_eq!(p.offset_for_timestamp(1000 + 499 * 10).unwrap(), Some(499));
    assert_eq!(p.offset_for_timestamp(1000 + 500 * 10).unwrap(), None);
    drop(log);
    let log = Log::open(
        dir.path(),
        LogOptions {
            index_interval_bytes: 256,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let p = log.topic("t").unwrap().partition(0).unwrap().clone();
    assert_eq!(p.offset_for_timestamp(3005).unwrap(), Some(201));
    assert_eq!(read_all(&p, 123).first().unwrap().0, 123);
}

#[test]
fn retention_by_size_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let cfg = TopicConfig {
        segment_bytes: 2048,
        retention_bytes: Some(8192),
        retention_ms: Some(1000),
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    let v = [1u8; 200];
    for i in 0..100 {
        p.append(&[Record {
            value: Some(&v),
            timestamp_ms: Some(i),
            ..Record::default()
        }])
        .unwrap();
    }
    // Retention only deletes sealed segments; under `never` the flusher seals rolled ones in
    // the background, `flush` at once.
    log.flush().unwrap();
    let before = p.size_bytes();
    let rep = log.enforce_retention_at(0).unwrap();
    assert!(rep.segments_deleted > 0);
    assert!(p.size_bytes() <= 8192 + 2048 && p.size_bytes() == before - rep.bytes_deleted);
    let start = p.log_start_offset();
    assert!(start > 0);
    assert!(matches!(
        p.read(0, 10),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&p, start).first().unwrap().0, start);
    // By age: everything but the active segment goes.
    log.enforce_retention_at(1_000_000).unwrap();
    assert_eq!(p.segment_count(), 1);
    assert_eq!(p.high_watermark(), 100);
    p.append(&[rec(b"x")]).unwrap();
    drop(log);
    let log = open(dir.path());
    let p = log.topic("t").unwrap().partition(0).unwrap().clone();
    assert_eq!(p.high_watermark(), 101);
    assert_eq!(p.log_start_offset(), start.max(p.log_start_offset()));
}

#[test]
fn listeners_wake_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    let cfg = TopicConfig {
        flush: FlushPolicy::Always,
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    let waiter = {
        let p = p.clone();
        std::thread::spawn(move || {
            let next = 0;
            loop {
                if p.high_watermark() > next {
                    return p.high_watermark();
                }
                let l = p.listen();
                if p.high_watermark() > next {
                    return p.high_watermark();
                }
                l.wait();
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    p.append(&[rec(b"x")]).unwrap();
    assert_eq!(waiter.join().unwrap(), 1);
}

#[test]
fn group_commit_under_always() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let cfg = TopicConfig {
        flush: FlushPolicy::Always,
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    std::thread::scope(|s| {
        for t in 0..8 {
            let p = &p;
            s.spawn(move || {
                for i in 0..20 {
                    p.append(&[rec(format!("{t}-{i}").as_bytes())]).unwrap();
                }
            });
        }
    });
    assert_eq!(p.high_watermark(), 160);
    assert_eq!(read_all(&p, 0).len(), 160);
}

#[test]
fn interval_flush_policy() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let cfg = TopicConfig {
        flush: "interval:5".parse().unwrap(),
        ..TopicConfig::default()
    };
    let p = partition0(&log, "t", cfg);
    p.append(&[rec(b"x")]).unwrap();
    // Visible at once; durable within the interval.
    assert_eq!(p.high_watermark(), 1);
    std::thread::sleep(std::time::Duration::from_millis(50));
    log.flush().unwrap();
}

/// Readers running beside the writer only ever see whole, valid batches below the high
/// watermark, under both kinds of publication.
#[test]
fn concurrent_readers_never_see_torn_batches() {
    for flush in [FlushPolicy::Never, FlushPolicy::Always] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let cfg = TopicConfig {
            flush,
            segment_bytes: 8192,
            ..TopicConfig::default()
        };
        let p = partition0(&log, "t", cfg);
        let total = if flush == FlushPolicy::Always {
            300
        } else {
            3000
        };
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for r in 0..2u64 {
                let (p, done) = (&p, &done);
                s.spawn(move || {
                    let mut seed = 0x1234_5678 + r;
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        let hw = p.high_watermark();
                        if hw == 0 {
                            continue;
                        }
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        let from = (seed >> 33) as i64 % hw;
                        let got = p.read(from, (seed % 3000) as usize).expect("read");
                        assert!(got.high_watermark >= hw);
                        let rows = records(&got.bytes);
                        assert!(rows.iter().any(|r| r.0 == from), "offset {from} missing");
                        for (o, _, v) in rows {
                            assert_eq!(v.unwrap(), format!("value {o}").into_bytes());
                        }
                    }
                });
            }
            for i in 0..total {
                p.append(&[rec(format!("value {i}").as_bytes())]).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        assert_eq!(read_all(&p, 0).len(), total);
    }
}

#[test]
fn unknown_format_version_and_bad_config_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.create_topic("t", TopicConfig::default()).unwrap();
        assert!(matches!(
            log.create_topic(
                "u",
                TopicConfig {
                    partitions: 0,
                    ..TopicConfig::default()
                }
            ),
            Err(TopicError::InvalidConfig(_))
        ));
    }
    let cfg = dir.path().join("topics/t/topic.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("format_version = 1"), "{text}");
    std::fs::write(
        &cfg,
        text.replace("format_version = 1", "format_version = 2"),
    )
    .unwrap();
    let err = Log::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            rill_log::OpenError::UnsupportedVersion { found: 2, .. }
        ),
        "{err}"
    );
    std::fs::write(&cfg, "this is not toml [").unwrap();
    let err = Log::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(
        matches!(err, rill_log::OpenError::BadTopicConfig { .. }),
        "{err}"
    );
}
