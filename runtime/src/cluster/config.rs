//! The `[cluster]` section and the librdkafka configurations built from it.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::deployment::Guarantee;

/// The default name of the compacted topic deployments are kept in.
pub const DEFAULT_CATALOG_TOPIC: &str = "_rill-deployments";

/// Largest module the catalog stores (the admin API's body cap is the same 64 MiB).
pub(crate) const MAX_MODULE_BYTES: usize = 64 << 20;

/// Cluster mode: where the cluster is and how to reach it.
///
/// ```toml
/// [cluster]
/// bootstrap = "broker1:9092,broker2:9092"
/// host_id = "rill-a"                  # default: <hostname>:<admin port>
/// catalog_topic = "_rill-deployments"
///
/// [cluster.properties]                # passed to librdkafka as they are
/// "security.protocol" = "SASL_SSL"
/// "sasl.mechanism" = "SCRAM-SHA-512"
/// "session.timeout.ms" = "10000"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// This host's name in the cluster: the `client.id` of its group members, shown as the
    /// owner of the partitions it processes.
    #[serde(default)]
    pub host_id: Option<String>,
    /// The compacted topic deployments and modules are kept in.
    #[serde(default = "default_catalog")]
    pub catalog_topic: String,
    /// librdkafka properties for every client (TLS, SASL, timeouts, `client.id`...). They
    /// override Rill's own settings, except those the delivery contract needs (see
    /// [`ClusterConfig::PINNED`]).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            bootstrap: String::new(),
            host_id: None,
            catalog_topic: default_catalog(),
            properties: BTreeMap::new(),
        }
    }
}

fn default_catalog() -> String {
    DEFAULT_CATALOG_TOPIC.to_owned()
}

impl ClusterConfig {
    /// Properties Rill sets for the delivery contract; a passthrough of one of them is
    /// refused at start-up rather than silently weakening the contract.
    pub const PINNED: &[&str] = &[
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.idempotence",
        "acks",
        "request.required.acks",
        "group.id",
        "partition.assignment.strategy",
        "isolation.level",
        "transactional.id",
        "bootstrap.servers",
        "metadata.broker.list",
    ];

    /// Checks the section: a bootstrap, no pinned property overridden.
    pub fn validate(&self) -> Result<(), String> {
        if self.bootstrap.trim().is_empty() {
            return Err("cluster mode needs a bootstrap (--kafka-cluster HOST:PORT)".into());
        }
        if let Some(k) = self
            .properties
            .keys()
            .find(|k| Self::PINNED.contains(&k.as_str()))
        {
            return Err(format!(
                "cluster property '{k}' is set by Rill for its delivery contract and cannot be \
                 overridden"
            ));
        }
        if self.catalog_topic.is_empty() {
            return Err("the cluster's catalog topic name is empty".into());
        }
        Ok(())
    }

    /// A client configuration with the bootstrap, `client.id` = the host id, and every
    /// passthrough property.
    pub(crate) fn client(&self, host_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("client.id", host_id)
            // librdkafka logs to stderr through the log crate otherwise; keep its errors as
            // events and say them ourselves.
            .set("log_level", "3");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// The producer of outputs, dead letters and catalog records: every record acknowledged
    /// by all in-sync replicas, idempotent (a retried send is stored once, in order), with
    /// Java's key partitioner so keyed outputs land where Kafka clients would put them.
    pub(crate) fn producer(&self, host_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("linger.ms", "0")
            .set("partitioner", "murmur2_random")
            .set(
                "message.max.bytes",
                (MAX_MODULE_BYTES + (1 << 20)).to_string(),
            );
        merge(&mut c, self.client(host_id));
        c.set("enable.idempotence", "true").set("acks", "all");
        c
    }

    /// An exactly-once deployment's producer (its `transactional.id` is added per partition,
    /// `txn.rs`): the producer above, with transactions that the broker aborts after 10 s
    /// if their producer goes silent (Kafka Streams' choice for exactly-once; passthrough
    /// `transaction.timeout.ms` overrides it).
    pub(crate) fn transactional(&self, host_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("transaction.timeout.ms", "10000");
        merge(&mut c, self.producer(host_id));
        c
    }

    /// A deployment's group member: manual commits only, cooperative rebalancing. It reads
    /// committed records only (librdkafka's default, pinned): an exactly-once deployment
    /// needs it, so that aborted outputs of an upstream transaction are never processed and
    /// the committed offset it starts from is stable; an at-least-once one keeps it too.
    pub(crate) fn member(
        &self,
        host_id: &str,
        group: &str,
        reset: &str,
        guarantee: Guarantee,
    ) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("auto.offset.reset", reset)
            .set(
                "receive.message.max.bytes",
                (MAX_MODULE_BYTES * 2).to_string(),
            )
            .set(
                "fetch.max.bytes",
                (MAX_MODULE_BYTES + (1 << 20)).to_string(),
            );
        merge(&mut c, self.client(host_id));
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "isolation.level",
                match guarantee {
                    Guarantee::ExactlyOnce | Guarantee::AtLeastOnce => "read_committed",
                },
            );
        c
    }

    /// A consumer outside any group (the catalog's reader, metadata and watermarks).
    pub(crate) fn reader(&self, host_id: &str) -> ClientConfig {
        let mut c = self.member(host_id, "rill-reader", "earliest", Guarantee::AtLeastOnce);
        c.remove("partition.assignment.strategy");
        c.set("enable.partition.eof", "false");
        c
    }
}

/// Copies every property of `from` into `into` (later ones win).
fn merge(into: &mut ClientConfig, from: ClientConfig) {
    for (k, v) in from.config_map().iter() {
        into.set(*k, *v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_properties_are_refused() {
        let mut c = ClusterConfig {
            bootstrap: "b:9092".into(),
            ..ClusterConfig::default()
        };
        assert!(c.validate().is_ok());
        c.properties
            .insert("enable.auto.commit".into(), "true".into());
        assert!(c.validate().unwrap_err().contains("enable.auto.commit"));
        c.properties.clear();
        c.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        let p = c.producer("h");
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("client.id"), Some("h"));
        let m = c.member("h", "g", "latest", Guarantee::ExactlyOnce);
        assert_eq!(m.get("group.id"), Some("g"));
        assert_eq!(m.get("isolation.level"), Some("read_committed"));
        let t = c.transactional("h");
        assert_eq!(t.get("transaction.timeout.ms"), Some("10000"));
        assert_eq!(t.get("enable.idempotence"), Some("true"));
        assert_eq!(m.get("enable.auto.commit"), Some("false"));
        assert_eq!(m.get("auto.offset.reset"), Some("latest"));
        c.bootstrap.clear();
        assert!(c.validate().is_err());
    }
}
