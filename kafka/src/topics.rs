//! Topic lookup with auto-creation, and CreateTopics (19).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use rill_log::{FlushPolicy, Topic, TopicConfig, TopicError, valid_topic_name};

use crate::server::Broker;

/// The topic `name`, created with the default partition count if it is missing and both the
/// request (`allow_create`) and the broker config allow it.
pub(crate) fn get_or_create(
    broker: &Broker,
    name: &str,
    allow_create: bool,
) -> Result<Arc<Topic>, ResponseError> {
    if let Some(t) = broker.log.topic(name) {
        return Ok(t);
    }
    if !valid_topic_name(name) {
        return Err(ResponseError::InvalidTopicException);
    }
    if !(allow_create && broker.cfg.auto_create_topics) {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    let cfg = broker.cfg.new_topic_config();
    match broker.log.create_topic(name, cfg) {
        Ok(t) => {
            tracing::info!(
                topic = name,
                partitions = broker.cfg.default_partitions,
                "auto-created topic"
            );
            Ok(t)
        }
        // Another connection created it between our lookup and create.
        Err(TopicError::AlreadyExists(_)) => broker
            .log
            .topic(name)
            .ok_or(ResponseError::UnknownTopicOrPartition),
        Err(TopicError::InvalidName(_)) => Err(ResponseError::InvalidTopicException),
        Err(e) => {
            tracing::warn!(topic = name, "auto-create failed: {e}");
            Err(ResponseError::KafkaStorageError)
        }
    }
}

/// The partition `index` of `topic`, if it exists.
pub(crate) fn partition(topic: &Topic, index: i32) -> Option<&Arc<rill_log::Partition>> {
    u32::try_from(index).ok().and_then(|i| topic.partition(i))
}

/// Translates a CreateTopics entry to a Rill topic config.
///
/// Understood configs: `retention.ms`, `retention.bytes` (-1 = unlimited), `segment.bytes`,
/// `segment.ms`, `max.message.bytes`, `cleanup.policy` (`delete`, `compact`,
/// `compact,delete`), `delete.retention.ms`, `min.compaction.lag.ms`, Confluent Server's `confluent.value.schema.validation` and
/// `confluent.key.schema.validation` (`true`/`false`), `flush.messages` (`1` = flush `always`), `flush.ms` (= flush `interval:N`)
/// and Rill's own `rill.flush` (`always`, `never`, `interval:N`). Any other config name is
/// rejected with `INVALID_CONFIG`, as Kafka does, so a client never believes a setting took
/// effect when it did not.
fn topic_config(
    broker: &Broker,
    t: &CreatableTopic,
) -> Result<TopicConfig, (ResponseError, String)> {
    let mut cfg = broker.cfg.new_topic_config();
    cfg.partitions = match t.num_partitions {
        -1 => broker.cfg.default_partitions,
        n if n >= 1 => n as u32,
        n => return Err((ResponseError::InvalidPartitions, format!("{n} partitions"))),
    };
    if !matches!(t.replication_factor, -1 | 1) {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {} (Rill is a single node: use 1 or -1)",
                t.replication_factor
            ),
        ));
    }
    if !t.assignments.is_empty() {
        return Err((
            ResponseError::InvalidRequest,
            "manual replica assignment is not supported".into(),
        ));
    }
    for c in &t.configs {
        let value = c.value.as_ref().map(|v| v.as_str()).unwrap_or("");
        let bad = || {
            (
                ResponseError::InvalidConfig,
                format!("invalid value {value:?} for {}", c.name.as_str()),
            )
        };
        let num = || value.trim().parse::<i64>().map_err(|_| bad());
        match c.name.as_str() {
            "retention.ms" => cfg.retention_ms = u64::try_from(num()?).ok(),
            "retention.bytes" => cfg.retention_bytes = u64::try_from(num()?).ok(),
            "segment.bytes" => cfg.segment_bytes = u64::try_from(num()?).map_err(|_| bad())?,
            "segment.ms" => cfg.segment_ms = u64::try_from(num()?).map_err(|_| bad())?,
            "max.message.bytes" => {
                cfg.max_message_bytes = u32::try_from(num()?).map_err(|_| bad())?;
            }
            "flush.messages" => {
                if num()? == 1 {
                    cfg.flush = FlushPolicy::Always;
                }
            }
            "flush.ms" => {
                let ms = u64::try_from(num()?).map_err(|_| bad())?;
                // Kafka's default is "infinite" (Long.MAX_VALUE): that is our `never`.
                cfg.flush = if ms == 0 {
                    FlushPolicy::Always
                } else if ms >= i64::MAX as u64 {
                    FlushPolicy::Never
                } else {
                    FlushPolicy::IntervalMs(ms)
                };
            }
            "rill.flush" => cfg.flush = value.parse().map_err(|_| bad())?,
            "cleanup.policy" => {
                cfg.cleanup_policy = value
                    .parse()
                    .map_err(|e: String| (ResponseError::InvalidConfig, e))?;
            }
            "delete.retention.ms" => {
                cfg.delete_retention_ms = u64::try_from(num()?).map_err(|_| bad())?;
            }
            "min.compaction.lag.ms" => {
                cfg.min_compaction_lag_ms = u64::try_from(num()?).map_err(|_| bad())?;
            }
            "confluent.value.schema.validation" => {
                cfg.value_schema_validation = parse_bool(value).ok_or_else(bad)?;
            }
            "confluent.key.schema.validation" => {
                cfg.key_schema_validation = parse_bool(value).ok_or_else(bad)?;
            }
            other => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("unsupported topic config {other:?}"),
                ));
            }
        }
    }
    cfg.validate()
        .map_err(|e| (ResponseError::InvalidConfig, e))?;
    Ok(cfg)
}

/// A boolean config value as Kafka's `ConfigDef` parses one: `true` or `false`, any case.
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// CreateTopics: creates each topic, or with `validate_only` just checks it.
pub(crate) fn create_topics(
    broker: &Broker,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.as_str();
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        let outcome = if !valid_topic_name(name) {
            Err((
                ResponseError::InvalidTopicException,
                format!("invalid topic name {name:?}"),
            ))
        } else {
            topic_config(broker, t).and_then(|cfg| {
                if req.validate_only {
                    if broker.log.topic(name).is_some() {
                        Err((ResponseError::TopicAlreadyExists, format!("topic {name:?} already exists")))
                    } else {
                        Ok(cfg)
                    }
                } else {
                    match broker.log.create_topic(name, cfg.clone()) {
                        Ok(_) => {
                            tracing::info!(topic = name, partitions = cfg.partitions, flush = %cfg.flush, "created topic");
                            Ok(cfg)
                        }
                        Err(e @ TopicError::AlreadyExists(_)) => {
                            Err((ResponseError::TopicAlreadyExists, e.to_string()))
                        }
                        Err(e @ TopicError::InvalidName(_)) => {
                            Err((ResponseError::InvalidTopicException, e.to_string()))
                        }
                        Err(e @ TopicError::InvalidConfig(_)) => {
                            Err((ResponseError::InvalidConfig, e.to_string()))
                        }
                        Err(e) => Err((ResponseError::KafkaStorageError, e.to_string())),
                    }
                }
            })
        };
        match outcome {
            Ok(cfg) => {
                if version >= 5 {
                    r = r
                        .with_num_partitions(cfg.partitions as i32)
                        .with_replication_factor(1)
                        .with_configs(Some(Vec::new()));
                }
            }
            Err((code, msg)) => {
                broker.stats.count_error(code.code());
                r = r.with_error_code(code.code());
                if version >= 1 {
                    r = r.with_error_message(Some(StrBytes::from_string(msg)));
                }
            }
        }
        results.push(r);
    }
    CreateTopicsResponse::default().with_topics(results)
}
