//! Deployment routes: deploy, list, undeploy, pause, resume, logs.

use std::time::Duration;

use axum::extract::Query;
use base64::Engine as _;
use serde::Deserialize;

use super::api::Deploy;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::server::{Fail, H, bad};
use crate::config::Defaults;
use crate::deployment::{DeploymentSpec, StartFrom};
use crate::handler_logs::RING_CAPACITY;

pub(super) async fn list_deployments(
    State(host): H,
) -> Json<Vec<crate::scheduler::DeploymentInfo>> {
    Json(host.scheduler.list())
}

pub(super) async fn get_deployment(
    State(host): H,
    Path(name): Path<String>,
) -> Result<Json<crate::scheduler::DeploymentInfo>, Fail> {
    Ok(Json(host.scheduler.info(&name)?))
}

pub(super) async fn deploy(
    State(host): H,
    Json(req): Json<Deploy>,
) -> Result<(StatusCode, Json<crate::scheduler::DeploymentInfo>), Fail> {
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(&req.wasm_b64)
        .map_err(|e| bad(format!("invalid wasm_b64: {e}")))?;
    let defaults = host.config.defaults.clone();
    let name = req.name.clone();
    let reset = req.reset;
    let info = host
        .scheduler
        .deploy(&name, &wasm, reset, |existing| {
            resolve(req, existing, &defaults)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// The spec a deploy request asks for: what it names, else what the existing deployment of
/// that name has (a redeploy keeps its group, pause state, limits and retry settings), else
/// the host's defaults. Stopped partitions are not carried over: a redeploy restarts them.
fn resolve(req: Deploy, existing: Option<&DeploymentSpec>, d: &Defaults) -> DeploymentSpec {
    let base_limits = existing.map(|e| e.limits.clone()).unwrap_or_default();
    DeploymentSpec {
        group: req
            .group
            .or_else(|| existing.map(|e| e.group.clone()))
            .unwrap_or_else(|| req.name.clone()),
        name: req.name,
        topic: req.topic,
        // A replay starts over from the beginning, whatever the deployment started from.
        from: if req.reset {
            StartFrom::Earliest
        } else {
            req.from
                .or(existing.map(|e| e.from))
                .unwrap_or(StartFrom::Earliest)
        },
        outputs: req
            .outputs
            .or_else(|| existing.map(|e| e.outputs.clone()))
            .unwrap_or_default(),
        env: req
            .env
            .or_else(|| existing.map(|e| e.env.clone()))
            .unwrap_or_default(),
        limits: req.limits.unwrap_or_default().apply(&base_limits),
        max_attempts: req
            .max_attempts
            .or(existing.map(|e| e.max_attempts))
            .unwrap_or(d.max_attempts),
        on_failure: req
            .on_failure
            .or(existing.map(|e| e.on_failure))
            .unwrap_or_default(),
        guarantee: req
            .guarantee
            .or(existing.map(|e| e.guarantee))
            .unwrap_or_default(),
        max_batch_records: req
            .max_batch_records
            .or(existing.map(|e| e.max_batch_records))
            .unwrap_or(d.max_batch_records),
        max_batch_bytes: req
            .max_batch_bytes
            .or(existing.map(|e| e.max_batch_bytes))
            .unwrap_or(d.max_batch_bytes),
        linger_ms: req.linger_ms.or(existing.map(|e| e.linger_ms)).unwrap_or(0),
        backoff_initial_ms: req
            .backoff_initial_ms
            .or(existing.map(|e| e.backoff_initial_ms))
            .unwrap_or(crate::deployment::DEFAULT_BACKOFF_MS),
        backoff_max_ms: req
            .backoff_max_ms
            .or(existing.map(|e| e.backoff_max_ms))
            .unwrap_or(crate::deployment::DEFAULT_BACKOFF_MAX_MS),
        module_hash: String::new(),
        paused: req.paused.or(existing.map(|e| e.paused)).unwrap_or(false),
        stopped: Vec::new(),
        state: false,
    }
}

#[derive(Deserialize)]
pub(super) struct UndeployQuery {
    #[serde(default)]
    drop_offsets: bool,
}

pub(super) async fn undeploy(
    State(host): H,
    Path(name): Path<String>,
    Query(q): Query<UndeployQuery>,
) -> Result<StatusCode, Fail> {
    host.scheduler.undeploy(&name, q.drop_offsets).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn pause(
    State(host): H,
    Path(name): Path<String>,
) -> Result<Json<crate::scheduler::DeploymentInfo>, Fail> {
    Ok(Json(host.scheduler.set_paused(&name, true).await?))
}

pub(super) async fn resume(
    State(host): H,
    Path(name): Path<String>,
) -> Result<Json<crate::scheduler::DeploymentInfo>, Fail> {
    Ok(Json(host.scheduler.set_paused(&name, false).await?))
}

#[derive(Deserialize)]
pub(super) struct LogsQuery {
    /// Lines after this sequence number, oldest first (for following).
    after: Option<u64>,
    /// Without `after`: the newest this many lines.
    tail: Option<usize>,
    #[serde(default)]
    wait_ms: u64,
    limit: Option<usize>,
}

pub(super) async fn logs(
    State(host): H,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<Vec<crate::handler_logs::LogEntry>>, Fail> {
    let logs = host.scheduler.handler_logs(&name)?;
    let limit = q.limit.unwrap_or(1000).min(RING_CAPACITY);
    let Some(after) = q.after else {
        // Without a position, the newest lines: what someone looking at a failing handler
        // wants first. Following continues with `after` = the last one's `seq`.
        return Ok(Json(logs.tail(q.tail.unwrap_or(limit).min(limit))));
    };
    let mut lines = logs.after(after, limit);
    if lines.is_empty() && q.wait_ms > 0 {
        let wait = Duration::from_millis(q.wait_ms.min(60_000));
        tokio::select! {
            _ = logs.wait_after(after, wait) => {}
            _ = host.stopping() => {}
        }
        lines = logs.after(after, limit);
    }
    Ok(Json(lines))
}
