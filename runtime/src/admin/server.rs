//! The admin HTTP API (JSON over HTTP/1.1), served with axum. Routes are listed in
//! [`router`]; bodies are in [`super::api`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::api::*;
use super::{deployments, groups, state, topics};
use crate::host::Host;
use crate::scheduler::DeployError;

pub(super) type H = State<Arc<Host>>;

/// The admin API's routes.
pub fn router(host: Arc<Host>) -> Router {
    let max = host.config.admin_max_body_bytes;
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
        .route("/v1/deployments/{name}/state", get(state::scan))
        .route("/v1/deployments/{name}/state/{*key}", get(state::get))
        .route("/metrics", get(crate::admin::prometheus::metrics))
        // Two guards: the middleware refuses a body whose Content-Length is over the cap
        // before anything reads it, and the body limit stops a chunked one (no length) as
        // soon as it passes the cap; the middleware gives both the API's JSON error shape.
        .layer(axum::middleware::from_fn_with_state(
            host.clone(),
            embedded_only,
        ))
        .layer(axum::middleware::from_fn_with_state(max, limit_body))
        .layer(axum::extract::DefaultBodyLimit::max(max))
        .with_state(host)
}

/// Refuses request bodies over `max` bytes with a one-line JSON 413 (see [`router`]).
async fn limit_body(
    State(max): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        let mut resp = too_large(max);
        // The unread body is still on its way: do not keep the connection for another
        // request behind it.
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return resp;
    }
    let resp = next.run(req).await;
    // axum's own rejection when the body limit is hit is plain text.
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(max);
    }
    resp
}

/// In cluster mode topics, records and groups live in the Kafka cluster: the routes that
/// serve the embedded log's refuse, naming where to go instead.
async fn embedded_only(
    State(host): H,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if let Some(c) = &host.cluster
        && (path.starts_with("/v1/topics") || path.starts_with("/v1/groups"))
    {
        return bad(format!(
            "this host runs in cluster mode: topics, records and groups live in the Kafka \
             cluster at {}; use Kafka's tools or clients there",
            c.bootstrap()
        ))
        .into_response();
    }
    next.run(req).await
}

fn too_large(max: usize) -> Response {
    Fail(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body over the admin API limit of {max} bytes (admin_max_body_bytes)"),
    )
    .into_response()
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
            DeployError::Schema(_) => StatusCode::CONFLICT,
            DeployError::SchemaRegistry(_) => StatusCode::SERVICE_UNAVAILABLE,
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
        cluster: host.cluster.as_ref().map(|c| c.status()),
        schema_registry: match (
            &host.schema_registry,
            host.schema_registry_addr,
            &host.schemas,
        ) {
            (Some(r), Some(addr), _) => {
                let (subjects, schemas) = r.counts();
                Some(format!(
                    "http://{addr} (this host; {subjects} subjects, {schemas} schemas)"
                ))
            }
            (_, _, Some(s)) => Some(format!("{} (external)", s.url())),
            _ => None,
        },
    })
}
