//! Admin APIs beyond CreateTopics, which admin clients, UIs and lag exporters call at
//! start-up: DescribeConfigs (32), DeleteTopics (20), DeleteGroups (42), DescribeCluster (60)
//! and CreatePartitions (37).
//!
//! One entry point, [`handle`], so the connection's dispatch needs a single arm for them.

mod cluster;
mod configs;
mod groups;
mod topics;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Decodable;

use crate::conn::encode;
use crate::error::ConnError;
use crate::server::Broker;
use crate::stats::api_name;

/// Whether `key` is one of the APIs of this module.
pub(crate) fn serves(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::DescribeConfigs
            | ApiKey::DeleteTopics
            | ApiKey::DeleteGroups
            | ApiKey::DescribeCluster
            | ApiKey::CreatePartitions
    )
}

/// Decodes the body of an admin request without running it (for `conn::decode_request`).
pub(crate) fn decode_only(key: ApiKey, version: i16, mut body: Bytes) -> Result<(), String> {
    use kafka_protocol::messages::*;
    let r = match key {
        ApiKey::DescribeConfigs => DescribeConfigsRequest::decode(&mut body, version).map(drop),
        ApiKey::DeleteTopics => DeleteTopicsRequest::decode(&mut body, version).map(drop),
        ApiKey::DeleteGroups => DeleteGroupsRequest::decode(&mut body, version).map(drop),
        ApiKey::DescribeCluster => DescribeClusterRequest::decode(&mut body, version).map(drop),
        ApiKey::CreatePartitions => CreatePartitionsRequest::decode(&mut body, version).map(drop),
        _ => return Err("not served".into()),
    };
    r.map_err(|e| e.to_string())
}

/// Decodes an admin request, runs it and encodes the response frame.
pub(crate) fn handle(
    broker: &Broker,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut body: Bytes,
) -> Result<Bytes, ConnError> {
    use kafka_protocol::messages::*;
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
        ApiKey::DescribeConfigs => {
            let resp = configs::describe_configs(broker, decode!(DescribeConfigsRequest), version);
            encode(correlation_id, key, version, &resp)
        }
        ApiKey::DeleteTopics => {
            let resp = topics::delete_topics(broker, decode!(DeleteTopicsRequest), version);
            encode(correlation_id, key, version, &resp)
        }
        ApiKey::CreatePartitions => {
            let resp = topics::create_partitions(broker, decode!(CreatePartitionsRequest));
            encode(correlation_id, key, version, &resp)
        }
        ApiKey::DeleteGroups => {
            let resp = groups::delete_groups(broker, decode!(DeleteGroupsRequest));
            encode(correlation_id, key, version, &resp)
        }
        ApiKey::DescribeCluster => {
            let resp = cluster::describe_cluster(broker, decode!(DescribeClusterRequest), version);
            encode(correlation_id, key, version, &resp)
        }
        _ => Err(ConnError::Malformed {
            api: api_name(key),
            version,
            reason: "not an admin API".into(),
        }),
    }
}

/// A request of each admin API, for the connection's every-API-every-version test.
#[cfg(test)]
pub(crate) fn sample_request(key: ApiKey, v: i16) -> Option<Bytes> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    fn body<R: Encodable>(r: &R, v: i16) -> Option<Bytes> {
        let mut b = bytes::BytesMut::new();
        r.encode(&mut b, v).ok()?;
        Some(b.freeze())
    }
    let t = || TopicName(StrBytes::from_static_str("t"));
    match key {
        ApiKey::DescribeConfigs => body(
            &DescribeConfigsRequest::default()
                .with_include_synonyms(v >= 1)
                .with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("t")),
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(StrBytes::from_static_str("0")),
                ]),
            v,
        ),
        ApiKey::DeleteTopics => {
            let name = TopicName(StrBytes::from_string(format!("missing-{v}")));
            let r = if v >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    delete_topics_request::DeleteTopicState::default().with_name(Some(name)),
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![name])
            };
            body(&r, v)
        }
        ApiKey::CreatePartitions => body(
            &CreatePartitionsRequest::default()
                .with_validate_only(true)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(t())
                        .with_count(4),
                ]),
            v,
        ),
        ApiKey::DeleteGroups => body(
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("nobody"))]),
            v,
        ),
        ApiKey::DescribeCluster => body(&DescribeClusterRequest::default(), v),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
