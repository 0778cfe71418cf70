//! Host configuration: a TOML file with documented defaults, overridden by flags and env.
//!
//! A minimal file (every key is optional):
//!
//! ```toml
//! data_dir = "./rill-data"
//! admin_addr = "127.0.0.1:8080"
//!
//! [kafka]
//! listen = "127.0.0.1:9092"
//! auto_create_topics = true
//!
//! [defaults]
//! flush = "never"
//!
//! [schema_registry]
//! listen = "127.0.0.1:8081"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use rill_log::FlushPolicy;

/// Everything `runtime serve` needs to start a host.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where topics, offsets, deployments and compiled modules live.
    pub data_dir: PathBuf,
    /// The admin HTTP API. Loopback by default: it has no authentication.
    pub admin_addr: SocketAddr,
    /// Largest admin API request body, in bytes (default 64 MiB: a deploy carries the module
    /// base64-encoded, a produce request its records). A larger body is answered 413 without
    /// being read: at once when its Content-Length says so, else when the limit is reached.
    pub admin_max_body_bytes: usize,
    /// The Kafka listener; `None` (`kafka.enabled = false`) turns it off.
    pub kafka: KafkaSection,
    /// Defaults for new topics and deployments.
    pub defaults: Defaults,
    /// How many Wasm invocations may run at the same moment. Wasm is CPU-bound, so more than
    /// the number of cores only adds context switches. 0 means "number of cores" (four per
    /// core in cluster mode, where a turn also waits for the cluster's acknowledgements).
    pub max_parallel_invocations: usize,
    /// Total Wasm instances the pooling allocator reserves room for.
    pub max_instances: u32,
    /// Write `/tmp/perf-<pid>.map` so `perf record`/`perf top` can name the functions of
    /// compiled handlers (for profiling; off by default).
    pub wasm_perf_map: bool,
    /// How often retention and compaction run.
    #[serde(with = "duration_ms")]
    pub retention_check_interval: Duration,
    /// Cluster mode: run deployments on an external Kafka cluster instead of the embedded
    /// log (`[cluster]`; see docs/cluster.md).
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// The schema registry (`[schema_registry]`; see docs/schemas.md).
    pub schema_registry: SchemaRegistrySection,
}

/// The `[schema_registry]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaRegistrySection {
    /// Whether this host serves a registry (Confluent's REST API). Ignored when `url` is
    /// set, and in cluster mode, where hosts share an external registry instead.
    pub enabled: bool,
    /// Where the registry listens (Confluent's port by default). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// An external registry (`http://host:8081`) the host uses instead of serving its own:
    /// for door validation, typed handlers and deploy-time checks.
    pub url: Option<String>,
}

impl Default for SchemaRegistrySection {
    fn default() -> Self {
        SchemaRegistrySection {
            enabled: true,
            listen: "127.0.0.1:8081".parse().expect("valid literal address"),
            url: None,
        }
    }
}

impl SchemaRegistrySection {
    /// Whether this host serves its own registry, given whether it runs in cluster mode.
    pub fn served(&self, cluster: bool) -> bool {
        self.enabled && self.url.is_none() && !cluster
    }
}

/// The `[kafka]` section.
#[derive(Debug, Clone)]
pub struct KafkaSection {
    /// Whether the Kafka listener runs at all.
    pub enabled: bool,
    /// Partitions of topics the Kafka door creates (auto-created, or by CreateTopics without
    /// a count); `None` follows `[defaults] partitions`.
    pub default_partitions: Option<u32>,
    /// Everything else is the Kafka front door's own configuration. Its
    /// `default_partitions` is set by the host from the field above.
    pub config: rill_kafka::KafkaConfig,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            enabled: true,
            default_partitions: None,
            config: rill_kafka::KafkaConfig::default(),
        }
    }
}

/// `[kafka]` takes `enabled`, and every field of [`rill_kafka::KafkaConfig`]. A key that is
/// neither is an error, like anywhere else in the file: a misspelt key silently ignored is
/// a setting silently not applied. (serde cannot combine `deny_unknown_fields` with the
/// `flatten` this used to be, hence the check by hand.)
impl<'de> Deserialize<'de> for KafkaSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let known = kafka_config_fields();
        for key in table.keys() {
            if key != "enabled" && !known.contains(&key.as_str()) {
                return Err(D::Error::custom(format!(
                    "unknown field `{key}` in [kafka], expected one of `enabled`, `{}`",
                    known.join("`, `")
                )));
            }
        }
        let enabled = match table.remove("enabled") {
            None => true,
            Some(toml::Value::Boolean(b)) => b,
            Some(v) => {
                return Err(D::Error::custom(format!(
                    "invalid type: {}, expected a boolean for `enabled` in [kafka]",
                    v.type_str()
                )));
            }
        };
        let config: rill_kafka::KafkaConfig = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| D::Error::custom(e.message().replace('\n', " ")))?;
        let default_partitions = table
            .contains_key("default_partitions")
            .then_some(config.default_partitions);
        Ok(KafkaSection {
            enabled,
            default_partitions,
            config,
        })
    }
}

/// The field names `rill_kafka::KafkaConfig` deserializes, as its derived `Deserialize`
/// announces them, so this list cannot drift from the struct.
fn kafka_config_fields() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    struct Fields(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field list captured")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }
    impl<'de> de::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    static FIELDS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut f = Fields(None);
        let _ = rill_kafka::KafkaConfig::deserialize(&mut f);
        f.0.unwrap_or(&[])
    })
}

/// The `[defaults]` section: what a topic or deployment gets when the request says nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defaults {
    /// Partitions of a topic created without `--partitions`.
    pub partitions: u32,
    /// Flush policy of a topic created without `--flush`: `always`, `never` or `interval:MS`.
    #[serde(with = "flush_str")]
    pub flush: FlushPolicy,
    /// Tries of one record before it goes to the dead-letter topic (or the partition stops).
    pub max_attempts: u32,
    /// Records per invocation.
    pub max_batch_records: u32,
    /// Bytes read per invocation.
    pub max_batch_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("rill-data"),
            admin_addr: "127.0.0.1:8080".parse().expect("valid literal address"),
            admin_max_body_bytes: 64 << 20,
            kafka: KafkaSection::default(),
            defaults: Defaults::default(),
            max_parallel_invocations: 0,
            max_instances: 2000,
            wasm_perf_map: false,
            retention_check_interval: Duration::from_secs(60),
            cluster: None,
            schema_registry: SchemaRegistrySection::default(),
        }
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            partitions: 1,
            flush: FlushPolicy::Never,
            max_attempts: 5,
            max_batch_records: 1000,
            max_batch_bytes: 1 << 20,
        }
    }
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    // The cause is in the message, not a `source`, so printing the chain says it once.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
}

impl Config {
    /// Reads a config file; a missing key takes its default.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text and checks the values. The message is one line.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.message().replace('\n', " "))?;
        config.check()?;
        Ok(config)
    }

    /// Refuses values that parse but cannot work.
    pub fn check(&self) -> Result<(), String> {
        if self.retention_check_interval.is_zero() {
            return Err("retention_check_interval must be at least 1 ms".into());
        }
        if self.defaults.partitions == 0 || self.kafka.default_partitions == Some(0) {
            return Err("partition counts must be at least 1".into());
        }
        let d = &self.defaults;
        if d.max_attempts == 0 || d.max_batch_records == 0 || d.max_batch_bytes == 0 {
            return Err(
                "[defaults] max_attempts, max_batch_records and max_batch_bytes must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    /// Partitions of topics the Kafka door creates: `[kafka] default_partitions` when set,
    /// else `[defaults] partitions`.
    pub fn kafka_default_partitions(&self) -> u32 {
        self.kafka
            .default_partitions
            .unwrap_or(self.defaults.partitions)
    }

    /// The effective number of parallel invocations.
    pub fn parallelism(&self) -> usize {
        if self.max_parallel_invocations > 0 {
            return self.max_parallel_invocations;
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        // In cluster mode an invocation thread also waits, after the guest ran, for the
        // cluster to acknowledge the outputs and the commit (milliseconds: Kafka's group
        // coordinator alone holds each commit ~5 ms). Threads that wait leave cores idle, so
        // there are more of them: the guests still share the same cores.
        match self.cluster {
            Some(_) => cores * CLUSTER_THREADS_PER_CORE,
            None => cores,
        }
    }
}

/// Invocation threads per core in cluster mode (see [`Config::parallelism`]).
pub const CLUSTER_THREADS_PER_CORE: usize = 4;

mod duration_ms {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod flush_str {
    use rill_log::FlushPolicy;
    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FlushPolicy, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| D::Error::custom(format!("invalid flush policy '{s}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.admin_addr.port(), 8080);
        assert!(c.kafka.enabled);
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = Config::from_toml("nonsense = 1").unwrap_err();
        assert!(e.contains("nonsense"), "{e}");
    }

    #[test]
    fn unknown_keys_in_sections_are_errors() {
        let e = Config::from_toml("[kafka]\nlisten_addr = \"127.0.0.1:1\"").unwrap_err();
        assert!(e.contains("listen_addr") && !e.contains('\n'), "{e}");
        let e = Config::from_toml("[defaults]\npartition = 3").unwrap_err();
        assert!(e.contains("partition"), "{e}");
    }

    #[test]
    fn kafka_section_reads_every_kafka_field() {
        let c = Config::from_toml(
            "[kafka]\nenabled = false\nlisten = \"127.0.0.1:1\"\nnode_id = 3\nmax_connections = 9",
        )
        .unwrap();
        assert!(!c.kafka.enabled);
        assert_eq!(c.kafka.config.listen.port(), 1);
        assert_eq!(c.kafka.config.node_id, 3);
        assert_eq!(c.kafka.config.max_connections, 9);
        assert!(kafka_config_fields().contains(&"auto_create_topics"));
        assert!(Config::from_toml("[kafka]\nenabled = 1").is_err());
    }

    #[test]
    fn kafka_partitions_follow_the_defaults_unless_set() {
        let c = Config::from_toml("[defaults]\npartitions = 4").unwrap();
        assert_eq!(c.kafka_default_partitions(), 4);
        let c = Config::from_toml("[defaults]\npartitions = 4\n[kafka]\ndefault_partitions = 2")
            .unwrap();
        assert_eq!(c.kafka_default_partitions(), 2);
        assert_eq!(Config::default().kafka_default_partitions(), 1);
    }

    #[test]
    fn unusable_values_are_errors() {
        let e = Config::from_toml("retention_check_interval = 0").unwrap_err();
        assert!(e.contains("retention_check_interval"), "{e}");
        assert!(Config::from_toml("[defaults]\npartitions = 0").is_err());
    }

    #[test]
    fn schema_registry_section() {
        let c = Config::default();
        assert_eq!(c.schema_registry.listen.port(), 8081);
        assert!(c.schema_registry.served(false) && !c.schema_registry.served(true));
        let c = Config::from_toml(
            "[schema_registry]\nlisten = \"127.0.0.1:0\"\nurl = \"http://r:8081\"",
        )
        .unwrap();
        assert_eq!(c.schema_registry.url.as_deref(), Some("http://r:8081"));
        assert!(
            !c.schema_registry.served(false),
            "an external registry replaces this one"
        );
        assert!(Config::from_toml("[schema_registry]\nport = 1").is_err());
    }

    #[test]
    fn flush_parses() {
        let c = Config::from_toml("[defaults]\nflush = \"always\"").unwrap();
        assert_eq!(c.defaults.flush, FlushPolicy::Always);
    }
}
