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

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use rill_log::{AppendError, AppendInfo, FlushPolicy, Partition, ProducerError};

use crate::server::Broker;
use crate::stats;
use crate::topics;
use crate::validation::{self, Refusal};

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
    /// Schema validation had to ask the registry, on the blocking pool; the append starts
    /// once it answers.
    Validating(
        tokio::task::JoinHandle<Result<(), Refusal>>,
        Arc<Partition>,
        Bytes,
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
    message: Option<Cow<'static, str>>,
    /// The records that made the batch invalid (Produce v8+ `record_errors`).
    record_errors: Vec<BatchIndexAndErrorMessage>,
}

/// The code for a registry that could not be asked: retriable, so producers try again, and
/// nothing was appended (Confluent documents no code for this; see `docs/kafka.md`).
const REGISTRY_UNAVAILABLE: ResponseError = ResponseError::RequestTimedOut;

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
        } else if broker.is_reserved(&name) {
            Err(ResponseError::InvalidTopicException)
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
                record_errors: Vec::new(),
            };
            let compacted = topic
                .as_ref()
                .is_ok_and(|t| t.config().cleanup_policy.compacts());
            let validating = topic
                .as_ref()
                .ok()
                .filter(|t| validation::validates(t.config()));
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
                                    slot.message = Some(Cow::Borrowed(NULL_KEY_MESSAGE));
                                    Err(ResponseError::InvalidRecord)
                                } else {
                                    Ok(())
                                }
                            });
                    match (checked, validating) {
                        (Err(e), _) => Pending::Done(Err(e)),
                        (Ok(()), None) => start_append(&slot, p, records),
                        (Ok(()), Some(t)) => match check_schemas(broker, t, &records, false) {
                            Ok(()) => start_append(&slot, p, records),
                            Err(Refusal::WouldBlock) => {
                                let (broker, t, bytes) =
                                    (broker.clone(), t.clone(), records.clone());
                                Pending::Validating(
                                    tokio::task::spawn_blocking(move || {
                                        check_schemas(&broker, &t, &bytes, true)
                                    }),
                                    p,
                                    records,
                                )
                            }
                            Err(r) => Pending::Done(Err(refused(&mut slot, r))),
                        },
                    }
                }
            };
            slots.push(slot);
        }
    }
    for mut slot in slots {
        let mut pending = std::mem::replace(
            &mut slot.pending,
            Pending::Done(Err(ResponseError::UnknownServerError)),
        );
        if let Pending::Validating(h, p, records) = pending {
            pending = match h.await {
                Ok(Ok(())) => start_append(&slot, p, records),
                Ok(Err(r)) => Pending::Done(Err(refused(&mut slot, r))),
                Err(_) => Pending::Done(Err(ResponseError::UnknownServerError)),
            };
        }
        let result = match pending {
            Pending::Done(r) => r,
            Pending::Blocking(h, len) => match h.await {
                Ok(Ok(info)) => Ok((info, len)),
                Ok(Err(e)) => Err(log_append_error(&slot.name, slot.index, &e)),
                Err(_) => Err(ResponseError::KafkaStorageError),
            },
            Pending::Validating(..) => Err(ResponseError::UnknownServerError),
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
                    let text = slot.message.unwrap_or(Cow::Borrowed(error_text(code)));
                    pr = pr
                        .with_error_message(Some(match text {
                            Cow::Borrowed(t) => StrBytes::from_static_str(t),
                            Cow::Owned(t) => StrBytes::from_string(t),
                        }))
                        .with_record_errors(slot.record_errors);
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
        ResponseError::InvalidTopicException => {
            "the topic belongs to the host and takes no records from clients"
        }
        ResponseError::OutOfOrderSequenceNumber => "out-of-order sequence number",
        ResponseError::InvalidProducerEpoch => "producer fenced by a newer epoch",
        ResponseError::InvalidTxnState => {
            "transactional batch for a partition not added to an open transaction"
        }
        _ => "produce failed",
    }
}

/// Asks the installed validator about a batch for a topic with schema validation on.
/// Compressed batches are checked decompressed; bytes that do not even decompress are
/// refused here, since they could not have been checked.
fn check_schemas(
    broker: &Broker,
    topic: &rill_log::Topic,
    records: &[u8],
    may_block: bool,
) -> Result<(), Refusal> {
    let Some(validator) = broker.validator() else {
        return Err(Refusal::Unavailable(format!(
            "topic '{}' validates records against schemas, but this host has no schema \
             registry to check them with",
            topic.name()
        )));
    };
    let plain = crate::compression::decompress_batches(records).map_err(|e| Refusal::Invalid {
        index: 0,
        message: format!("the batch could not be decompressed to check its schemas: {e}"),
    })?;
    validator.check_batches(topic.name(), topic.config(), &plain, may_block)
}

/// The code and message of a refusal by schema validation, kept in `slot`.
fn refused(slot: &mut Slot, r: Refusal) -> ResponseError {
    match r {
        Refusal::Invalid { index, message } => {
            tracing::debug!(topic = %slot.name, partition = slot.index, "refused batch: {message}");
            slot.record_errors = vec![
                BatchIndexAndErrorMessage::default()
                    .with_batch_index(i32::try_from(index).unwrap_or(i32::MAX))
                    .with_batch_index_error_message(Some(StrBytes::from_string(message.clone()))),
            ];
            slot.message = Some(Cow::Owned(message));
            ResponseError::InvalidRecord
        }
        other => {
            let message = other.to_string();
            tracing::warn!(topic = %slot.name, partition = slot.index, "schema check failed: {message}");
            slot.message = Some(Cow::Owned(message));
            REGISTRY_UNAVAILABLE
        }
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
