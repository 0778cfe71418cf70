//! Helpers shared by the test modules.

use std::sync::Arc;

use rill_log::{Log, LogOptions, Partition, Record, RecordBatch, TopicConfig, batches};

/// One record read back: offset, key, value.
pub type Row = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Opens `dir` with default options.
pub fn open(dir: &std::path::Path) -> Log {
    Log::open(dir, LogOptions::default()).expect("open")
}

/// A record with this value and no key.
pub fn rec(v: &[u8]) -> Record<'_> {
    Record {
        value: Some(v),
        ..Record::default()
    }
}

/// Every (offset, key, value) in `bytes`, checking each batch.
pub fn records(bytes: &[u8]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches(bytes) {
        let b: RecordBatch<'_> = b.expect("batch parses");
        assert!(b.crc_ok(), "served batch must pass its CRC");
        for r in b.records() {
            let r = r.expect("record parses");
            out.push((
                r.offset,
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

/// Reads a partition from `from` to its high watermark.
pub fn read_all(p: &rill_log::Partition, from: i64) -> Vec<Row> {
    let mut out = Vec::new();
    let mut next = from;
    while next < p.high_watermark() {
        let r = p.read(next, 64 * 1024).expect("read");
        assert!(!r.bytes.is_empty());
        out.extend(records(&r.bytes).into_iter().filter(|(o, _, _)| *o >= next));
        next = r.next_offset;
    }
    out
}

/// The `.log` files of partition `part` of `topic`, in base-offset order.
pub fn segment_logs(data: &std::path::Path, topic: &str, part: u32) -> Vec<std::path::PathBuf> {
    let dir = data.join("topics").join(topic).join(part.to_string());
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

/// Base offset of a segment file.
pub fn base_of(path: &std::path::Path) -> i64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Options that keep the background flusher from rewriting the checkpoint on its own, so a
/// test decides when it is written (`Log::flush`, `Log::close`).
pub fn quiet_opts() -> LogOptions {
    LogOptions {
        checkpoint_interval_ms: 3_600_000,
        recovery_scan_budget_bytes: u64::MAX,
        ..LogOptions::default()
    }
}

/// Byte positions where the batches of a segment file start, plus its end.
pub fn batch_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0usize];
    for b in batches(bytes) {
        starts.push(starts.last().unwrap() + b.unwrap().as_bytes().len());
    }
    starts
}

/// Creates topic `name` with `cfg` and returns its partition 0.
pub fn partition0(log: &Log, name: &str, cfg: TopicConfig) -> Arc<Partition> {
    log.create_topic(name, cfg)
        .expect("create topic")
        .partition(0)
        .expect("partition 0")
        .clone()
}
