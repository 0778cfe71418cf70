//! Transactions on the Kafka door: InitProducerId (22), AddPartitionsToTxn (24),
//! AddOffsetsToTxn (25), EndTxn (26), TxnOffsetCommit (28), and for `kafka-transactions`
//! DescribeTransactions (65) and ListTransactions (66). The coordinator is the log's
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
use kafka_protocol::protocol::StrBytes;
use rill_log::{TxnError, TxnState};

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
            | ApiKey::DescribeTransactions
            | ApiKey::ListTransactions
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
        ApiKey::DescribeTransactions => {
            DescribeTransactionsRequest::decode(&mut body, version).map(drop)
        }
        ApiKey::ListTransactions => ListTransactionsRequest::decode(&mut body, version).map(drop),
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
        ApiKey::DescribeTransactions => {
            let resp = describe(broker, decode!(DescribeTransactionsRequest));
            encode(correlation_id, key, version, &resp)
        }
        ApiKey::ListTransactions => {
            let resp = list(broker, decode!(ListTransactionsRequest));
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
    // With an unknown partition nothing is added: the answer is per partition below.
    let overall = if unknown.is_empty() {
        let r = broker.log.add_partitions_to_txn(
            &req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &wanted,
        );
        error_code(broker, &r)
    } else {
        broker
            .stats
            .count_error(ResponseError::UnknownTopicOrPartition.code());
        0
    };
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

/// Kafka's name of a transaction state (`kafka-transactions` prints it).
fn state_name(s: TxnState) -> &'static str {
    match s {
        TxnState::Empty => "Empty",
        TxnState::Ongoing => "Ongoing",
        TxnState::PrepareCommit => "PrepareCommit",
        TxnState::PrepareAbort => "PrepareAbort",
        TxnState::CompleteCommit => "CompleteCommit",
        TxnState::CompleteAbort => "CompleteAbort",
    }
}

const STATE_NAMES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

/// DescribeTransactions: each id's state, or `TRANSACTIONAL_ID_NOT_FOUND`.
fn describe(broker: &Broker, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let known = broker.log.transactions();
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let r = describe_transactions_response::TransactionState::default()
                .with_transactional_id(id.clone());
            let Some(m) = known.iter().find(|m| m.transactional_id == id.as_str()) else {
                let code = ResponseError::TransactionalIdNotFound.code();
                broker.stats.count_error(code);
                return r
                    .with_error_code(code)
                    .with_transaction_state(StrBytes::from_static_str(""))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1);
            };
            let mut topics: Vec<describe_transactions_response::TopicData> = Vec::new();
            for (t, p) in &m.partitions {
                let p = i32::try_from(*p).unwrap_or(i32::MAX);
                match topics.iter_mut().find(|d| d.topic.as_str() == t) {
                    Some(d) => d.partitions.push(p),
                    None => topics.push(
                        describe_transactions_response::TopicData::default()
                            .with_topic(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(vec![p]),
                    ),
                }
            }
            let started = if m.state == TxnState::Ongoing {
                m.started_ms
            } else {
                -1
            };
            r.with_transaction_state(StrBytes::from_static_str(state_name(m.state)))
                .with_transaction_timeout_ms(i32::try_from(m.timeout_ms).unwrap_or(i32::MAX))
                .with_transaction_start_time_ms(started)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// ListTransactions: every transactional id matching the state, producer id and duration
/// filters (the id pattern of v2 is a Java regular expression and is not applied: every id
/// is listed).
fn list(broker: &Broker, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let unknown: Vec<StrBytes> = req
        .state_filters
        .iter()
        .filter(|s| !STATE_NAMES.contains(&s.as_str()))
        .cloned()
        .collect();
    let states = broker
        .log
        .transactions()
        .into_iter()
        .filter(|m| {
            let state = state_name(m.state);
            (req.state_filters.is_empty() || req.state_filters.iter().any(|s| s.as_str() == state))
                && (req.producer_id_filters.is_empty()
                    || req.producer_id_filters.iter().any(|p| p.0 == m.producer_id))
                && (req.duration_filter < 0
                    || (m.state == TxnState::Ongoing && now - m.started_ms >= req.duration_filter))
        })
        .map(|m| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(m.transactional_id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(StrBytes::from_static_str(state_name(m.state)))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
