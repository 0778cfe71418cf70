//! Produce (0).
//!
//! Batches are stored exactly as the producer sent them, whatever their codec; the log
//! assigns offsets by overwriting each batch's baseOffset (not covered by the CRC).
//!
//! acks and durability: Rill is a single node, so "all in-sync replicas" (acks=-1) and "the
//! leader" (acks=1) are the same replica, and both are answered once the append returns.
//! What the append waits for is the topic's flush policy: under `always` it returns after
//! the group-commit fdatasync, so an acknowledged record survives an OS crash; under
//! `interval:N` and `never` it returns once the bytes are in the page cache and visible to
//! readers. acks=0 appends the same way but sends no response, as Kafka does.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use rill_log::{AppendError, AppendInfo, FlushPolicy, Partition, ProducerError};

use crate::server::Broker;
use crate::stats;
use crate::topics;

fn append_error_code(e: &AppendError) -> ResponseError {
    match e {
        AppendError::InvalidBatch(_) | AppendError::Empty => ResponseError::CorruptMessage,
        AppendError::TooLarge { .. } | AppendError::MessageTooLarge { .. } => {
            ResponseError::MessageTooLarge
        }
        AppendError::Closed => ResponseError::NotLeaderOrFollower,
        AppendError::NullKeyInCompactedTopic => ResponseError::InvalidRecord,
        AppendError::Producer(ProducerError::Fenced { .. }) => ResponseError::InvalidProducerEpoch,
        AppendError::Producer(_) => ResponseError::OutOfOrderSequenceNumber,
        _ => ResponseError::KafkaStorageError,
    }
}

/// One partition's append, possibly still running on the blocking pool.
enum Pending {
    Done(Result<(AppendInfo, usize), ResponseError>),
    Blocking(
        tokio::task::JoinHandle<Result<AppendInfo, AppendError>>,
        usize,
    ),
}

struct Slot {
    topic: usize,
    index: i32,
    name: String,
    partition: Option<Arc<Partition>>,
    flush: FlushPolicy,
    pending: Pending,
    /// The error message, when more precise than the code's.
    message: Option<&'static str>,
}

/// Kafka's message for a record without a key sent to a compacted topic.
const NULL_KEY_MESSAGE: &str = "Compacted topic cannot accept message without key";

/// Produce: appends every partition's batches and answers per partition (or not at all for
/// acks=0).
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    req: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    let mut topics_out = Vec::with_capacity(req.topic_data.len());
    let mut slots: Vec<Slot> = Vec::new();
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        let name = td.name.0.as_str().to_string();
        topics_out.push(TopicProduceResponse::default().with_name(td.name.clone()));
        let transactional = req.transactional_id.as_ref().is_some_and(|t| !t.is_empty());
        let topic = if !matches!(acks, -1..=1) {
            Err(ResponseError::InvalidRequiredAcks)
        } else {
            topics::get_or_create(broker, &name, true)
        };
        for pd in td.partition_data {
            let mut slot = Slot {
                topic: ti,
                index: pd.index,
                name: name.clone(),
                partition: None,
                flush: topic
                    .as_ref()
                    .map_or(FlushPolicy::Never, |t| t.config().flush),
                pending: Pending::Done(Err(ResponseError::UnknownTopicOrPartition)),
                message: None,
            };
            let compacted = topic
                .as_ref()
                .is_ok_and(|t| t.config().cleanup_policy.compacts());
            let part = match &topic {
                Ok(t) => topics::partition(t, pd.index)
                    .cloned()
                    .ok_or(ResponseError::UnknownTopicOrPartition),
                Err(e) => Err(*e),
            };
            slot.pending = match (part, pd.records) {
                (Err(e), _) => Pending::Done(Err(e)),
                (Ok(_), None) => Pending::Done(Err(ResponseError::CorruptMessage)),
                (Ok(p), Some(records)) => {
                    slot.partition = Some(p.clone());
                    let checked =
                        check_transactional(broker, transactional, &name, pd.index, &records)
                            .and_then(|()| {
                                if compacted && has_null_key(&records) {
                                    slot.message = Some(NULL_KEY_MESSAGE);
                                    Err(ResponseError::InvalidRecord)
                                } else {
                                    Ok(())
                                }
                            });
                    match checked {
                        Ok(()) => start_append(&slot, p, records),
                        Err(e) => Pending::Done(Err(e)),
                    }
                }
            };
            slots.push(slot);
        }
    }
    for slot in slots {
        let result = match slot.pending {
            Pending::Done(r) => r,
            Pending::Blocking(h, len) => match h.await {
                Ok(Ok(info)) => Ok((info, len)),
                Ok(Err(e)) => Err(log_append_error(&slot.name, slot.index, &e)),
                Err(_) => Err(ResponseError::KafkaStorageError),
            },
        };
        let mut pr = PartitionProduceResponse::default().with_index(slot.index);
        match result {
            Ok((info, len)) => {
                if len > 0 {
                    stats::add(
                        &broker.stats.produce_records,
                        (info.last_offset - info.base_offset + 1) as u64,
                    );
                    stats::add(&broker.stats.produce_bytes, len as u64);
                }
                pr = pr.with_base_offset(info.base_offset);
                if let Some(p) = &slot.partition {
                    pr = pr.with_log_start_offset(p.log_start_offset());
                }
            }
            Err(mut code) => {
                // Kafka answers INVALID_RECORD from Produce v8 (KIP-467), CORRUPT_MESSAGE
                // before.
                if code == ResponseError::InvalidRecord && slot.message.is_some() && version < 8 {
                    code = ResponseError::CorruptMessage;
                }
                broker.stats.count_error(code.code());
                pr = pr.with_error_code(code.code()).with_base_offset(-1);
                if version >= 8 {
                    let text = slot.message.unwrap_or_else(|| error_text(code));
                    pr = pr.with_error_message(Some(StrBytes::from_static_str(text)));
                }
            }
        }
        topics_out[slot.topic].partition_responses.push(pr);
    }
    if acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(topics_out))
}

fn error_text(code: ResponseError) -> &'static str {
    match code {
        ResponseError::CorruptMessage => "invalid record batch",
        ResponseError::MessageTooLarge => "record batch larger than the topic's max.message.bytes",
        ResponseError::UnknownTopicOrPartition => "unknown topic or partition",
        ResponseError::OutOfOrderSequenceNumber => "out-of-order sequence number",
        ResponseError::InvalidProducerEpoch => "producer fenced by a newer epoch",
        ResponseError::InvalidTxnState => {
            "transactional batch for a partition not added to an open transaction"
        }
        _ => "produce failed",
    }
}

/// Whether any data record in `records` has a null key, decompressing compressed batches
/// (the log can only check uncompressed ones). Undecodable bytes are left to the log's
/// validation.
fn has_null_key(records: &[u8]) -> bool {
    let Ok(plain) = crate::compression::decompress_batches(records) else {
        return false;
    };
    rill_log::batches(&plain).any(|b| {
        b.is_ok_and(|b| !b.is_control() && b.records().any(|r| r.is_ok_and(|r| r.key.is_none())))
    })
}

fn log_append_error(topic: &str, partition: i32, e: &AppendError) -> ResponseError {
    let code = append_error_code(e);
    // The client's doing, not the broker's: no warning per refused batch.
    if matches!(
        code,
        ResponseError::CorruptMessage | ResponseError::MessageTooLarge
    ) {
        tracing::debug!(topic, partition, "rejected batch: {e}");
    } else {
        tracing::warn!(topic, partition, "append failed: {e}");
    }
    code
}

/// A transactional request's batches may only go to partitions added to the producer's
/// open transaction (Kafka verifies this too, KIP-890); a non-transactional request may not
/// carry transactional batches. Sequences are the log's to check.
fn check_transactional(
    broker: &Broker,
    transactional: bool,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> Result<(), ResponseError> {
    let Ok((b, _)) = rill_log::RecordBatch::parse(records) else {
        return Ok(());
    };
    if b.is_transactional() != transactional {
        return Err(ResponseError::InvalidRecord);
    }
    if !transactional {
        return Ok(());
    }
    let partition = u32::try_from(partition).unwrap_or(u32::MAX);
    broker
        .log
        .verify_txn_partition(b.producer_id(), b.producer_epoch(), topic, partition)
        .map_err(|e| match e {
            rill_log::TxnError::ProducerFenced(_) => ResponseError::InvalidProducerEpoch,
            rill_log::TxnError::InvalidProducerIdMapping { .. } => {
                ResponseError::InvalidProducerIdMapping
            }
            _ => ResponseError::InvalidTxnState,
        })
}

/// Starts the append: inline for page-cache appends (a memcpy and a write), on the blocking
/// pool under flush `always`, where the append waits for fsync. Idempotence (a retried batch
/// answered with its first offsets, a gap or a fenced epoch refused) is the log's.
fn start_append(slot: &Slot, p: Arc<Partition>, records: Bytes) -> Pending {
    // The log writes the offsets into the batch, so it needs a mutable copy of the bytes,
    // which share the request frame's buffer.
    let mut buf = records.to_vec();
    crate::compression::fix_compressed_max_timestamps(&mut buf);
    let len = buf.len();
    if slot.flush == FlushPolicy::Always {
        Pending::Blocking(
            tokio::task::spawn_blocking(move || p.append_batches(&mut buf)),
            len,
        )
    } else {
        Pending::Done(
            p.append_batches(&mut buf)
                .map(|i| (i, len))
                .map_err(|e| log_append_error(&slot.name, slot.index, &e)),
        )
    }
}
