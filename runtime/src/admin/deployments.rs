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
use crate::deployment::{DeploymentSpec, StartFrom};

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
    let d = &host.config.defaults;
    let spec = DeploymentSpec {
        group: req.group.unwrap_or_else(|| req.name.clone()),
        name: req.name,
        topic: req.topic,
        from: req.from.unwrap_or(StartFrom::Earliest),
        outputs: req.outputs,
        env: req.env,
        limits: req.limits.unwrap_or_default(),
        max_attempts: req.max_attempts.unwrap_or(d.max_attempts),
        on_failure: req.on_failure.unwrap_or_default(),
        max_batch_records: req.max_batch_records.unwrap_or(d.max_batch_records),
        max_batch_bytes: d.max_batch_bytes,
        linger_ms: req.linger_ms.unwrap_or(0),
        backoff_initial_ms: req.backoff_initial_ms.unwrap_or(100),
        backoff_max_ms: req.backoff_max_ms.unwrap_or(10_000),
        module_hash: String::new(),
        paused: req.paused,
    };
    let info = host.scheduler.deploy(spec, &wasm).await?;
    Ok((StatusCode::CREATED, Json(info)))
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
    Ok(Json(host.scheduler.set_paused(&name, true)?))
}

pub(super) async fn resume(
    State(host): H,
    Path(name): Path<String>,
) -> Result<Json<crate::scheduler::DeploymentInfo>, Fail> {
    Ok(Json(host.scheduler.set_paused(&name, false)?))
}

#[derive(Deserialize)]
pub(super) struct LogsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
    limit: Option<usize>,
}

pub(super) async fn logs(
    State(host): H,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<Vec<crate::handler_logs::LogEntry>>, Fail> {
    let shared = host.scheduler.shared(&name)?;
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let mut lines = shared.logs.after(q.after, limit);
    if lines.is_empty() && q.wait_ms > 0 {
        let wait = Duration::from_millis(q.wait_ms.min(60_000));
        tokio::select! {
            _ = shared.logs.wait_after(q.after, wait) => {}
            _ = host.stopping() => {}
        }
        lines = shared.logs.after(q.after, limit);
    }
    Ok(Json(lines))
}
