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
    /// The Kafka listener; `None` (`kafka.enabled = false`) turns it off.
    pub kafka: KafkaSection,
    /// Defaults for new topics and deployments.
    pub defaults: Defaults,
    /// How many Wasm invocations may run at the same moment. Wasm is CPU-bound, so more than
    /// the number of cores only adds context switches. 0 means "number of cores".
    pub max_parallel_invocations: usize,
    /// Total Wasm instances the pooling allocator reserves room for.
    pub max_instances: u32,
    /// How often retention runs.
    #[serde(with = "duration_ms")]
    pub retention_check_interval: Duration,
}

/// The `[kafka]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct KafkaSection {
    /// Whether the Kafka listener runs at all.
    pub enabled: bool,
    /// Everything else is the Kafka front door's own configuration.
    #[serde(flatten)]
    pub config: rill_kafka::KafkaConfig,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            enabled: true,
            config: rill_kafka::KafkaConfig::default(),
        }
    }
}

/// The `[defaults]` section: what a topic or deployment gets when the request says nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
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
            kafka: KafkaSection::default(),
            defaults: Defaults::default(),
            max_parallel_invocations: 0,
            max_instances: 2000,
            retention_check_interval: Duration::from_secs(60),
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
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.message().replace('\n', " "))
    }

    /// The effective number of parallel invocations.
    pub fn parallelism(&self) -> usize {
        if self.max_parallel_invocations > 0 {
            self.max_parallel_invocations
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
    }
}

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
    fn flush_parses() {
        let c = Config::from_toml("[defaults]\nflush = \"always\"").unwrap();
        assert_eq!(c.defaults.flush, FlushPolicy::Always);
    }
}
