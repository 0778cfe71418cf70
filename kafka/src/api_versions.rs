//! ApiVersions (18) and the table of what this broker speaks.
//!
//! The table is the single source of truth: the connection layer closes the connection on
//! any version outside it (as Kafka 4.x does), and ApiVersions advertises it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

/// One API this broker serves: the versions it advertises and the lowest it accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Supported {
    pub key: ApiKey,
    /// Lowest version advertised.
    pub min: i16,
    /// Highest version advertised and accepted.
    pub max: i16,
    /// Lowest version actually served; below it (but at or above `min`) the connection is
    /// closed.
    pub accept_min: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> Supported {
    Supported {
        key,
        min,
        max,
        accept_min: min,
    }
}

/// What we advertise. Ranges follow current brokers (Kafka 4.0) where the codec crate allows,
/// capped below versions that need features Rill does not have:
///
/// - Produce advertises v0 but serves v3+ only, as Kafka 4.0 does: older librdkafka turns
///   compression off unless Produce v0 is advertised, and v3 is the first with v2 batches.
///   v12+ (transactions v2) and v13 (topic ids) are not offered.
/// - Fetch v4..=12: v4 is the first librdkafka uses with v2 batches; v13+ names topics by id.
/// - ListOffsets up to v6: v7 adds the max-timestamp query (-3), v8+ tiered storage.
/// - OffsetCommit/OffsetFetch up to v8: v9+ are for the KIP-848 consumer protocol.
/// - FindCoordinator up to v4 (batched keys); v5+ add transaction/share-group errors.
/// - ListGroups up to v5 (v5 adds group types; every group here is `classic`).
pub(crate) const SUPPORTED: &[Supported] = &[
    Supported {
        key: ApiKey::Produce,
        min: 0,
        max: 11,
        accept_min: 3,
    },
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 6),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::OffsetCommit, 2, 8),
    api(ApiKey::OffsetFetch, 1, 8),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::InitProducerId, 0, 5),
    // The client forms: v4+ of AddPartitionsToTxn is broker-to-broker, and EndTxn v5 and
    // TxnOffsetCommit v4+ belong to transaction protocol v2 (KIP-890), which is not served.
    api(ApiKey::AddPartitionsToTxn, 0, 3),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 4),
    api(ApiKey::TxnOffsetCommit, 0, 3),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
];

/// The entry for `key`, if we serve it at all.
pub(crate) fn supported(key: ApiKey) -> Option<&'static Supported> {
    SUPPORTED.iter().find(|s| s.key == key)
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect()
}

/// The answer to a supported ApiVersions request.
pub(crate) fn handle(_req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The answer to an ApiVersions request at a version we do not know: error 35 with our list,
/// encoded as v0 so any client can read it, as Kafka brokers do. The client then retries
/// with the highest version both sides know.
pub(crate) fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Message, Request};

    /// Every advertised range must be one the codec crate can decode and encode, except the
    /// deliberately advertised-but-rejected Produce v0-2.
    #[test]
    fn advertised_ranges_are_within_the_codecs() {
        use kafka_protocol::messages::*;
        fn range<R: Request>() -> (i16, i16) {
            (R::VERSIONS.min, R::VERSIONS.max)
        }
        for s in SUPPORTED {
            let (lo, hi) = match s.key {
                ApiKey::Produce => range::<ProduceRequest>(),
                ApiKey::Fetch => range::<FetchRequest>(),
                ApiKey::ListOffsets => range::<ListOffsetsRequest>(),
                ApiKey::Metadata => range::<MetadataRequest>(),
                ApiKey::OffsetCommit => range::<OffsetCommitRequest>(),
                ApiKey::OffsetFetch => range::<OffsetFetchRequest>(),
                ApiKey::FindCoordinator => range::<FindCoordinatorRequest>(),
                ApiKey::JoinGroup => range::<JoinGroupRequest>(),
                ApiKey::Heartbeat => range::<HeartbeatRequest>(),
                ApiKey::LeaveGroup => range::<LeaveGroupRequest>(),
                ApiKey::SyncGroup => range::<SyncGroupRequest>(),
                ApiKey::DescribeGroups => range::<DescribeGroupsRequest>(),
                ApiKey::ListGroups => range::<ListGroupsRequest>(),
                ApiKey::ApiVersions => range::<ApiVersionsRequest>(),
                ApiKey::CreateTopics => range::<CreateTopicsRequest>(),
                ApiKey::InitProducerId => range::<InitProducerIdRequest>(),
                ApiKey::AddPartitionsToTxn => range::<AddPartitionsToTxnRequest>(),
                ApiKey::AddOffsetsToTxn => range::<AddOffsetsToTxnRequest>(),
                ApiKey::EndTxn => range::<EndTxnRequest>(),
                ApiKey::TxnOffsetCommit => range::<TxnOffsetCommitRequest>(),
                ApiKey::DescribeTransactions => range::<DescribeTransactionsRequest>(),
                ApiKey::ListTransactions => range::<ListTransactionsRequest>(),
                ApiKey::DescribeConfigs => range::<DescribeConfigsRequest>(),
                ApiKey::DeleteTopics => range::<DeleteTopicsRequest>(),
                ApiKey::DeleteGroups => range::<DeleteGroupsRequest>(),
                ApiKey::DescribeCluster => range::<DescribeClusterRequest>(),
                ApiKey::CreatePartitions => range::<CreatePartitionsRequest>(),
                k => panic!("no codec check for {k:?}"),
            };
            assert!(lo <= s.accept_min && s.max <= hi, "{:?} {lo}..{hi}", s.key);
            assert!(s.min <= s.accept_min && s.accept_min <= s.max);
        }
        let _ = <ApiVersionsResponse as Message>::VERSIONS;
    }
}
