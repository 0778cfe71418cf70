//! Counters for the host's `/metrics`.
//!
//! All counters are monotonic `AtomicU64`s updated with relaxed ordering: they are statistics,
//! not synchronisation, and a reader may see them a little out of step with each other.

use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::messages::ApiKey;

/// Highest API key we count separately; Kafka's keys are all below this.
const MAX_API_KEY: usize = 128;

/// Live counters of one broker. Read them through [`Broker::stats`](crate::Broker::stats).
#[derive(Debug)]
pub struct KafkaStats {
    /// Connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// Connections open now (accepted minus closed).
    pub connections_open: AtomicU64,
    /// Connections refused because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Connections closed because of a malformed or oversized frame.
    pub protocol_errors: AtomicU64,
    /// Records appended by Produce requests.
    pub produce_records: AtomicU64,
    /// Record-batch bytes appended by Produce requests.
    pub produce_bytes: AtomicU64,
    /// Record-batch bytes returned by Fetch responses.
    pub fetch_bytes: AtomicU64,
    /// Partition- or request-level error codes returned to clients.
    pub error_responses: AtomicU64,
    requests: [AtomicU64; MAX_API_KEY],
}

impl Default for KafkaStats {
    fn default() -> Self {
        KafkaStats {
            connections_accepted: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            produce_records: AtomicU64::new(0),
            produce_bytes: AtomicU64::new(0),
            fetch_bytes: AtomicU64::new(0),
            error_responses: AtomicU64::new(0),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A plain copy of [`KafkaStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KafkaStatsSnapshot {
    /// See [`KafkaStats::connections_accepted`].
    pub connections_accepted: u64,
    /// See [`KafkaStats::connections_open`].
    pub connections_open: u64,
    /// See [`KafkaStats::connections_refused`].
    pub connections_refused: u64,
    /// See [`KafkaStats::protocol_errors`].
    pub protocol_errors: u64,
    /// See [`KafkaStats::produce_records`].
    pub produce_records: u64,
    /// See [`KafkaStats::produce_bytes`].
    pub produce_bytes: u64,
    /// See [`KafkaStats::fetch_bytes`].
    pub fetch_bytes: u64,
    /// See [`KafkaStats::error_responses`].
    pub error_responses: u64,
    /// Requests received per API, by Kafka's API name (`"Produce"`, `"Fetch"`, ...), for the
    /// APIs that saw at least one request. Unknown keys count as `"Unknown"`.
    pub requests: Vec<(&'static str, u64)>,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl KafkaStats {
    pub(crate) fn count_request(&self, api_key: i16) {
        let i = usize::try_from(api_key).map_or(MAX_API_KEY - 1, |k| k.min(MAX_API_KEY - 1));
        add(&self.requests[i], 1);
    }

    pub(crate) fn count_error(&self, code: i16) {
        if code != 0 {
            add(&self.error_responses, 1);
        }
    }

    /// Requests received with this API key.
    pub fn requests(&self, api_key: i16) -> u64 {
        usize::try_from(api_key)
            .ok()
            .and_then(|k| self.requests.get(k))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> KafkaStatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut requests = Vec::new();
        for (i, c) in self.requests.iter().enumerate() {
            let n = load(c);
            if n == 0 {
                continue;
            }
            let name = i16::try_from(i)
                .ok()
                .and_then(|k| ApiKey::try_from(k).ok())
                .map_or("Unknown", api_name);
            requests.push((name, n));
        }
        KafkaStatsSnapshot {
            connections_accepted: load(&self.connections_accepted),
            connections_open: load(&self.connections_open),
            connections_refused: load(&self.connections_refused),
            protocol_errors: load(&self.protocol_errors),
            produce_records: load(&self.produce_records),
            produce_bytes: load(&self.produce_bytes),
            fetch_bytes: load(&self.fetch_bytes),
            error_responses: load(&self.error_responses),
            requests,
        }
    }
}

/// Kafka's name of an API, for logs and metrics.
pub(crate) fn api_name(k: ApiKey) -> &'static str {
    match k {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        _ => "Other",
    }
}
