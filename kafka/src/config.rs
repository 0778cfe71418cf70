//! The `[kafka]` section of the host's configuration.

use std::net::SocketAddr;

use serde::Deserialize;

/// Settings of the Kafka listener.
///
/// Every field has a default, so an empty `[kafka]` table (or none) is a working broker on
/// `127.0.0.1:9092`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// Address to listen on (default `127.0.0.1:9092`). The host binds it; [`crate::serve`]
    /// takes the bound listener so tests can use port 0.
    pub listen: SocketAddr,
    /// Host name given to clients in Metadata and FindCoordinator responses. Clients connect
    /// to it for everything after bootstrap, so it must be reachable by them. Default: the IP
    /// the listener is bound to, or `127.0.0.1` if that is a wildcard address.
    pub advertised_host: Option<String>,
    /// This broker's node id, as clients see it (default 0).
    pub node_id: i32,
    /// Create a topic when a client produces to it or asks Metadata about it with
    /// auto-creation allowed (default true), like Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of a CreateTopics request that leaves the
    /// count to the broker (default 1, Kafka's `num.partitions` default).
    pub default_partitions: u32,
    /// Largest request frame accepted, in bytes (default 100 MiB, Kafka's
    /// `socket.request.max.bytes`). A larger frame closes that connection.
    pub max_request_bytes: usize,
    /// Connections served at once (default 4096); further connections are closed at once.
    pub max_connections: usize,
    /// Bytes of request frames held in memory at once across all connections (default
    /// 512 MiB, like Kafka's `queued.max.request.bytes`). A connection whose next frame does
    /// not fit waits before reading it, so many large requests cannot exhaust memory.
    pub max_inflight_request_bytes: usize,
    /// How long the first member of an empty group waits for others before the first
    /// generation is formed, in ms (Kafka's `group.initial.rebalance.delay.ms`, which is
    /// 3000 there). Default 0: a lone consumer starts at once, and later members trigger a
    /// normal rebalance.
    pub group_initial_rebalance_delay_ms: u64,
    /// Flush policy, retention and segment settings of topics the Kafka door creates
    /// (auto-created, or by CreateTopics without configs). Not read from TOML: the host sets
    /// it from its own topic defaults. `None` means `TopicConfig::default()`. Its partition
    /// count is ignored in favour of `default_partitions`.
    #[serde(skip)]
    pub topic_defaults: Option<rill_log::TopicConfig>,
}

impl KafkaConfig {
    /// The config of a topic this door creates, before per-request settings.
    pub(crate) fn new_topic_config(&self) -> rill_log::TopicConfig {
        let mut c = self.topic_defaults.clone().unwrap_or_default();
        c.partitions = self.default_partitions;
        c
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: None,
            node_id: 0,
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: 100 << 20,
            max_connections: 4096,
            max_inflight_request_bytes: 512 << 20,
            group_initial_rebalance_delay_ms: 0,
            topic_defaults: None,
        }
    }
}
