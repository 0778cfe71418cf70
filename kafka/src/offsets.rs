//! OffsetCommit (8) and OffsetFetch (9), over the log's shared offsets store.
//!
//! Offsets live in `Log::offsets()`, the same store the host's Wasm deployments commit to,
//! so a Kafka consumer group and a deployment with the same name share positions and lag.
//! Commit metadata strings are accepted but not stored; OffsetFetch returns "".

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_log::OffsetsError;

use crate::server::Broker;

/// OffsetCommit: checks the member's generation, then commits each partition.
pub(crate) fn offset_commit(
    broker: &Broker,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let _ = version;
    let group = req.group_id.0.as_str();
    let check = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        broker.groups.check_commit(
            group,
            req.member_id.as_str(),
            req.generation_id_or_member_epoch,
        )
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let code = match check {
                        Err(e) => Some(e),
                        Ok(()) => commit_one(
                            broker,
                            group,
                            t.name.0.as_str(),
                            p.partition_index,
                            p.committed_offset,
                        ),
                    };
                    let mut r = OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index);
                    if let Some(e) = code {
                        broker.stats.count_error(e.code());
                        r = r.with_error_code(e.code());
                    }
                    r
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

fn commit_one(
    broker: &Broker,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<ResponseError> {
    let Ok(partition) = u32::try_from(partition) else {
        return Some(ResponseError::UnknownTopicOrPartition);
    };
    match broker.log.offsets().commit(group, topic, partition, offset) {
        Ok(()) => None,
        Err(OffsetsError::InvalidKey(_)) => Some(ResponseError::InvalidRequest),
        Err(e) => {
            tracing::warn!(group, topic, partition, "offset commit failed: {e}");
            Some(ResponseError::KafkaStorageError)
        }
    }
}

/// Committed offsets of `group`: for the listed topics and partitions, or every committed
/// one if `topics` is `None`. Partitions without a commit get -1.
fn lookup(
    broker: &Broker,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Vec<(TopicName, Vec<(i32, i64)>)> {
    let offsets = broker.log.offsets();
    match topics {
        Some(ts) => ts
            .into_iter()
            .map(|(name, parts)| {
                let got = parts
                    .into_iter()
                    .map(|p| {
                        let o = u32::try_from(p)
                            .ok()
                            .and_then(|pu| offsets.fetch(group, name.0.as_str(), pu));
                        (p, o.unwrap_or(-1))
                    })
                    .collect();
                (name, got)
            })
            .collect(),
        None => {
            let mut out: Vec<(TopicName, Vec<(i32, i64)>)> = Vec::new();
            for (topic, partition, offset) in offsets.committed(group) {
                let p = i32::try_from(partition).unwrap_or(i32::MAX);
                match out.last_mut() {
                    Some((n, v)) if n.0.as_str() == topic => v.push((p, offset)),
                    _ => out.push((TopicName(StrBytes::from_string(topic)), vec![(p, offset)])),
                }
            }
            out
        }
    }
}

/// OffsetFetch: one group (v0-7) or several (v8).
pub(crate) fn offset_fetch(
    broker: &Broker,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let empty_meta = || Some(StrBytes::from_static_str(""));
    // KIP-447: a read_committed consumer asks for stable offsets; one an open transaction
    // is about to change is answered UNSTABLE_OFFSET_COMMIT (retriable) instead.
    let unstable = |group: &str, topic: &str, p: i32| {
        req.require_stable
            && broker
                .log
                .pending_txn_offset(group, topic, u32::try_from(p).unwrap_or(u32::MAX))
    };
    let unstable_code = ResponseError::UnstableOffsetCommit.code();
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let group = g.group_id.0.as_str();
                let topics = lookup(broker, group, topics)
                    .into_iter()
                    .map(|(name, parts)| {
                        let partitions = parts
                            .into_iter()
                            .map(|(p, o)| {
                                let r = OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_metadata(empty_meta());
                                if unstable(group, &name, p) {
                                    r.with_committed_offset(-1).with_error_code(unstable_code)
                                } else {
                                    r.with_committed_offset(o)
                                }
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(name)
                            .with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let group = req.group_id.0.as_str();
    let topics = lookup(broker, group, topics)
        .into_iter()
        .map(|(name, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(p, o)| {
                    let r = OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_metadata(empty_meta());
                    if unstable(group, &name, p) {
                        r.with_committed_offset(-1).with_error_code(unstable_code)
                    } else {
                        r.with_committed_offset(o)
                    }
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    //! Issue 11: negative commits are stored as is, as Apache Kafka 4.1 stores them (probed
    //! with OffsetCommit v2 then OffsetFetch v1/v2: -1, -2, -3 and -5 all commit with error
    //! 0 and come back unchanged).

    use std::sync::Arc;

    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, TopicName};

    use super::*;

    #[test]
    fn issue11_negative_commits_are_accepted_and_fetched_back() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            Arc::new(rill_log::Log::open(dir.path(), rill_log::LogOptions::default()).unwrap());
        log.create_topic("t", rill_log::TopicConfig::default())
            .unwrap();
        let broker = crate::Broker::new(log, crate::KafkaConfig::default()).unwrap();
        let name = || TopicName(StrBytes::from_static_str("t"));
        for offset in [5, -1, -2, -5] {
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("js")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    OffsetCommitRequestTopic::default()
                        .with_name(name())
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default().with_committed_offset(offset),
                        ]),
                ]);
            let resp = offset_commit(&broker, req, 2);
            assert_eq!(
                resp.topics[0].partitions[0].error_code, 0,
                "commit {offset}"
            );
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("js")))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopic::default()
                        .with_name(name())
                        .with_partition_indexes(vec![0]),
                ]));
            let p = &offset_fetch(&broker, req, 1).topics[0].partitions[0];
            assert_eq!((p.committed_offset, p.error_code), (offset, 0));
        }
    }
}
