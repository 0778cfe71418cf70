//! Every API at every advertised version: the request decodes, the handler runs and its
//! response encodes. The codec crate refuses to encode fields a version lacks, so this
//! catches a handler setting a field too new for the version it answers.

use super::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn broker() -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(rill_log::Log::open(dir.path(), rill_log::LogOptions::default()).unwrap());
    let t = log
        .create_topic(
            "t",
            rill_log::TopicConfig {
                partitions: 2,
                ..Default::default()
            },
        )
        .unwrap();
    let recs = [rill_log::Record {
        key: Some(b"k"),
        value: Some(b"v"),
        headers: &[],
        timestamp_ms: Some(5),
    }];
    t.partition(0).unwrap().append(&recs).unwrap();
    let b = Broker::new(log, crate::KafkaConfig::default()).unwrap();
    (dir, b)
}

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("t"))
}

fn body<R: Encodable>(r: &R, v: i16) -> Option<Bytes> {
    let mut b = BytesMut::new();
    r.encode(&mut b, v).ok()?;
    Some(b.freeze())
}

fn requests(key: ApiKey, v: i16, batch: &Bytes) -> Option<Bytes> {
    use kafka_protocol::messages::*;
    let group = GroupId(StrBytes::from_static_str("g"));
    match key {
        ApiKey::ApiVersions => body(&ApiVersionsRequest::default(), v),
        ApiKey::Metadata => body(
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("bad name!")))),
            ])),
            v,
        ),
        ApiKey::Produce => body(
            &ProduceRequest::default().with_acks(1).with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(topic())
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(1)
                            .with_records(Some(batch.clone())),
                        produce_request::PartitionProduceData::default()
                            .with_index(9)
                            .with_records(Some(batch.clone())),
                    ]),
            ]),
            v,
        ),
        ApiKey::Fetch => body(
            &FetchRequest::default()
                .with_max_bytes(1 << 20)
                .with_topics(vec![
                    fetch_request::FetchTopic::default()
                        .with_topic(topic())
                        .with_partitions(vec![
                            fetch_request::FetchPartition::default()
                                .with_partition(0)
                                .with_partition_max_bytes(1 << 20),
                            fetch_request::FetchPartition::default()
                                .with_partition(1)
                                .with_fetch_offset(99)
                                .with_partition_max_bytes(1 << 20),
                        ]),
                ]),
            v,
        ),
        ApiKey::ListOffsets => body(
            &ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic())
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
                        list_offsets_request::ListOffsetsPartition::default().with_timestamp(-2),
                        list_offsets_request::ListOffsetsPartition::default().with_timestamp(0),
                    ]),
            ]),
            v,
        ),
        ApiKey::CreateTopics => body(
            &CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(format!("new-{v}"))))
                    .with_num_partitions(3)
                    .with_replication_factor(1),
                create_topics_request::CreatableTopic::default()
                    .with_name(topic())
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
            v,
        ),
        ApiKey::InitProducerId => body(&InitProducerIdRequest::default(), v),
        ApiKey::FindCoordinator => body(
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str(if v >= 4 { "" } else { "g" }))
                .with_coordinator_keys(if v >= 4 {
                    vec![StrBytes::from_static_str("g")]
                } else {
                    vec![]
                }),
            v,
        ),
        ApiKey::JoinGroup => body(&JoinGroupRequest::default().with_group_id(group), v),
        ApiKey::SyncGroup => body(&SyncGroupRequest::default().with_group_id(group), v),
        ApiKey::Heartbeat => body(&HeartbeatRequest::default().with_group_id(group), v),
        ApiKey::LeaveGroup => body(&LeaveGroupRequest::default().with_group_id(group), v),
        ApiKey::DescribeGroups => body(
            &DescribeGroupsRequest::default().with_groups(vec![group]),
            v,
        ),
        ApiKey::ListGroups => body(&ListGroupsRequest::default(), v),
        ApiKey::OffsetCommit => body(
            &OffsetCommitRequest::default()
                .with_group_id(group)
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic())
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_committed_offset(1),
                        ]),
                ]),
            v,
        ),
        ApiKey::OffsetFetch => {
            let r = if v >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(group),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(group)
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic())
                            .with_partition_indexes(vec![0, 1]),
                    ]))
            };
            body(&r, v)
        }
        ApiKey::AddPartitionsToTxn => body(
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str(
                    "tx",
                )))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(topic())
                        .with_partitions(vec![0]),
                ]),
            v,
        ),
        ApiKey::AddOffsetsToTxn => body(
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
                .with_group_id(group),
            v,
        ),
        ApiKey::EndTxn => body(
            &EndTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
                .with_committed(true),
            v,
        ),
        ApiKey::TxnOffsetCommit => body(
            &TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
                .with_group_id(group),
            v,
        ),
        ApiKey::DescribeTransactions => body(
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("tx"))]),
            v,
        ),
        ApiKey::ListTransactions => body(
            &ListTransactionsRequest::default()
                .with_state_filters(vec![StrBytes::from_static_str("Ongoing")])
                .with_duration_filter(-1),
            v,
        ),
        k => crate::admin::sample_request(k, v),
    }
}

#[tokio::test]
async fn every_api_answers_at_every_advertised_version() {
    let (_dir, broker) = broker();
    let mut batch = rill_log::batch::encode(
        &[rill_log::Record {
            key: Some(b"k"),
            value: Some(b"v"),
            headers: &[],
            timestamp_ms: Some(5),
        }],
        5,
    );
    batch[..8].copy_from_slice(&0i64.to_be_bytes());
    let batch = Bytes::from(batch);
    let client = Client {
        peer: "127.0.0.1:1".parse().unwrap(),
        client_id: "t".into(),
    };
    for s in api_versions::SUPPORTED {
        for v in s.accept_min..=s.max {
            let b =
                requests(s.key, v, &batch).unwrap_or_else(|| panic!("request {:?} v{v}", s.key));
            let out = handle(&broker, &client, s.key, v, 42, b)
                .await
                .unwrap_or_else(|e| panic!("{:?} v{v}: {e}", s.key));
            let out = out.expect("a response");
            assert_eq!(&out[4..8], &42i32.to_be_bytes(), "{:?} v{v}", s.key);
        }
    }
}

#[tokio::test]
async fn a_waiting_fetch_returns_as_soon_as_data_arrives() {
    let (_dir, broker) = broker();
    let client = Client {
        peer: "127.0.0.1:1".parse().unwrap(),
        client_id: "t".into(),
    };
    let req = FetchRequest::default()
        .with_max_wait_ms(10_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(topic())
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(1)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let b = body(&req, 12).unwrap();
    let start = std::time::Instant::now();
    let (broker2, client2) = (broker.clone(), client.clone());
    let waiting =
        tokio::spawn(async move { handle(&broker2, &client2, ApiKey::Fetch, 12, 1, b).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "no data yet: the fetch must wait");
    let t = broker.log.topic("t").unwrap();
    let recs = [rill_log::Record {
        key: None,
        value: Some(b"late"),
        headers: &[],
        timestamp_ms: None,
    }];
    t.partition(0).unwrap().append(&recs).unwrap();
    let out = waiting.await.unwrap().unwrap().unwrap();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "woke at {:?}",
        start.elapsed()
    );
    let needle: &[u8] = b"late";
    assert!(
        out.windows(4).any(|w| w == needle),
        "the new record is in the response"
    );

    // acks=0: stored, and no response at all.
    let mut batch = rill_log::batch::encode(&recs, 5);
    batch[..8].copy_from_slice(&0i64.to_be_bytes());
    let req = ProduceRequest::default().with_acks(0).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(1)
                    .with_records(Some(Bytes::from(batch))),
            ]),
    ]);
    let out = handle(
        &broker,
        &client,
        ApiKey::Produce,
        9,
        2,
        body(&req, 9).unwrap(),
    )
    .await
    .unwrap();
    assert!(out.is_none());
    assert_eq!(t.partition(1).unwrap().high_watermark(), 1);
}
