//! Metadata (3): one broker, which leads every partition.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rill_log::Topic;

use crate::server::Broker;
use crate::topics;

/// The cluster id clients see. Rill is one node, so a fixed id is honest.
pub(crate) const CLUSTER_ID: &str = "rill";

fn describe(broker: &Broker, t: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.cfg.node_id);
    let partitions = (0..t.partitions().len())
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(node)
                // -1 = "no epoch": clients then skip leader-epoch validation
                // (OffsetForLeaderEpoch), which a single node without replication has no
                // use for.
                .with_leader_epoch(-1)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name().to_string()))))
        .with_partitions(partitions)
}

/// Metadata: the broker list (just us) and the requested topics, auto-creating missing ones
/// when the request and the config allow it.
pub(crate) fn handle(broker: &Broker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let (host, port) = broker.advertised();
    let me = MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.cfg.node_id))
        .with_host(StrBytes::from_string(host.to_string()))
        .with_port(port);
    // v0 has no flag and always allowed auto-creation; v1-3 had the flag implied true.
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let requested = match req.topics {
        // v0: an empty list means every topic; v1+: null means every topic.
        Some(ts) if !(version == 0 && ts.is_empty()) => Some(ts),
        _ => None,
    };
    let topics = match requested {
        None => broker
            .log
            .topics()
            .iter()
            .map(|t| describe(broker, t))
            .collect(),
        Some(ts) => ts
            .into_iter()
            .map(|rt| {
                let name = rt.name.map(|n| n.0).unwrap_or_default();
                match topics::get_or_create(broker, name.as_str(), allow_create) {
                    Ok(t) => describe(broker, &t),
                    Err(code) => {
                        broker.stats.count_error(code.code());
                        MetadataResponseTopic::default()
                            .with_name(Some(TopicName(name)))
                            .with_error_code(code.code())
                    }
                }
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(vec![me])
        .with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(broker.cfg.node_id))
        .with_topics(topics)
}
