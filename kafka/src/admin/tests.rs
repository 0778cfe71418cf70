//! Each admin API through the codec: encode a request, handle it, decode the response.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rill_log::{Log, LogOptions, TopicConfig};

use crate::server::Broker;

fn broker() -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    let t = TopicConfig {
        partitions: 2,
        ..TopicConfig::default()
    };
    log.create_topic("t", t).unwrap();
    let b = Broker::new(log, crate::KafkaConfig::default()).unwrap();
    (dir, b)
}

/// Encodes `req` at `v`, runs it through `admin::handle` and decodes the response body.
fn call<Q: Encodable, R: Decodable>(b: &Broker, key: ApiKey, v: i16, req: &Q) -> R {
    let mut body = BytesMut::new();
    req.encode(&mut body, v).unwrap();
    let mut frame = super::handle(b, key, v, 7, body.freeze()).unwrap();
    let _size = frame.get_i32();
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(v)).unwrap();
    assert_eq!(header.correlation_id, 7);
    R::decode(&mut frame, v).unwrap()
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn describe(
    b: &Broker,
    v: i16,
    kind: i8,
    res: &str,
    keys: Option<&[&str]>,
) -> DescribeConfigsResponse {
    let r = describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(kind)
        .with_resource_name(StrBytes::from_string(res.to_string()))
        .with_configuration_keys(keys.map(|k| {
            k.iter()
                .map(|s| StrBytes::from_string(s.to_string()))
                .collect()
        }));
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![r]);
    call(b, ApiKey::DescribeConfigs, v, &req)
}

fn config<'a>(
    r: &'a describe_configs_response::DescribeConfigsResult,
    key: &str,
) -> &'a describe_configs_response::DescribeConfigsResourceResult {
    r.configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .unwrap_or_else(|| panic!("no {key}"))
}

#[test]
fn describe_configs_of_a_topic_names_values_and_sources_as_kafka() {
    let (_dir, b) = broker();
    // A topic with settings of its own, through CreateTopics.
    let cfg = |k: &str, v: &str| {
        create_topics_request::CreatableTopicConfig::default()
            .with_name(StrBytes::from_string(k.into()))
            .with_value(Some(StrBytes::from_string(v.into())))
    };
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name("own"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                cfg("max.message.bytes", "2000000"),
                cfg("retention.ms", "1000"),
                cfg("flush.ms", "250"),
            ]),
    ]);
    let resp = crate::topics::create_topics(&b, create, 7);
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );

    for v in 1..=4 {
        let resp = describe(&b, v, 2, "own", None);
        let r = &resp.results[0];
        assert_eq!(r.error_code, 0);
        let m = config(r, "max.message.bytes");
        assert_eq!(m.value.as_deref(), Some("2000000"));
        assert_eq!(m.config_source, 1, "TOPIC_CONFIG");
        assert_eq!(config(r, "retention.ms").value.as_deref(), Some("1000"));
        assert_eq!(config(r, "flush.ms").value.as_deref(), Some("250"));
        assert_eq!(
            config(r, "rill.flush").value.as_deref(),
            Some("interval:250")
        );
        let c = config(r, "cleanup.policy");
        assert_eq!((c.value.as_deref(), c.config_source), (Some("delete"), 5));
        assert!(c.read_only, "Rill has no AlterConfigs");
        for k in [
            "retention.bytes",
            "segment.bytes",
            "segment.ms",
            "flush.messages",
            "message.timestamp.type",
            "min.insync.replicas",
            "compression.type",
        ] {
            config(r, k);
        }
        if v >= 3 {
            assert_eq!(m.config_type, 3, "INT");
        }
    }
    // Defaults: Kafka's values, DEFAULT_CONFIG; Rill's unlimited retention is the broker's.
    let resp = describe(
        &b,
        4,
        2,
        "t",
        Some(&["max.message.bytes", "retention.ms", "nope"]),
    );
    let r = &resp.results[0];
    assert_eq!(
        r.configs.len(),
        2,
        "only the keys asked for; unknown keys left out"
    );
    let m = config(r, "max.message.bytes");
    assert_eq!((m.value.as_deref(), m.config_source), (Some("1048588"), 5));
    let ret = config(r, "retention.ms");
    assert_eq!((ret.value.as_deref(), ret.config_source), (Some("-1"), 4));

    let missing = describe(&b, 4, 2, "missing", None);
    assert_eq!(
        missing.results[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    let bad = describe(&b, 4, 2, "bad name!", None);
    assert_eq!(
        bad.results[0].error_code,
        code(ResponseError::InvalidTopicException)
    );
}

#[test]
fn describe_configs_of_the_broker_come_from_the_host_config() {
    let (_dir, b) = broker();
    for res in ["0", ""] {
        let resp = describe(&b, 4, 4, res, None);
        let r = &resp.results[0];
        assert_eq!(r.error_code, 0);
        assert_eq!(config(r, "num.partitions").value.as_deref(), Some("1"));
        assert_eq!(
            config(r, "auto.create.topics.enable").value.as_deref(),
            Some("true")
        );
        let m = config(r, "message.max.bytes");
        assert_eq!((m.value.as_deref(), m.config_source), (Some("1048588"), 5));
        assert_eq!(config(r, "log.retention.ms").value.as_deref(), Some("-1"));
        assert_eq!(
            config(r, "broker.id").config_source,
            4,
            "STATIC_BROKER_CONFIG"
        );
    }
    let other = describe(&b, 4, 4, "3", None);
    assert_eq!(
        other.results[0].error_code,
        code(ResponseError::InvalidRequest)
    );
    let group = describe(&b, 4, 32, "g", None);
    assert_eq!(
        group.results[0].error_code,
        code(ResponseError::InvalidRequest)
    );
}

#[test]
fn delete_topics_by_name_and_refuses_ids() {
    let (_dir, b) = broker();
    for v in [1, 5] {
        b.log.create_topic("gone", TopicConfig::default()).unwrap();
        let req =
            DeleteTopicsRequest::default().with_topic_names(vec![name("gone"), name("never")]);
        let resp: DeleteTopicsResponse = call(&b, ApiKey::DeleteTopics, v, &req);
        assert_eq!(resp.responses[0].error_code, 0);
        assert_eq!(
            resp.responses[1].error_code,
            code(ResponseError::UnknownTopicOrPartition)
        );
        assert!(b.log.topic("gone").is_none());
    }
    let req = DeleteTopicsRequest::default().with_topics(vec![
        delete_topics_request::DeleteTopicState::default().with_name(Some(name("t"))),
        delete_topics_request::DeleteTopicState::default()
            .with_topic_id(uuid_of("67e55044-10b1-426f-9247-bb680e5fe0c8")),
    ]);
    let resp: DeleteTopicsResponse = call(&b, ApiKey::DeleteTopics, 6, &req);
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(
        resp.responses[1].error_code,
        code(ResponseError::UnknownTopicId)
    );
    assert!(b.log.topic("t").is_none());
}

/// A topic id of the codec's `uuid` type, which this crate does not name.
fn uuid_of<U: std::str::FromStr>(s: &str) -> U
where
    U::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

#[test]
fn create_partitions_grows_validates_and_never_shrinks() {
    let (_dir, b) = broker();
    let grow = |topic: &str, count: i32, validate_only: bool| {
        let req = CreatePartitionsRequest::default()
            .with_validate_only(validate_only)
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name(topic))
                    .with_count(count),
            ]);
        let resp: CreatePartitionsResponse = call(&b, ApiKey::CreatePartitions, 3, &req);
        resp.results[0].error_code
    };
    assert_eq!(grow("t", 4, true), 0);
    assert_eq!(
        b.log.topic("t").unwrap().partitions().len(),
        2,
        "validate_only"
    );
    assert_eq!(grow("t", 4, false), 0);
    assert_eq!(b.log.topic("t").unwrap().partitions().len(), 4);
    assert_eq!(grow("t", 4, false), code(ResponseError::InvalidPartitions));
    assert_eq!(grow("t", 3, true), code(ResponseError::InvalidPartitions));
    assert_eq!(
        grow("missing", 3, false),
        code(ResponseError::UnknownTopicOrPartition)
    );

    // Assignments: each new partition on this node alone, one per new partition.
    let assign = |ids: Vec<Vec<i32>>| {
        let a = ids
            .into_iter()
            .map(|ids| {
                create_partitions_request::CreatePartitionsAssignment::default()
                    .with_broker_ids(ids.into_iter().map(BrokerId).collect())
            })
            .collect();
        let req = CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name("t"))
                .with_count(6)
                .with_assignments(Some(a)),
        ]);
        let resp: CreatePartitionsResponse = call(&b, ApiKey::CreatePartitions, 0, &req);
        resp.results[0].error_code
    };
    assert_eq!(
        assign(vec![vec![1], vec![0]]),
        code(ResponseError::InvalidReplicaAssignment)
    );
    assert_eq!(
        assign(vec![vec![0]]),
        code(ResponseError::InvalidReplicaAssignment)
    );
    assert_eq!(assign(vec![vec![0], vec![0]]), 0);
    assert_eq!(b.log.topic("t").unwrap().partitions().len(), 6);

    // A topic named twice is refused, both times, as Kafka does.
    let twice = CreatePartitionsRequest::default().with_topics(vec![
        create_partitions_request::CreatePartitionsTopic::default()
            .with_name(name("t"))
            .with_count(8);
        2
    ]);
    let resp: CreatePartitionsResponse = call(&b, ApiKey::CreatePartitions, 3, &twice);
    assert!(
        resp.results
            .iter()
            .all(|r| r.error_code == code(ResponseError::InvalidRequest))
    );
}

#[tokio::test]
async fn delete_groups_only_empty_known_groups() {
    let (_dir, b) = broker();
    let offsets = b.log.offsets();
    offsets.commit("done", "t", 0, 5).unwrap();
    let del = |g: &str| {
        let req = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(StrBytes::from_string(g.to_string()))]);
        let resp: DeleteGroupsResponse = call(&b, ApiKey::DeleteGroups, 2, &req);
        resp.results[0].error_code
    };
    assert_eq!(del("done"), 0);
    assert_eq!(offsets.fetch("done", "t", 0), None, "offsets deleted");
    assert_eq!(del("done"), code(ResponseError::GroupIdNotFound));
    assert_eq!(del(""), code(ResponseError::InvalidGroupId));

    // A group with a member is not deleted.
    offsets.commit("busy", "t", 0, 1).unwrap();
    let client = crate::conn::Client {
        peer: "127.0.0.1:1".parse().unwrap(),
        client_id: "c".into(),
    };
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("busy")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            join_group_request::JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::new()),
        ]);
    // v5 first hands out the member id (KIP-394); the member enters with it.
    let first = crate::groups::api::join_group(&b, &client, join.clone(), 5).await;
    assert_eq!(first.error_code, code(ResponseError::MemberIdRequired));
    let join = join.with_member_id(first.member_id);
    let joined = crate::groups::api::join_group(&b, &client, join, 5).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(del("busy"), code(ResponseError::NonEmptyGroup));
    assert_eq!(offsets.fetch("busy", "t", 0), Some(1));
}

#[test]
fn describe_cluster_is_this_node() {
    let (_dir, b) = broker();
    for v in 0..=2 {
        let resp: DescribeClusterResponse = call(
            &b,
            ApiKey::DescribeCluster,
            v,
            &DescribeClusterRequest::default(),
        );
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.cluster_id.as_str(), crate::metadata::CLUSTER_ID);
        assert_eq!(resp.controller_id, BrokerId(0));
        assert_eq!(resp.brokers.len(), 1);
        assert_eq!(resp.brokers[0].broker_id, BrokerId(0));
        assert_eq!(resp.brokers[0].port, 9092);
    }
}

#[tokio::test]
async fn produce_refuses_a_batch_over_max_message_bytes() {
    let (_dir, b) = broker();
    let big = vec![0u8; 2 << 20];
    let recs = [rill_log::Record {
        key: Some(b"k"),
        value: Some(&big),
        headers: &[],
        timestamp_ms: Some(5),
    }];
    let mut batch = rill_log::batch::encode(&recs, 5);
    batch[..8].copy_from_slice(&0i64.to_be_bytes());
    let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(name("t"))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(batch))),
            ]),
    ]);
    let resp = crate::produce::handle(&b, req, 9).await.unwrap();
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, code(ResponseError::MessageTooLarge));
    assert_eq!(
        b.log
            .topic("t")
            .unwrap()
            .partition(0)
            .unwrap()
            .high_watermark(),
        0
    );
}

#[test]
fn compaction_configs_are_taken_at_create_and_described() {
    let (_dir, b) = broker();
    let cfg = |k: &str, v: &str| {
        create_topics_request::CreatableTopicConfig::default()
            .with_name(StrBytes::from_string(k.into()))
            .with_value(Some(StrBytes::from_string(v.into())))
    };
    let topic = |n: &str, configs| {
        create_topics_request::CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs)
    };
    let create = CreateTopicsRequest::default().with_topics(vec![
        topic(
            "kv",
            vec![
                cfg("cleanup.policy", "compact,delete"),
                cfg("delete.retention.ms", "1000"),
                cfg("min.compaction.lag.ms", "5000"),
            ],
        ),
        topic("bad-policy", vec![cfg("cleanup.policy", "shred")]),
        topic("bad-ms", vec![cfg("delete.retention.ms", "-5")]),
    ]);
    let resp = crate::topics::create_topics(&b, create, 7);
    assert_eq!(resp.topics[0].error_code, 0);
    for t in &resp.topics[1..] {
        assert_eq!(t.error_code, code(ResponseError::InvalidConfig), "{t:?}");
        assert!(t.error_message.is_some());
    }
    let kv = b.log.topic("kv").unwrap();
    let c = kv.config();
    assert_eq!(c.cleanup_policy, rill_log::CleanupPolicy::CompactDelete);
    assert_eq!(
        (c.delete_retention_ms, c.min_compaction_lag_ms),
        (1000, 5000)
    );

    let resp = describe(&b, 4, 2, "kv", None);
    let r = &resp.results[0];
    let c = config(r, "cleanup.policy");
    assert_eq!(
        (c.value.as_deref(), c.config_source),
        (Some("compact,delete"), 1)
    );
    let d = config(r, "delete.retention.ms");
    assert_eq!((d.value.as_deref(), d.config_source), (Some("1000"), 1));
    assert_eq!(
        config(r, "min.compaction.lag.ms").value.as_deref(),
        Some("5000")
    );
    // A topic left at the defaults: Kafka's values, and the broker's names as synonyms.
    let resp = describe(&b, 4, 2, "t", None);
    let d = config(&resp.results[0], "delete.retention.ms");
    assert_eq!((d.value.as_deref(), d.config_source), (Some("86400000"), 5));
    let resp = describe(&b, 4, 4, "0", None);
    for k in [
        "log.cleaner.delete.retention.ms",
        "log.cleaner.min.compaction.lag.ms",
        "log.cleanup.policy",
    ] {
        config(&resp.results[0], k);
    }
}

#[tokio::test]
async fn produce_of_a_null_key_to_a_compacted_topic_is_an_invalid_record() {
    let (_dir, b) = broker();
    let compact = TopicConfig {
        cleanup_policy: rill_log::CleanupPolicy::Compact,
        ..TopicConfig::default()
    };
    b.log.create_topic("kv", compact).unwrap();
    let recs = [rill_log::Record {
        key: None,
        value: Some(b"v"),
        headers: &[],
        timestamp_ms: Some(5),
    }];
    let batch = Bytes::from(rill_log::batch::encode(&recs, 5));
    // Kafka answers INVALID_RECORD with its message from v8 (KIP-467), CORRUPT_MESSAGE before.
    for (v, want) in [
        (9, ResponseError::InvalidRecord),
        (7, ResponseError::CorruptMessage),
    ] {
        let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(name("kv"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch.clone())),
                ]),
        ]);
        let resp = crate::produce::handle(&b, req, v).await.unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, code(want), "v{v}");
        if v >= 8 {
            assert!(
                p.error_message
                    .as_deref()
                    .is_some_and(|m| m.contains("without key"))
            );
        }
    }
    let kv = b.log.topic("kv").unwrap();
    assert_eq!(kv.partition(0).unwrap().high_watermark(), 0);
}

#[test]
fn schema_validation_configs_are_taken_at_create_and_described() {
    let (_dir, b) = broker();
    let cfg = |k: &str, v: &str| {
        create_topics_request::CreatableTopicConfig::default()
            .with_name(StrBytes::from_string(k.into()))
            .with_value(Some(StrBytes::from_string(v.into())))
    };
    let topic = |n: &str, configs| {
        create_topics_request::CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs)
    };
    let create = CreateTopicsRequest::default().with_topics(vec![
        topic(
            "checked",
            vec![cfg("confluent.value.schema.validation", "true")],
        ),
        topic("bad", vec![cfg("confluent.key.schema.validation", "yes")]),
    ]);
    let resp = crate::topics::create_topics(&b, create, 7);
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(
        resp.topics[1].error_code,
        code(ResponseError::InvalidConfig)
    );
    let c = b.log.topic("checked").unwrap().config().clone();
    assert!(c.value_schema_validation && !c.key_schema_validation);

    let resp = describe(&b, 4, 2, "checked", None);
    let r = &resp.results[0];
    let v = config(r, "confluent.value.schema.validation");
    assert_eq!((v.value.as_deref(), v.config_source), (Some("true"), 1));
    assert_eq!(v.config_type, 1, "BOOLEAN");
    let k = config(r, "confluent.key.schema.validation");
    assert_eq!((k.value.as_deref(), k.config_source), (Some("false"), 5));
}
