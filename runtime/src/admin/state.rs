//! Queries of deployments' durable state (the read side of CQRS): one key, or a scan.
//!
//! A query reads the stores, which hold only what was committed with the offsets: never a
//! change of an invocation still running or one that failed.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use base64::Engine as _;
use serde::Deserialize;

use super::api::{StateEntry, StateScan};
use super::server::{Fail, H, bad, not_found};
use crate::state::{DeploymentState, PartitionStore, Serving};

fn entry(store: &PartitionStore, key: &[u8], value: Vec<u8>) -> StateEntry {
    let (value, value_b64) = match String::from_utf8(value) {
        Ok(text) => (Some(text), None),
        Err(e) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
        ),
    };
    StateEntry {
        key: String::from_utf8_lossy(key).into_owned(),
        partition: store.partition(),
        value,
        value_b64,
        position: store.position(),
    }
}

/// The stores a query reads (one partition's, or every partition's) that this host runs,
/// and the partitions it does not run (cluster mode: other hosts run them). A store being
/// restored answers 503: its state is not known yet.
fn stores(
    state: &DeploymentState,
    partition: Option<u32>,
) -> Result<(Vec<Arc<PartitionStore>>, Vec<u32>), Fail> {
    let all: Vec<_> = match partition {
        Some(p) => vec![
            state
                .store(p)
                .ok_or_else(|| bad(format!("no partition {p}")))?
                .clone(),
        ],
        None => state.partitions.clone(),
    };
    let mut here = Vec::new();
    let mut elsewhere = Vec::new();
    for s in all {
        match s.serving() {
            Serving::Ready => here.push(s),
            Serving::Elsewhere => elsewhere.push(s.partition()),
            Serving::Restoring => {
                return Err(Fail(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the state of partition {} is being restored; try again shortly",
                        s.partition()
                    ),
                ));
            }
        }
    }
    Ok((here, elsewhere))
}

#[derive(Deserialize)]
pub(super) struct GetQuery {
    partition: Option<u32>,
}

/// `GET /v1/deployments/{name}/state/{key}`: the key's value. State is per partition; the
/// partitions are searched in order and the first holding the key answers (a handler keyed
/// like its records keeps each key in one partition), unless `partition` names one.
pub(super) async fn get(
    State(host): H,
    Path((name, key)): Path<(String, String)>,
    Query(q): Query<GetQuery>,
) -> Result<Json<StateEntry>, Fail> {
    let state = host.scheduler.state(&name)?;
    let (here, elsewhere) = stores(&state, q.partition)?;
    for store in here {
        if let Some(v) = store.get(key.as_bytes()) {
            return Ok(Json(entry(&store, key.as_bytes(), v)));
        }
    }
    let not_here = if elsewhere.is_empty() {
        String::new()
    } else {
        format!(" (partitions {elsewhere:?} are not run by this host: ask the hosts that run them)")
    };
    Err(not_found(format!(
        "deployment '{name}' has no state for key '{key}'{not_here}"
    )))
}

#[derive(Deserialize)]
pub(super) struct ScanQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<usize>,
    partition: Option<u32>,
}

/// Most entries one scan page returns.
const MAX_SCAN: usize = 10_000;

/// `GET /v1/deployments/{name}/state?prefix=&after=&limit=&partition=`: entries whose key
/// starts with `prefix`, after `after`, in key order across partitions, `limit` (default
/// 100, at most 10,000) per page.
pub(super) async fn scan(
    State(host): H,
    Path(name): Path<String>,
    Query(q): Query<ScanQuery>,
) -> Result<Json<StateScan>, Fail> {
    let state = host.scheduler.state(&name)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_SCAN);
    let prefix = q.prefix.as_bytes();
    let after = q.after.as_deref().map(str::as_bytes);
    let mut all: Vec<(Vec<u8>, Vec<u8>, Arc<PartitionStore>)> = Vec::new();
    let (here, elsewhere) = stores(&state, q.partition)?;
    for store in here {
        for (k, v) in store.scan(prefix, after, limit + 1) {
            all.push((k, v, store.clone()));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let more = all.len() > limit;
    all.truncate(limit);
    let next_after = more
        .then(|| {
            all.last()
                .map(|(k, _, _)| String::from_utf8_lossy(k).into_owned())
        })
        .flatten();
    let entries = all
        .into_iter()
        .map(|(k, v, store)| entry(&store, &k, v))
        .collect();
    Ok(Json(StateScan {
        entries,
        next_after,
        elsewhere,
    }))
}
