//! The admin HTTP API (JSON over HTTP/1.1), served with axum. Routes are listed in
//! [`router`]; bodies are in [`super::api`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::api::*;
use super::{deployments, groups, topics};
use crate::host::Host;
use crate::scheduler::DeployError;

pub(super) type H = State<Arc<Host>>;

/// The admin API's routes.
pub fn router(host: Arc<Host>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route(
            "/v1/topics",
            get(topics::list_topics).post(topics::create_topic),
        )
        .route(
            "/v1/topics/{name}",
            get(topics::get_topic).delete(topics::delete_topic),
        )
        .route("/v1/topics/{name}/records", post(topics::produce))
        .route("/v1/topics/{name}/fetch", post(topics::fetch))
        .route("/v1/groups", get(groups::list_groups))
        .route("/v1/groups/{group}/offsets", post(topics::commit_offsets))
        .route(
            "/v1/deployments",
            get(deployments::list_deployments).post(deployments::deploy),
        )
        .route(
            "/v1/deployments/{name}",
            get(deployments::get_deployment).delete(deployments::undeploy),
        )
        .route("/v1/deployments/{name}/pause", post(deployments::pause))
        .route("/v1/deployments/{name}/resume", post(deployments::resume))
        .route("/v1/deployments/{name}/logs", get(deployments::logs))
        .route("/metrics", get(crate::admin::prometheus::metrics))
        // Modules can be several MiB, produce requests larger still.
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(host)
}

/// An error answer: a status code and one line.
pub struct Fail(pub(super) StatusCode, pub(super) String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        // The API promises one line; some causes (a compiler's message) carry several.
        let error = self.1.replace('\n', " ");
        (self.0, Json(ApiError { error })).into_response()
    }
}

pub(super) fn bad(msg: impl Into<String>) -> Fail {
    Fail(StatusCode::BAD_REQUEST, msg.into())
}

pub(super) fn not_found(msg: impl Into<String>) -> Fail {
    Fail(StatusCode::NOT_FOUND, msg.into())
}

impl From<DeployError> for Fail {
    fn from(e: DeployError) -> Self {
        let code = match &e {
            DeployError::UnknownTopic(_) | DeployError::UnknownDeployment(_) => {
                StatusCode::NOT_FOUND
            }
            DeployError::Module(_) | DeployError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Fail(code, e.to_string())
    }
}

async fn status(State(host): H) -> Json<Status> {
    let unhealthy = host
        .scheduler
        .list()
        .into_iter()
        .filter(|d| d.state == "failed" || d.state == "degraded")
        .map(|d| format!("{} ({})", d.spec.name, d.state))
        .collect();
    Json(Status {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: host.started.elapsed().as_secs(),
        data_dir: host.config.data_dir.display().to_string(),
        admin_addr: host.config.admin_addr.to_string(),
        kafka_addr: host.kafka_addr.map(|a| a.to_string()),
        topics: host.log.topics().len(),
        deployments: host.scheduler.list().len(),
        unhealthy_deployments: unhealthy,
        recovery: host
            .log
            .recovery_report()
            .iter()
            .map(|e| e.to_string())
            .collect(),
        restore_failures: host.restore_failures.clone(),
    })
}
