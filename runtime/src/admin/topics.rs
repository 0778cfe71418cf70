//! Topic and record routes: create, describe, delete, produce, fetch, commit.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;

use rill_log::{AppendError, CleanupPolicy, FlushPolicy, Header, Record, TopicConfig, TopicError};

use super::api::*;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::server::{Fail, H, bad, not_found};
use crate::deployment::StartFrom;
use crate::host::Host;

fn append_fail(e: AppendError) -> Fail {
    let msg = e.to_string();
    // A full disk is the client's to know about, distinctly: nothing was appended.
    let code = if msg.contains("No space left") || msg.contains("ENOSPC") {
        StatusCode::INSUFFICIENT_STORAGE
    } else if matches!(
        e,
        AppendError::InvalidBatch(_) | AppendError::NullKeyInCompactedTopic
    ) {
        StatusCode::BAD_REQUEST
    } else if matches!(e, AppendError::MessageTooLarge { .. }) {
        // The topic's max.message.bytes, as the Kafka door's MESSAGE_TOO_LARGE.
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Fail(code, format!("append failed: {msg}"))
}

/// A refusal by schema validation: the client's doing (400), or a registry that could not
/// be asked (503, worth retrying). Nothing was appended either way.
fn schema_fail(r: rill_kafka::validation::Refusal) -> Fail {
    use rill_kafka::validation::Refusal;
    match r {
        Refusal::Invalid { message, .. } => bad(message),
        other => Fail(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

fn topic_info(t: &rill_log::Topic) -> TopicInfo {
    let c = t.config();
    TopicInfo {
        name: t.name().to_owned(),
        partitions: c.partitions,
        flush: c.flush.to_string(),
        retention_ms: c.retention_ms,
        retention_bytes: c.retention_bytes,
        cleanup_policy: c.cleanup_policy.to_string(),
        delete_retention_ms: c.delete_retention_ms,
        min_compaction_lag_ms: c.min_compaction_lag_ms,
        value_schema_validation: c.value_schema_validation,
        key_schema_validation: c.key_schema_validation,
        partition_info: t
            .partitions()
            .iter()
            .map(|p| PartitionSummary {
                partition: p.id(),
                start: p.log_start_offset(),
                end: p.high_watermark(),
                size_bytes: p.size_bytes(),
            })
            .collect(),
    }
}

pub(super) async fn list_topics(State(host): H) -> Json<Vec<TopicInfo>> {
    Json(host.log.topics().iter().map(|t| topic_info(t)).collect())
}

pub(super) async fn get_topic(
    State(host): H,
    Path(name): Path<String>,
) -> Result<Json<TopicInfo>, Fail> {
    let t = host
        .log
        .topic(&name)
        .ok_or_else(|| not_found(format!("unknown topic '{name}'")))?;
    Ok(Json(topic_info(&t)))
}

pub(super) async fn create_topic(
    State(host): H,
    Json(req): Json<CreateTopic>,
) -> Result<(StatusCode, Json<TopicInfo>), Fail> {
    let d = &host.config.defaults;
    let flush = match &req.flush {
        Some(s) => s.parse::<FlushPolicy>().map_err(|_| {
            bad(format!(
                "invalid flush policy '{s}' (want always, never or interval:MS)"
            ))
        })?,
        None => d.flush,
    };
    let partitions = req.partitions.unwrap_or(d.partitions);
    if partitions == 0 || partitions > 10_000 {
        return Err(bad(format!(
            "invalid partition count {partitions} (want 1 to 10000)"
        )));
    }
    let mut cfg = TopicConfig {
        partitions,
        flush,
        ..TopicConfig::default()
    };
    cfg.retention_ms = req.retention_ms;
    cfg.retention_bytes = req.retention_bytes;
    if let Some(s) = req.segment_bytes {
        cfg.segment_bytes = s;
    }
    if let Some(p) = &req.cleanup_policy {
        cfg.cleanup_policy = p.parse::<CleanupPolicy>().map_err(bad)?;
    }
    if let Some(ms) = req.delete_retention_ms {
        cfg.delete_retention_ms = ms;
    }
    if let Some(ms) = req.min_compaction_lag_ms {
        cfg.min_compaction_lag_ms = ms;
    }
    cfg.value_schema_validation = req.value_schema_validation.unwrap_or(false);
    cfg.key_schema_validation = req.key_schema_validation.unwrap_or(false);
    let log = host.log.clone();
    let name = req.name.clone();
    let t = tokio::task::spawn_blocking(move || log.create_topic(&name, cfg))
        .await
        .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| match e {
            TopicError::AlreadyExists(_) => Fail(StatusCode::CONFLICT, e.to_string()),
            TopicError::InvalidName(_) | TopicError::InvalidConfig(_) => bad(e.to_string()),
            other => Fail(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?;
    Ok((StatusCode::CREATED, Json(topic_info(&t))))
}

pub(super) async fn delete_topic(
    State(host): H,
    Path(name): Path<String>,
) -> Result<StatusCode, Fail> {
    if host.schema_registry.is_some() && name == crate::schema::store::TOPIC {
        return Err(Fail(
            StatusCode::CONFLICT,
            format!("topic '{name}' holds this host's schema registry and cannot be deleted"),
        ));
    }
    let users: Vec<_> = host
        .scheduler
        .consumed_topics()
        .into_iter()
        .filter(|(t, _)| *t == name)
        .map(|(_, d)| d)
        .collect();
    if !users.is_empty() {
        return Err(Fail(
            StatusCode::CONFLICT,
            format!(
                "topic '{name}' is consumed by deployment(s) {}; undeploy them first",
                users.join(", ")
            ),
        ));
    }
    host.log.delete_topic(&name).map_err(|e| match e {
        TopicError::NotFound(_) => not_found(e.to_string()),
        other => Fail(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn produce(
    State(host): H,
    Path(name): Path<String>,
    Json(req): Json<Produce>,
) -> Result<Json<Produced>, Fail> {
    if host.schema_registry.is_some() && name == crate::schema::store::TOPIC {
        return Err(Fail(
            StatusCode::CONFLICT,
            format!(
                "topic '{name}' holds this host's schema registry: register schemas through its API"
            ),
        ));
    }
    let topic = host
        .log
        .topic(&name)
        .ok_or_else(|| not_found(format!("unknown topic '{name}'")))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    // Decode and place every record before appending any, so a bad record rejects the
    // whole request and nothing is half-written.
    let mut values = Vec::with_capacity(req.records.len());
    let mut keys = Vec::with_capacity(req.records.len());
    let mut placed = Vec::with_capacity(req.records.len());
    let decode = |i: usize, what: &str, text: &Option<String>, b64_text: &Option<String>| match (
        text, b64_text,
    ) {
        (Some(v), None) => Ok(Some(v.as_bytes().to_vec())),
        (None, Some(text)) => b64
            .decode(text)
            .map(Some)
            .map_err(|e| bad(format!("record {i}: invalid {what}_b64: {e}"))),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(bad(format!(
            "record {i}: give {what} or {what}_b64, not both"
        ))),
    };
    for (i, r) in req.records.iter().enumerate() {
        let value = decode(i, "value", &r.value, &r.value_b64)?;
        let key = decode(i, "key", &r.key, &r.key_b64)?;
        let p = match r.partition {
            Some(p) if p >= topic.config().partitions => {
                return Err(bad(format!(
                    "record {i}: partition {p} does not exist (topic '{name}' has {})",
                    topic.config().partitions
                )));
            }
            Some(p) => p,
            None => topic.partition_for_key(key.as_deref()),
        };
        values.push(value);
        keys.push(key);
        placed.push(p);
    }
    let topic2 = topic.clone();
    let validator = host.schema_validator.clone();
    let offsets = tokio::task::spawn_blocking(move || -> Result<Vec<(u32, i64)>, Fail> {
        if rill_kafka::validation::validates(topic2.config()) {
            let records: Vec<_> = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| (k.as_deref(), v.as_deref()))
                .collect();
            validator
                .check_records(topic2.name(), topic2.config(), &records, true)
                .map_err(schema_fail)?;
        }
        let mut out = vec![(0u32, 0i64); req.records.len()];
        let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, p) in placed.iter().enumerate() {
            by_partition.entry(*p).or_default().push(i);
        }
        for (p, idx) in by_partition {
            let headers: Vec<Vec<Header<'_>>> = idx
                .iter()
                .map(|&i| {
                    req.records[i]
                        .headers
                        .iter()
                        .map(|(k, v)| Header {
                            key: k.as_str(),
                            value: Some(v.as_bytes()),
                        })
                        .collect()
                })
                .collect();
            let records: Vec<Record<'_>> = idx
                .iter()
                .zip(&headers)
                .map(|(&i, h)| Record {
                    key: keys[i].as_deref(),
                    value: values[i].as_deref(),
                    headers: h,
                    timestamp_ms: req.records[i].timestamp,
                })
                .collect();
            let partition = topic2
                .partition(p)
                .ok_or_else(|| bad(format!("no partition {p}")))?;
            let info = partition.append(&records).map_err(append_fail)?;
            for (k, &i) in idx.iter().enumerate() {
                out[i] = (p, info.base_offset + k as i64);
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(Produced { offsets }))
}

pub(super) async fn fetch(
    State(host): H,
    Path(name): Path<String>,
    Json(req): Json<Fetch>,
) -> Result<Json<Fetched>, Fail> {
    let topic = host
        .log
        .topic(&name)
        .ok_or_else(|| not_found(format!("unknown topic '{name}'")))?;
    let mut positions = match req.positions {
        Some(p) => p,
        None => start_positions(&host, &topic, req.from.as_deref(), req.group.as_deref())?,
    };
    let max_records = req.max_records.clamp(1, 100_000);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.wait_ms.min(60_000));
    loop {
        // Listen before looking, so an append between the look and the wait is not missed.
        let listeners: Vec<_> = topic.partitions().iter().map(|p| p.listen()).collect();
        let records =
            super::records::collect(&topic, &mut positions, max_records, req.read_committed)
                .map_err(|e| {
                    Fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("read failed: {e}"),
                    )
                })?;
        if !records.is_empty() || tokio::time::Instant::now() >= deadline {
            let ends = topic
                .partitions()
                .iter()
                .map(|p| (p.id(), p.high_watermark()))
                .collect();
            return Ok(Json(Fetched {
                records,
                positions,
                ends,
            }));
        }
        let any = futures_select_all(listeners);
        tokio::select! {
            _ = tokio::time::timeout_at(deadline, any) => {}
            _ = host.stopping() => {
                return Err(Fail(StatusCode::SERVICE_UNAVAILABLE, "host is shutting down".into()));
            }
        }
    }
}

/// Resolves once any listener fires.
pub(super) async fn futures_select_all(listeners: Vec<event_listener::EventListener>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut tasks = Vec::with_capacity(listeners.len());
    for l in listeners {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            l.await;
            let _ = tx.send(()).await;
        }));
    }
    drop(tx);
    let _ = rx.recv().await;
    for t in tasks {
        t.abort();
    }
}

fn start_positions(
    host: &Host,
    topic: &rill_log::Topic,
    from: Option<&str>,
    group: Option<&str>,
) -> Result<BTreeMap<u32, i64>, Fail> {
    let from: StartFrom = from.unwrap_or("earliest").parse().map_err(bad)?;
    let mut out = BTreeMap::new();
    for p in topic.partitions() {
        let committed = group.and_then(|g| host.log.offsets().fetch(g, topic.name(), p.id()));
        let o = match committed {
            Some(o) => o.clamp(p.log_start_offset(), p.high_watermark()),
            None => from
                .resolve(p)
                .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e))?,
        };
        out.insert(p.id(), o);
    }
    Ok(out)
}

pub(super) async fn commit_offsets(
    State(host): H,
    Path(group): Path<String>,
    Json(req): Json<CommitOffsets>,
) -> Result<StatusCode, Fail> {
    let topic = host
        .log
        .topic(&req.topic)
        .ok_or_else(|| not_found(format!("unknown topic '{}'", req.topic)))?;
    for (p, o) in req.offsets {
        let part = topic
            .partition(p)
            .ok_or_else(|| bad(format!("no partition {p}")))?;
        if o < 0 || o > part.high_watermark() {
            return Err(bad(format!(
                "offset {o} is outside partition {p} (end {})",
                part.high_watermark()
            )));
        }
        host.log
            .offsets()
            .commit(&group, &req.topic, p, o)
            .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    Ok(StatusCode::NO_CONTENT)
}
