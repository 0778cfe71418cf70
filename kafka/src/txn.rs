//! Transactions on the Kafka door: InitProducerId (22), AddPartitionsToTxn (24),
//! AddOffsetsToTxn (25), EndTxn (26) and TxnOffsetCommit (28). The coordinator is the log's
//! (`rill_log::Log::init_producer_id` and the rest); this module translates the wire
//! messages and maps its errors to Kafka's codes.
//!
//! One entry point, [`handle`], so the connection's dispatch needs a single arm for them.
//! Calls that may write markers (InitProducerId aborting a previous instance's
//! transaction, EndTxn) run on the blocking pool: under flush `always` a marker waits for
//! its fsync.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use rill_log::TxnError;

use crate::conn::encode;
use crate::error::ConnError;
use crate::server::Broker;
use crate::stats::api_name;

/// Whether `key` is one of the APIs of this module.
pub(crate) fn serves(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::InitProducerId
            | ApiKey::AddPartitionsToTxn
            | ApiKey::AddOffsetsToTxn
            | ApiKey::EndTxn
            | ApiKey::TxnOffsetCommit
    )
}

/// Decodes the body of a request of this module without running it.
pub(crate) fn decode_only(key: ApiKey, version: i16, mut body: Bytes) -> Result<(), String> {
    let r = match key {
        ApiKey::InitProducerId => InitProducerIdRequest::decode(&mut body, version).map(drop),
        ApiKey::AddPartitionsToTxn => {
            AddPartitionsToTxnRequest::decode(&mut body, version).map(drop)
        }
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::decode(&mut body, version).map(drop),
        ApiKey::EndTxn => EndTxnRequest::decode(&mut body, version).map(drop),
        ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::decode(&mut body, version).map(drop),
        _ => return Err("not served".into()),
    };
    r.map_err(|e| e.to_string())
}

/// Kafka's code for a coordinator error.
pub(crate) fn code(e: &TxnError) -> ResponseError {
    match e {
        TxnError::ProducerFenced(_) => ResponseError::ProducerFenced,
        TxnError::InvalidProducerIdMapping { .. } => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        TxnError::ConcurrentTransactions(_) => ResponseError::ConcurrentTransactions,
        TxnError::InvalidTimeout(_) => ResponseError::InvalidTransactionTimeout,
        TxnError::UnknownTopicOrPartition(..) => ResponseError::UnknownTopicOrPartition,
        _ => ResponseError::CoordinatorNotAvailable,
    }
}

fn error_code(broker: &Broker, r: &Result<(), TxnError>) -> i16 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            let c = code(e);
            if c == ResponseError::CoordinatorNotAvailable {
                tracing::warn!("transaction request failed: {e}");
            } else {
                tracing::debug!("transaction request refused: {e}");
            }
            broker.stats.count_error(c.code());
            c.code()
        }
    }
}

/// Runs `f` on the blocking pool (it may write markers).
async fn blocking<T: Send + 'static>(
    broker: &Arc<Broker>,
    f: impl FnOnce(&rill_log::Log) -> Result<T, TxnError> + Send + 'static,
) -> Result<T, TxnError> {
    let log = broker.log.clone();
    tokio::task::spawn_blocking(move || f(&log))
        .await
        .unwrap_or_else(|e| Err(TxnError::Storage(format!("coordinator task failed: {e}"))))
}

/// Decodes a request of this module, runs it and encodes the response frame.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut body: Bytes,
) -> Result<Bytes, ConnError> {
    macro_rules! decode {
        ($t:ty) => {
            <$t>::decode(&mut body, version).map_err(|e| ConnError::Malformed {
                api: api_name(key),
                version,
                reason: e.to_string(),
            })?
        };
    }
    match key {
        ApiKey::InitProducerId => {
            let resp = init_producer_id(broker, decode!(InitProducerIdRequest)).await;
            encode(correlation_id, key, version, &resp)
        }
        ApiKey::AddPartitionsToTxn => {
            let resp = add_partitions(broker, decode!(AddPartitionsToTxnRequest), version);
            encode(correlation_id, key, version, &resp)
        }
        ApiKey::AddOffsetsToTxn => {
            let req = decode!(AddOffsetsToTxnRequest);
            let r = broker.log.add_offsets_to_txn(
                &req.transactional_id,
                req.producer_id.0,
                req.producer_epoch,
                &req.group_id,
            );
            let resp = AddOffsetsToTxnResponse::default().with_error_code(error_code(broker, &r));
            encode(correlation_id, key, version, &resp)
        }
        ApiKey::EndTxn => {
            let req = decode!(EndTxnRequest);
            let tid = req.transactional_id.to_string();
            let (pid, epoch, commit) = (req.producer_id.0, req.producer_epoch, req.committed);
            let r = blocking(broker, move |log| log.end_txn(&tid, pid, epoch, commit)).await;
            let resp = EndTxnResponse::default()
                .with_error_code(error_code(broker, &r))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch);
            encode(correlation_id, key, version, &resp)
        }
        ApiKey::TxnOffsetCommit => {
            let resp = txn_offset_commit(broker, decode!(TxnOffsetCommitRequest));
            encode(correlation_id, key, version, &resp)
        }
        _ => Err(ConnError::Unsupported {
            key: key as i16,
            version,
        }),
    }
}

/// InitProducerId: an idempotent producer's id, or a transactional id's producer with a
/// bumped epoch (fencing older instances).
async fn init_producer_id(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let tid = req
        .transactional_id
        .as_ref()
        .map(|t| t.to_string())
        .filter(|t| !t.is_empty());
    let current = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let timeout = i64::from(req.transaction_timeout_ms);
    let r = blocking(broker, move |log| {
        log.init_producer_id(tid.as_deref(), timeout, current)
    })
    .await;
    let resp = InitProducerIdResponse::default();
    match r {
        Ok((pid, epoch)) => resp
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Err(e) => resp
            .with_error_code(error_code(broker, &Err(e)))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

/// AddPartitionsToTxn (v0-3, the client form): every partition gets the same answer, or
/// the unknown ones UNKNOWN_TOPIC_OR_PARTITION and the rest OPERATION_NOT_ATTEMPTED.
fn add_partitions(
    broker: &Broker,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let _ = version;
    let wanted: Vec<(String, u32)> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), u32::try_from(*p).unwrap_or(u32::MAX)))
        })
        .collect();
    let unknown: Vec<(String, u32)> = wanted
        .iter()
        .filter(|(t, p)| {
            broker
                .log
                .topic(t)
                .and_then(|t| t.partition(*p).cloned())
                .is_none()
        })
        .cloned()
        .collect();
    let result = if unknown.is_empty() {
        broker.log.add_partitions_to_txn(
            &req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &wanted,
        )
    } else {
        Err(TxnError::UnknownTopicOrPartition(String::new(), 0))
    };
    let overall = error_code(broker, &result);
    let topics = req
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let results = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = (t.name.to_string(), u32::try_from(*p).unwrap_or(u32::MAX));
                    let c = if unknown.is_empty() {
                        overall
                    } else if unknown.contains(&tp) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        ResponseError::OperationNotAttempted.code()
                    };
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(c)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(results)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

/// TxnOffsetCommit: offsets held by the transaction until it commits.
fn txn_offset_commit(broker: &Broker, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let offsets: Vec<(String, u32, i64)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.to_string(),
                    u32::try_from(p.partition_index).unwrap_or(u32::MAX),
                    p.committed_offset,
                )
            })
        })
        .collect();
    let r = broker.log.txn_offset_commit(
        &req.transactional_id,
        req.producer_id.0,
        req.producer_epoch,
        &req.group_id,
        &offsets,
    );
    let c = error_code(broker, &r);
    let topics = req
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(c)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
