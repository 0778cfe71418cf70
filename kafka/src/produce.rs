//! Produce (0) and InitProducerId (22).
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;
use rill_log::{AppendError, AppendInfo, FlushPolicy, Partition};

use crate::server::Broker;
use crate::stats;
use crate::topics;

/// Bound on remembered (producer, partition) sequence states; past it the table is cleared,
/// which only means the next batch of each producer is accepted without a sequence check.
const MAX_SEQUENCE_STATES: usize = 100_000;

/// Producer ids handed out by InitProducerId, and the last batch seen per producer and
/// partition, to drop retried duplicates of idempotent producers.
#[derive(Debug)]
pub(crate) struct Producers {
    next_id: AtomicI64,
    seqs: Mutex<HashMap<(i64, String, u32), SeqState>>,
}

#[derive(Debug, Clone, Copy)]
struct SeqState {
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

impl Producers {
    pub(crate) fn new() -> Self {
        // Start from the clock so ids from before a restart are not handed out again:
        // sequence state is not persisted, and a reused id would look like a restarted
        // producer's.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as i64);
        Producers {
            next_id: AtomicI64::new(now_ms.saturating_mul(1000)),
            seqs: Mutex::new(HashMap::new()),
        }
    }
}

/// The idempotence header fields of a v2 batch: producer id, epoch, base sequence, records.
fn idempotence_fields(batch: &[u8]) -> Option<(i64, i16, i32, i32)> {
    let h = batch.get(..61)?;
    let pid = i64::from_be_bytes(h[43..51].try_into().ok()?);
    let epoch = i16::from_be_bytes(h[51..53].try_into().ok()?);
    let seq = i32::from_be_bytes(h[53..57].try_into().ok()?);
    let count = i32::from_be_bytes(h[57..61].try_into().ok()?);
    Some((pid, epoch, seq, count))
}

/// What to do with a batch from an idempotent producer.
enum SeqCheck {
    /// Not idempotent, or in sequence: append it.
    Append(Option<(i64, i16, i32, i32)>),
    /// A retry of the last batch: answer with its original offset and append nothing.
    Duplicate(i64),
    /// A sequence gap or a fenced epoch.
    Reject(ResponseError),
}

fn check_sequence(broker: &Broker, topic: &str, partition: u32, records: &[u8]) -> SeqCheck {
    let Some(f @ (pid, epoch, seq, _)) = idempotence_fields(records) else {
        return SeqCheck::Append(None);
    };
    if pid < 0 || seq < 0 {
        return SeqCheck::Append(None);
    }
    let seqs = broker
        .producers
        .seqs
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let Some(s) = seqs.get(&(pid, topic.to_string(), partition)) else {
        return SeqCheck::Append(Some(f));
    };
    if epoch < s.epoch {
        return SeqCheck::Reject(ResponseError::InvalidProducerEpoch);
    }
    if epoch > s.epoch {
        return SeqCheck::Append(Some(f));
    }
    if seq == s.first_seq {
        return SeqCheck::Duplicate(s.base_offset);
    }
    let expected = if s.last_seq == i32::MAX {
        0
    } else {
        s.last_seq + 1
    };
    if seq == expected {
        SeqCheck::Append(Some(f))
    } else {
        SeqCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
    }
}

fn remember_sequence(
    broker: &Broker,
    topic: &str,
    partition: u32,
    f: (i64, i16, i32, i32),
    base_offset: i64,
) {
    let (pid, epoch, seq, count) = f;
    let last_seq = ((i64::from(seq) + i64::from(count) - 1) % (i64::from(i32::MAX) + 1)) as i32;
    let mut seqs = broker
        .producers
        .seqs
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if seqs.len() >= MAX_SEQUENCE_STATES {
        seqs.clear();
    }
    seqs.insert(
        (pid, topic.to_string(), partition),
        SeqState {
            epoch,
            first_seq: seq,
            last_seq,
            base_offset,
        },
    );
}

fn append_error_code(e: &AppendError) -> ResponseError {
    match e {
        AppendError::InvalidBatch(_) | AppendError::Empty => ResponseError::CorruptMessage,
        AppendError::TooLarge { .. } | AppendError::MessageTooLarge { .. } => {
            ResponseError::MessageTooLarge
        }
        AppendError::Closed => ResponseError::NotLeaderOrFollower,
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
    seq: Option<(i64, i16, i32, i32)>,
    pending: Pending,
}

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
        let topic = if req.transactional_id.is_some() {
            // Transactions are not implemented; say so instead of storing records whose
            // commit markers would never come.
            Err(ResponseError::TransactionalIdAuthorizationFailed)
        } else if !matches!(acks, -1..=1) {
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
                seq: None,
                pending: Pending::Done(Err(ResponseError::UnknownTopicOrPartition)),
            };
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
                    start_append(broker, &mut slot, p, records)
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
                    if let Some(f) = slot.seq {
                        remember_sequence(
                            broker,
                            &slot.name,
                            slot.index as u32,
                            f,
                            info.base_offset,
                        );
                    }
                }
                pr = pr.with_base_offset(info.base_offset);
                if let Some(p) = &slot.partition {
                    pr = pr.with_log_start_offset(p.log_start_offset());
                }
            }
            Err(code) => {
                broker.stats.count_error(code.code());
                pr = pr.with_error_code(code.code()).with_base_offset(-1);
                if version >= 8 {
                    pr = pr.with_error_message(Some(StrBytes::from_static_str(error_text(code))));
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
        ResponseError::TransactionalIdAuthorizationFailed => crate::groups::api::TXN_UNSUPPORTED,
        _ => "produce failed",
    }
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

/// Checks sequences and starts the append: inline for page-cache appends (a memcpy and a
/// write), on the blocking pool under flush `always`, where the append waits for fsync.
fn start_append(broker: &Broker, slot: &mut Slot, p: Arc<Partition>, records: Bytes) -> Pending {
    let seq = match check_sequence(broker, &slot.name, slot.index as u32, &records) {
        SeqCheck::Append(f) => f,
        SeqCheck::Duplicate(base_offset) => {
            let info = AppendInfo {
                base_offset,
                last_offset: base_offset,
                log_append_time_ms: -1,
            };
            return Pending::Done(Ok((info, 0)));
        }
        SeqCheck::Reject(e) => return Pending::Done(Err(e)),
    };
    slot.seq = seq;
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

/// InitProducerId: hands out a producer id (and bumps the epoch when a producer asks to be
/// re-initialised). Transactional ids are refused: Rill has no transactions.
pub(crate) fn init_producer_id(
    broker: &Broker,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default();
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        let code = ResponseError::TransactionalIdAuthorizationFailed.code();
        broker.stats.count_error(code);
        return resp
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let (pid, epoch) =
        if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
            (req.producer_id.0, req.producer_epoch + 1)
        } else {
            (broker.producers.next_id.fetch_add(1, Ordering::Relaxed), 0)
        };
    resp.with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
}
