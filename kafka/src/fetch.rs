//! Fetch (1): stored batches served as bytes, with long polling.
//!
//! The bytes the log returns are whole, CRC-checked v2 batches exactly as stored (compressed
//! ones stay compressed); they are copied into the response frame, never re-encoded. The
//! first batch may start before the requested offset; clients skip those records, as they do
//! with Kafka.
//!
//! Waiting: if fewer than `min_bytes` are available, the fetch waits on every partition's
//! high-watermark listener and re-reads as soon as any of them advances, until `min_bytes`
//! are there or `max_wait_ms` passes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use event_listener::EventListener;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use rill_log::{AbortedTxn, Partition, ReadError, ReadResult};
use tokio::time::Instant;

use crate::server::Broker;
use crate::stats;
use crate::topics;

/// Longest wait honoured, whatever the client asks for.
const MAX_WAIT: Duration = Duration::from_secs(60);

struct Target {
    topic: usize,
    index: i32,
    partition: Result<Arc<Partition>, ResponseError>,
    offset: i64,
    max_bytes: usize,
}

/// What one partition read produced.
struct Outcome {
    error: Option<ResponseError>,
    records: Bytes,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    /// read_committed only: the aborted transactions of the records returned.
    aborted: Option<Vec<AbortedTxn>>,
}

fn read_error_code(e: &ReadError) -> ResponseError {
    match e {
        ReadError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        ReadError::Corrupt { .. } => ResponseError::CorruptMessage,
        _ => ResponseError::KafkaStorageError,
    }
}

/// Reads every target within the response budget. Returns the outcomes, the bytes read and
/// whether any partition has an error (which, as in Kafka, answers at once).
fn read_all(targets: &[Target], max_bytes: usize, committed: bool) -> (Vec<Outcome>, usize, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let outcomes = targets
        .iter()
        .map(|t| {
            let p = match &t.partition {
                Ok(p) => p,
                Err(e) => {
                    errors = true;
                    return Outcome {
                        error: Some(*e),
                        records: Bytes::new(),
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        aborted: None,
                    };
                }
            };
            let budget = max_bytes.saturating_sub(total).min(t.max_bytes);
            let mut out = Outcome {
                error: None,
                records: Bytes::new(),
                last_stable_offset: p.last_stable_offset(),
                high_watermark: p.high_watermark(),
                log_start_offset: p.log_start_offset(),
                aborted: committed.then(Vec::new),
            };
            let end = if committed {
                out.last_stable_offset
            } else {
                out.high_watermark
            };
            if budget == 0 || t.offset == end {
                return out;
            }
            match read(p, t.offset, budget, committed) {
                Ok(r) => {
                    if committed {
                        out.aborted = Some(p.aborted_transactions(t.offset, r.next_offset));
                    }
                    out.high_watermark = r.high_watermark;
                    out.log_start_offset = r.log_start_offset;
                    // The log returns at least one batch even if it is larger than the
                    // budget, so that a big batch can always be consumed; like Kafka we only
                    // allow that for the first partition with data in the response.
                    if r.bytes.len() <= budget || total == 0 {
                        total += r.bytes.len();
                        out.records = r.bytes;
                    }
                }
                Err(e) => {
                    errors = true;
                    if !matches!(e, ReadError::OffsetOutOfRange { .. }) {
                        tracing::warn!(
                            topic = p.topic(),
                            partition = p.id(),
                            "fetch read failed: {e}"
                        );
                    }
                    out.error = Some(read_error_code(&e));
                }
            }
            out
        })
        .collect();
    (outcomes, total, errors)
}

/// Whole batches from `offset`: below the last stable offset for a read_committed reader.
fn read(
    p: &Partition,
    offset: i64,
    budget: usize,
    committed: bool,
) -> Result<ReadResult, ReadError> {
    if committed {
        p.read_committed(offset, budget)
    } else {
        p.read(offset, budget)
    }
}

/// Resolves once any listener fires.
async fn any_of(mut listeners: Vec<EventListener>) {
    std::future::poll_fn(|cx| {
        for l in listeners.iter_mut() {
            if Pin::new(l).poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Fetch: reads each requested partition, waiting for data as the request allows.
pub(crate) async fn handle(broker: &Arc<Broker>, req: FetchRequest, version: i16) -> FetchResponse {
    let _ = version;
    let mut topics_out = Vec::with_capacity(req.topics.len());
    let mut targets = Vec::new();
    for (ti, ft) in req.topics.iter().enumerate() {
        topics_out.push(FetchableTopicResponse::default().with_topic(ft.topic.clone()));
        let topic = broker
            .log
            .topic(ft.topic.0.as_str())
            .ok_or(ResponseError::UnknownTopicOrPartition);
        for fp in &ft.partitions {
            let partition = match &topic {
                Ok(t) => topics::partition(t, fp.partition)
                    .cloned()
                    .ok_or(ResponseError::UnknownTopicOrPartition),
                Err(e) => Err(*e),
            };
            targets.push(Target {
                topic: ti,
                index: fp.partition,
                partition,
                offset: fp.fetch_offset,
                max_bytes: usize::try_from(fp.partition_max_bytes).unwrap_or(0),
            });
        }
    }
    // max_bytes <= 0 would starve the client; treat it as "no response limit" like v0-2.
    let max_bytes = usize::try_from(req.max_bytes)
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or(usize::MAX);
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    // READ_COMMITTED (1): only below the last stable offset, with the aborted transactions.
    let committed = req.isolation_level == 1;

    let outcomes = loop {
        // Listen before reading, so an append between the read and the wait still wakes us.
        let listeners: Vec<EventListener> = targets
            .iter()
            .filter_map(|t| t.partition.as_ref().ok().map(|p| p.listen()))
            .collect();
        let (outcomes, total, errors) = read_all(&targets, max_bytes, committed);
        if total >= min_bytes || errors || listeners.is_empty() || Instant::now() >= deadline {
            break outcomes;
        }
        tokio::select! {
            () = any_of(listeners) => {}
            () = tokio::time::sleep_until(deadline) => {
                break read_all(&targets, max_bytes, committed).0;
            }
        }
    };

    for (t, o) in targets.iter().zip(outcomes) {
        let mut pd = PartitionData::default()
            .with_partition_index(t.index)
            .with_high_watermark(o.high_watermark)
            .with_last_stable_offset(o.last_stable_offset)
            .with_log_start_offset(o.log_start_offset)
            .with_aborted_transactions(o.aborted.map(|list| {
                list.into_iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect()
            }));
        if let Some(e) = o.error {
            broker.stats.count_error(e.code());
            pd = pd.with_error_code(e.code());
        }
        stats::add(&broker.stats.fetch_bytes, o.records.len() as u64);
        pd = pd.with_records(Some(o.records));
        topics_out[t.topic].partitions.push(pd);
    }
    FetchResponse::default().with_responses(topics_out)
}
