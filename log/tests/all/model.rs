//! Model-based property test: random appends, reads, rolls, retention and restarts must
//! agree with an in-memory Vec.

use proptest::prelude::*;
use rill_log::{FlushPolicy, Log, LogOptions, Record, RecoveryAction, TopicConfig};

use crate::common::records;

#[derive(Debug, Clone)]
enum Op {
    /// Append a batch of records: (key len or null, value len or null).
    Append(Vec<(Option<usize>, Option<usize>)>),
    /// Read from a fraction of the way between log start and high watermark.
    Read { at: f64, max_bytes: usize },
    /// Delete segments beyond the size limit, and those older than `now` by age.
    Retention { now: i64 },
    /// Close cleanly (or crash) and reopen.
    Reopen { clean: bool },
    /// Look up a timestamp.
    Timestamp(f64),
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![
        Just(None),
        (0usize..40).prop_map(Some),
        (0usize..600).prop_map(Some)
    ];
    prop_oneof![
        6 => proptest::collection::vec((len.clone(), len), 1..6).prop_map(Op::Append),
        4 => (0.0..=1.0f64, prop_oneof![Just(0usize), 1usize..200, 200usize..5000]).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => (0i64..3000).prop_map(|now| Op::Retention { now }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (0.0..=1.0f64).prop_map(Op::Timestamp),
    ]
}

/// One model row: offset, key, value, timestamp.
type Row = (i64, Option<Vec<u8>>, Option<Vec<u8>>, i64);

fn bytes(len: Option<usize>, seed: i64) -> Option<Vec<u8>> {
    len.map(|n| (0..n).map(|i| (seed as usize + i) as u8).collect())
}

fn run(ops: Vec<Op>, flush: FlushPolicy) {
    let dir = tempfile::tempdir().unwrap();
    // A small scan budget and checkpoint interval, so restarts exercise recovery from a
    // checkpoint as well as from scratch.
    let opts = || LogOptions {
        index_interval_bytes: 200,
        checkpoint_interval_ms: 20,
        recovery_scan_budget_bytes: 4096,
        ..LogOptions::default()
    };
    let cfg = TopicConfig {
        flush,
        segment_bytes: 2048,
        retention_bytes: Some(6000),
        retention_ms: Some(1000),
        ..TopicConfig::default()
    };
    let mut log = Some(Log::open(dir.path(), opts()).unwrap());
    log.as_ref().unwrap().create_topic("m", cfg).unwrap();
    let mut model: Vec<Row> = Vec::new();
    let mut start = 0i64;
    for op in ops {
        let l = log.as_ref().unwrap();
        let p = l.topic("m").unwrap().partition(0).unwrap().clone();
        let hw = model.len() as i64;
        assert_eq!(p.high_watermark(), hw);
        assert_eq!(p.log_start_offset(), start);
        match op {
            Op::Append(spec) => {
                let ts = hw * 10;
                let data: Vec<_> = spec
                    .iter()
                    .enumerate()
                    .map(|(i, (k, v))| (bytes(*k, hw + i as i64), bytes(*v, hw * 7 + i as i64)))
                    .collect();
                let recs: Vec<Record<'_>> = data
                    .iter()
                    .map(|(k, v)| Record {
                        key: k.as_deref(),
                        value: v.as_deref(),
                        headers: &[],
                        timestamp_ms: Some(ts),
                    })
                    .collect();
                let info = p.append(&recs).unwrap();
                assert_eq!(info.base_offset, hw);
                for (k, v) in data {
                    model.push((model.len() as i64, k, v, ts));
                }
            }
            Op::Read { at, max_bytes } => {
                let from = start + ((hw - start) as f64 * at) as i64;
                let r = p.read(from, max_bytes).unwrap();
                let got: Vec<_> = records(&r.bytes)
                    .into_iter()
                    .filter(|(o, _, _)| *o >= from)
                    .collect();
                if from < hw {
                    assert!(
                        !got.is_empty(),
                        "a read below the high watermark returns at least one record"
                    );
                }
                for (o, k, v) in &got {
                    let m = &model[*o as usize];
                    assert_eq!((&m.1, &m.2), (k, v), "offset {o}");
                }
                let offsets: Vec<i64> = got.iter().map(|r| r.0).collect();
                assert_eq!(offsets, (from..from + got.len() as i64).collect::<Vec<_>>());
                assert_eq!(r.next_offset, from + got.len() as i64);
            }
            Op::Retention { now } => {
                l.enforce_retention_at(now).unwrap();
                let new_start = p.log_start_offset();
                assert!(new_start >= start && new_start <= hw);
                // Only whole sealed segments go: what is left still reads (checked by later ops).
                start = new_start;
            }
            Op::Reopen { clean } => {
                drop(p);
                let l = log.take().unwrap();
                if clean {
                    l.close().unwrap();
                    drop(l);
                } else {
                    l.simulate_crash();
                }
                let l = Log::open(dir.path(), opts()).unwrap();
                // A crash may leave rolled segments unsealed (they are validated), never torn.
                let truncated = l
                    .recovery_report()
                    .iter()
                    .any(|e| matches!(e.action, RecoveryAction::Truncated { .. }));
                assert!(
                    !truncated && (!clean || l.recovery_report().is_empty()),
                    "{:?}",
                    l.recovery_report()
                );
                log = Some(l);
            }
            Op::Timestamp(f) => {
                let ts = (hw as f64 * 10.0 * f) as i64;
                let want = model[start as usize..]
                    .iter()
                    .find(|r| r.3 >= ts)
                    .map(|r| r.0);
                assert_eq!(p.offset_for_timestamp(ts).unwrap(), want, "ts {ts}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, FlushPolicy::Never);
    }

    #[test]
    fn log_matches_model_under_always(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops, FlushPolicy::Always);
    }
}
