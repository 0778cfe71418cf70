//! DescribeConfigs (32): topic and broker configs under Kafka's names.
//!
//! Rill keeps its own settings (`TopicConfig`, `KafkaConfig`); this file is the translation
//! table to the names and value formats Kafka tools expect. A value's source follows
//! Kafka's: `DEFAULT_CONFIG` when it is Kafka's default, `STATIC_BROKER_CONFIG` when it comes
//! from the host's configuration and differs from Kafka's default, `TOPIC_CONFIG` when the
//! topic was created with a value of its own. Everything is read-only: Rill has no
//! AlterConfigs, and a tool should not offer to change what it cannot.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use rill_log::{FlushPolicy, TopicConfig, valid_topic_name};

use crate::server::Broker;

/// Resource types (Kafka's `ConfigResource.Type`).
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Config sources (Kafka's `DescribeConfigsResponse.ConfigSource`).
const TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// Config types (Kafka's `ConfigDef.Type` ids in DescribeConfigs v3+).
const BOOLEAN: i8 = 1;
const STRING: i8 = 2;
const INT: i8 = 3;
const LONG: i8 = 5;
const LIST: i8 = 7;

/// Kafka's "infinite" for times and counts: `Long.MAX_VALUE`.
const LONG_MAX: &str = "9223372036854775807";
/// Kafka's default retention, 7 days, and segment age.
const SEVEN_DAYS_MS: u64 = 7 * 24 * 3600 * 1000;

/// One config as answered.
struct Entry {
    name: &'static str,
    value: Option<String>,
    source: i8,
    kind: i8,
    /// The broker-level config a topic config falls back to, and its value, for synonyms.
    fallback: Option<(&'static str, String)>,
}

/// Source of a value: Kafka's default, the host's default, or set on the topic.
fn source(value: &str, kafka_default: &str, host_default: &str) -> i8 {
    if value != host_default {
        TOPIC_CONFIG
    } else if value != kafka_default {
        STATIC_BROKER_CONFIG
    } else {
        DEFAULT_CONFIG
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-1".to_string(), |v| v.to_string())
}

/// `flush.messages` and `flush.ms` for a flush policy: `always` is Kafka's fsync after every
/// message, `interval:N` its `flush.ms=N`, `never` its defaults (never; the OS writes back).
fn flush_values(f: FlushPolicy) -> (String, String) {
    match f {
        FlushPolicy::Always => ("1".into(), LONG_MAX.into()),
        FlushPolicy::IntervalMs(ms) => (LONG_MAX.into(), ms.to_string()),
        FlushPolicy::Never => (LONG_MAX.into(), LONG_MAX.into()),
    }
}

/// The topic configs, under Kafka's names, of `cfg` given the host's defaults `host`.
fn topic_entries(cfg: &TopicConfig, host: &TopicConfig) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut add = |name,
                   value: String,
                   kafka_default: &str,
                   host_value: String,
                   kind,
                   broker: Option<&'static str>| {
        out.push(Entry {
            name,
            source: source(&value, kafka_default, &host_value),
            value: Some(value),
            kind,
            fallback: broker.map(|b| (b, host_value)),
        })
    };
    let week = SEVEN_DAYS_MS.to_string();
    add(
        "cleanup.policy",
        cfg.cleanup_policy.to_string(),
        "delete",
        host.cleanup_policy.to_string(),
        LIST,
        Some("log.cleanup.policy"),
    );
    add(
        "delete.retention.ms",
        cfg.delete_retention_ms.to_string(),
        "86400000",
        host.delete_retention_ms.to_string(),
        LONG,
        Some("log.cleaner.delete.retention.ms"),
    );
    add(
        "min.compaction.lag.ms",
        cfg.min_compaction_lag_ms.to_string(),
        "0",
        host.min_compaction_lag_ms.to_string(),
        LONG,
        Some("log.cleaner.min.compaction.lag.ms"),
    );
    // Confluent Server's broker-side schema validation (TopicNameStrategy only).
    add(
        "confluent.key.schema.validation",
        cfg.key_schema_validation.to_string(),
        "false",
        host.key_schema_validation.to_string(),
        BOOLEAN,
        None,
    );
    add(
        "confluent.value.schema.validation",
        cfg.value_schema_validation.to_string(),
        "false",
        host.value_schema_validation.to_string(),
        BOOLEAN,
        None,
    );
    // Fixed by Rill: create-time timestamps, one replica, producer codecs.
    add(
        "compression.type",
        "producer".into(),
        "producer",
        "producer".into(),
        STRING,
        Some("compression.type"),
    );
    let (msgs, ms) = flush_values(cfg.flush);
    let (host_msgs, host_ms) = flush_values(host.flush);
    add(
        "flush.messages",
        msgs,
        LONG_MAX,
        host_msgs,
        LONG,
        Some("log.flush.interval.messages"),
    );
    add(
        "flush.ms",
        ms,
        LONG_MAX,
        host_ms,
        LONG,
        Some("log.flush.interval.ms"),
    );
    add(
        "max.message.bytes",
        cfg.max_message_bytes.to_string(),
        &rill_log::DEFAULT_MAX_MESSAGE_BYTES.to_string(),
        host.max_message_bytes.to_string(),
        INT,
        Some("message.max.bytes"),
    );
    add(
        "message.timestamp.type",
        "CreateTime".into(),
        "CreateTime",
        "CreateTime".into(),
        STRING,
        Some("log.message.timestamp.type"),
    );
    add(
        "min.insync.replicas",
        "1".into(),
        "1",
        "1".into(),
        INT,
        Some("min.insync.replicas"),
    );
    add(
        "retention.bytes",
        opt(cfg.retention_bytes),
        "-1",
        opt(host.retention_bytes),
        LONG,
        Some("log.retention.bytes"),
    );
    add(
        "retention.ms",
        opt(cfg.retention_ms),
        &week,
        opt(host.retention_ms),
        LONG,
        Some("log.retention.ms"),
    );
    add(
        "rill.flush",
        cfg.flush.to_string(),
        "never",
        host.flush.to_string(),
        STRING,
        None,
    );
    add(
        "segment.bytes",
        cfg.segment_bytes.to_string(),
        "1073741824",
        host.segment_bytes.to_string(),
        INT,
        Some("log.segment.bytes"),
    );
    add(
        "segment.ms",
        cfg.segment_ms.to_string(),
        &week,
        host.segment_ms.to_string(),
        LONG,
        Some("log.roll.ms"),
    );
    out
}

/// The broker configs admin tools and lag exporters ask for, from the host's real settings.
fn broker_entries(broker: &Broker) -> Vec<Entry> {
    let cfg = &broker.cfg;
    let host = cfg.new_topic_config();
    let (host_port, port) = broker.advertised();
    let mut out = Vec::new();
    // A value from the host's config: static unless it equals Kafka's default.
    let mut add = |name, value: Option<String>, kafka_default: Option<&str>, kind| {
        let source = if value.as_deref() == kafka_default {
            DEFAULT_CONFIG
        } else {
            STATIC_BROKER_CONFIG
        };
        out.push(Entry {
            name,
            value,
            source,
            kind,
            fallback: None,
        })
    };
    let s = |v: &dyn ToString| Some(v.to_string());
    let listener = format!("PLAINTEXT://{host_port}:{port}");
    let (msgs, ms) = flush_values(host.flush);
    add("advertised.listeners", Some(listener.clone()), None, STRING);
    add(
        "auto.create.topics.enable",
        s(&cfg.auto_create_topics),
        Some("true"),
        BOOLEAN,
    );
    add("broker.id", s(&cfg.node_id), Some("-1"), INT);
    add("compression.type", s(&"producer"), Some("producer"), STRING);
    add("default.replication.factor", s(&1), Some("1"), INT);
    add("delete.topic.enable", s(&true), Some("true"), BOOLEAN);
    add(
        "group.initial.rebalance.delay.ms",
        s(&cfg.group_initial_rebalance_delay_ms),
        Some("3000"),
        INT,
    );
    add(
        "group.max.session.timeout.ms",
        s(&1_800_000),
        Some("1800000"),
        INT,
    );
    add("group.min.session.timeout.ms", s(&1000), Some("6000"), INT);
    add(
        "listeners",
        Some(format!("PLAINTEXT://{}", cfg.listen)),
        None,
        STRING,
    );
    add(
        "log.cleaner.delete.retention.ms",
        s(&host.delete_retention_ms),
        Some("86400000"),
        LONG,
    );
    add(
        "log.cleaner.min.compaction.lag.ms",
        s(&host.min_compaction_lag_ms),
        Some("0"),
        LONG,
    );
    add(
        "log.cleanup.policy",
        s(&host.cleanup_policy),
        Some("delete"),
        LIST,
    );
    add(
        "log.flush.interval.messages",
        Some(msgs),
        Some(LONG_MAX),
        LONG,
    );
    add("log.flush.interval.ms", Some(ms), Some(LONG_MAX), LONG);
    add(
        "log.message.timestamp.type",
        s(&"CreateTime"),
        Some("CreateTime"),
        STRING,
    );
    add(
        "log.retention.bytes",
        Some(opt(host.retention_bytes)),
        Some("-1"),
        LONG,
    );
    add("log.retention.ms", Some(opt(host.retention_ms)), None, LONG);
    add("log.roll.ms", s(&host.segment_ms), None, LONG);
    add(
        "log.segment.bytes",
        s(&host.segment_bytes),
        Some("1073741824"),
        INT,
    );
    add(
        "max.connections",
        s(&cfg.max_connections),
        Some("2147483647"),
        INT,
    );
    add(
        "message.max.bytes",
        s(&host.max_message_bytes),
        Some("1048588"),
        INT,
    );
    add("min.insync.replicas", s(&1), Some("1"), INT);
    add("node.id", s(&cfg.node_id), Some("-1"), INT);
    add("num.partitions", s(&cfg.default_partitions), Some("1"), INT);
    add("offsets.topic.replication.factor", s(&1), Some("3"), 4);
    add(
        "queued.max.request.bytes",
        s(&cfg.max_inflight_request_bytes),
        Some("-1"),
        LONG,
    );
    add(
        "socket.request.max.bytes",
        s(&cfg.max_request_bytes),
        Some("104857600"),
        INT,
    );
    out
}

/// One resource's answer, or the error Kafka gives for it.
fn describe_one(
    broker: &Broker,
    r: &DescribeConfigsResource,
) -> Result<Vec<Entry>, (ResponseError, String)> {
    let name = r.resource_name.as_str();
    match r.resource_type {
        TOPIC => {
            if !valid_topic_name(name) {
                return Err((
                    ResponseError::InvalidTopicException,
                    format!("invalid topic name {name:?}"),
                ));
            }
            let t = broker.log.topic(name).ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic '{name}' does not exist."),
                )
            })?;
            Ok(topic_entries(t.config(), &broker.cfg.new_topic_config()))
        }
        // The empty name asks for the cluster-wide defaults, which are this node's.
        BROKER if name.is_empty() || name == broker.cfg.node_id.to_string() => {
            Ok(broker_entries(broker))
        }
        BROKER => Err((
            ResponseError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {} or empty string, but received {name}",
                broker.cfg.node_id
            ),
        )),
        other => Err((
            ResponseError::InvalidRequest,
            format!("Unsupported resource type {other}"),
        )),
    }
}

/// DescribeConfigs: the configs of each topic or broker resource, all of them or the keys
/// asked for (unknown keys are left out, as Kafka does).
pub(crate) fn describe_configs(
    broker: &Broker,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match describe_one(broker, r) {
                Ok(entries) => {
                    let configs = entries
                        .into_iter()
                        .filter(|e| {
                            r.configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|e| encode_entry(e, req.include_synonyms, version))
                        .collect();
                    out.with_configs(configs)
                }
                Err((code, msg)) => {
                    broker.stats.count_error(code.code());
                    out.with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(msg)))
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn encode_entry(e: Entry, synonyms: bool, version: i16) -> DescribeConfigsResourceResult {
    let value = e.value.map(StrBytes::from_string);
    let mut c = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(e.name))
        .with_value(value.clone())
        .with_read_only(true)
        .with_config_source(e.source);
    if synonyms {
        // The value's own source, then (for a value set on the topic) the broker config it
        // overrides, as Kafka lists them.
        // A value the topic inherits is named by its broker config, as Kafka names it.
        let own = match &e.fallback {
            Some((b, _)) if e.source != TOPIC_CONFIG => b,
            _ => e.name,
        };
        let mut list = vec![
            DescribeConfigsSynonym::default()
                .with_name(StrBytes::from_static_str(own))
                .with_value(value)
                .with_source(e.source),
        ];
        if let Some((b, v)) = e.fallback.filter(|_| e.source == TOPIC_CONFIG) {
            list.push(
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_static_str(b))
                    .with_value(Some(StrBytes::from_string(v)))
                    .with_source(STATIC_BROKER_CONFIG),
            );
        }
        c = c.with_synonyms(list);
    }
    if version >= 3 {
        c = c.with_config_type(e.kind);
    }
    c
}
