//! Topic administration the Kafka door exposes: growing a topic's partition count and the
//! per-topic `max_message_bytes` limit.

use rill_log::{AppendError, DEFAULT_MAX_MESSAGE_BYTES, TopicConfig, TopicError};

use crate::common::{open, read_all, rec};

#[test]
fn create_partitions_grows_durably_and_never_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    {
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
        t.partition(1).unwrap().append(&[rec(b"old")]).unwrap();
        for n in [1, 2] {
            assert!(matches!(
                log.create_partitions("t", n),
                Err(TopicError::InvalidPartitions {
                    current: 2,
                    requested
                }) if requested == n
            ));
        }
        assert!(matches!(
            log.create_partitions("nope", 3),
            Err(TopicError::NotFound(_))
        ));
        let grown = log.create_partitions("t", 5).unwrap();
        assert_eq!(grown.partitions().len(), 5);
        assert_eq!(grown.config().partitions, 5);
        // The handle taken before keeps its partitions; a fresh lookup sees the new ones.
        assert_eq!(t.partitions().len(), 2);
        assert_eq!(log.topic("t").unwrap().partitions().len(), 5);
        grown.partition(4).unwrap().append(&[rec(b"new")]).unwrap();
        // Old partitions are the same objects: their data is still there.
        assert_eq!(read_all(grown.partition(1).unwrap(), 0).len(), 1);
    }
    let log = open(dir.path());
    let t = log.topic("t").unwrap();
    assert_eq!(t.partitions().len(), 5);
    assert_eq!(read_all(t.partition(1).unwrap(), 0).len(), 1);
    assert_eq!(
        read_all(t.partition(4).unwrap(), 0)[0].2.as_deref(),
        Some(&b"new"[..])
    );
}

#[test]
fn max_message_bytes_refuses_large_batches_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("d", TopicConfig::default()).unwrap();
    assert_eq!(t.config().max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
    let p = t.partition(0).unwrap();
    let big = vec![7u8; 2 << 20];
    match p.append(&[rec(&big)]) {
        Err(AppendError::MessageTooLarge { size, max }) => {
            assert!(size > 2 << 20);
            assert_eq!(max, DEFAULT_MAX_MESSAGE_BYTES);
        }
        other => panic!("{other:?}"),
    }
    // Many small records together may exceed it: each one alone fits.
    let small = vec![1u8; 100 << 10];
    let many: Vec<_> = (0..20).map(|_| rec(&small)).collect();
    p.append(&many).unwrap();

    // A raw producer batch is checked whole.
    let mut raw = rill_log::batch::encode(&many, 0);
    assert!(matches!(
        p.append_batch(&mut raw),
        Err(AppendError::MessageTooLarge { .. })
    ));
    assert_eq!(
        p.high_watermark(),
        20,
        "nothing of a refused batch is stored"
    );

    // A topic can raise it, and the setting survives a reopen.
    let cfg = TopicConfig {
        max_message_bytes: 4 << 20,
        ..TopicConfig::default()
    };
    log.create_topic("big", cfg).unwrap();
    log.topic("big")
        .unwrap()
        .partition(0)
        .unwrap()
        .append(&[rec(&big)])
        .unwrap();
    log.topic("big")
        .unwrap()
        .partition(0)
        .unwrap()
        .append_batch(&mut raw)
        .unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(
        log.topic("big").unwrap().config().max_message_bytes,
        4 << 20
    );
}
