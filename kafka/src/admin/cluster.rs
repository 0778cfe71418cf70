//! DescribeCluster (60): the one node, as Metadata describes it.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::metadata::CLUSTER_ID;
use crate::server::Broker;

/// "Authorized operations not requested", Kafka's `Integer.MIN_VALUE` marker.
const NOT_REQUESTED: i32 = i32::MIN;

/// DescribeCluster: this broker is the whole cluster and its controller.
///
/// Authorized operations are not reported (there is no authorizer); the field says "not
/// requested" even when they were, as Kafka does for operations it cannot list.
pub(crate) fn describe_cluster(
    broker: &Broker,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let (host, port) = broker.advertised();
    let node = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(broker.cfg.node_id))
        .with_host(StrBytes::from_string(host.to_string()))
        .with_port(port);
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_static_str(CLUSTER_ID))
        .with_controller_id(BrokerId(broker.cfg.node_id))
        .with_brokers(vec![node])
        .with_cluster_authorized_operations(NOT_REQUESTED);
    if version >= 1 {
        // 1 = brokers; a request for controllers (2) gets the same node, which is both.
        resp = resp.with_endpoint_type(req.endpoint_type.max(1));
    }
    resp
}
