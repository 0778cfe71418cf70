//! DeleteTopics (20) and CreatePartitions (37).

use std::collections::HashSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
};
use kafka_protocol::protocol::StrBytes;
use rill_log::{TopicError, valid_topic_name};

use crate::server::Broker;

type Failure = (ResponseError, String);

fn delete_one(broker: &Broker, name: &str) -> Result<(), Failure> {
    if !valid_topic_name(name) {
        return Err((
            ResponseError::InvalidTopicException,
            format!("invalid topic name {name:?}"),
        ));
    }
    if broker.is_reserved(name) {
        return Err((
            ResponseError::InvalidTopicException,
            format!(
                "topic '{name}' belongs to the host (the schema registry's store) and cannot be deleted"
            ),
        ));
    }
    match broker.log.delete_topic(name) {
        Ok(()) => {
            tracing::info!(topic = name, "deleted topic");
            Ok(())
        }
        Err(e @ TopicError::NotFound(_)) => {
            Err((ResponseError::UnknownTopicOrPartition, e.to_string()))
        }
        Err(e) => Err((ResponseError::KafkaStorageError, e.to_string())),
    }
}

/// DeleteTopics: deletes each named topic and its files at once (Kafka deletes
/// asynchronously; here the answer comes after the files are gone). Topics named by id (v6)
/// are unknown: Rill's topic ids are all the nil UUID.
pub(crate) fn delete_topics(
    broker: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6 moved names into `topics`, each a name or an id; before, a list of names. The id's
    // type is the codec's (the `uuid` crate's); `Default` is the nil id.
    let entries: Vec<_> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), Default::default()))
            .collect()
    };
    let responses = entries
        .into_iter()
        .map(|(name, id)| {
            let outcome = match &name {
                Some(n) => delete_one(broker, n.0.as_str()),
                None if !id.is_nil() => Err((
                    ResponseError::UnknownTopicId,
                    "topics are named, not identified by id, in Rill".into(),
                )),
                None => Err((
                    ResponseError::InvalidRequest,
                    "neither a topic name nor an id".into(),
                )),
            };
            let mut r = DeletableTopicResult::default().with_name(name);
            if version >= 6 {
                r = r.with_topic_id(id);
            }
            if let Err((code, msg)) = outcome {
                broker.stats.count_error(code.code());
                r = r.with_error_code(code.code());
                if version >= 5 {
                    r = r.with_error_message(Some(StrBytes::from_string(msg)));
                }
            }
            r
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Checks one CreatePartitions entry against the topic as it is; returns the new count.
fn check_grow(broker: &Broker, t: &CreatePartitionsTopic) -> Result<u32, Failure> {
    let name = t.name.0.as_str();
    let topic = broker.log.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("The topic '{name}' does not exist."),
        )
    })?;
    let current = topic.partitions().len() as i32;
    if t.count < current {
        return Err((
            ResponseError::InvalidPartitions,
            format!(
                "Topic currently has {current} partitions, which is higher than the requested {}.",
                t.count
            ),
        ));
    }
    if t.count == current {
        return Err((
            ResponseError::InvalidPartitions,
            format!("Topic already has {current} partitions."),
        ));
    }
    // The codec's default is an empty list rather than null: treat both as "no assignment".
    if let Some(assignments) = t.assignments.as_ref().filter(|a| !a.is_empty()) {
        // One node: the only assignment there is puts each new partition on it.
        let node = broker.cfg.node_id;
        if assignments.len() as i32 != t.count - current
            || assignments
                .iter()
                .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node)
        {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!("each new partition must be assigned to broker {node} alone"),
            ));
        }
    }
    Ok(t.count as u32)
}

/// CreatePartitions: grows each topic to `count` partitions (never shrinks), or with
/// `validate_only` only checks that it could. The new partitions are empty and durable when
/// the answer is sent.
pub(crate) fn create_partitions(
    broker: &Broker,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut seen = HashSet::new();
    let dups: HashSet<&str> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.as_str()))
        .map(|t| t.name.0.as_str())
        .collect();
    let results = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.as_str();
            let outcome = if dups.contains(name) {
                Err((
                    ResponseError::InvalidRequest,
                    "Duplicate topic in request.".to_string(),
                ))
            } else {
                check_grow(broker, t).and_then(|count| {
                    if req.validate_only {
                        return Ok(());
                    }
                    match broker.log.create_partitions(name, count) {
                        Ok(_) => {
                            tracing::info!(topic = name, partitions = count, "added partitions");
                            Ok(())
                        }
                        Err(e @ TopicError::NotFound(_)) => {
                            Err((ResponseError::UnknownTopicOrPartition, e.to_string()))
                        }
                        Err(e @ TopicError::InvalidPartitions { .. }) => {
                            Err((ResponseError::InvalidPartitions, e.to_string()))
                        }
                        Err(e @ TopicError::InvalidConfig(_)) => {
                            Err((ResponseError::InvalidPartitions, e.to_string()))
                        }
                        Err(e) => Err((ResponseError::KafkaStorageError, e.to_string())),
                    }
                })
            };
            let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            match outcome {
                Ok(()) => r,
                Err((code, msg)) => {
                    broker.stats.count_error(code.code());
                    r.with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(msg)))
                }
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
