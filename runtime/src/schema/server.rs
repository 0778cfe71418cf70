//! The registry's REST API: the subset of Confluent's Schema Registry API that serializers,
//! deserializers and tools use (docs/schemas.md lists it), served on its own listener
//! (127.0.0.1:8081 by default).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use rill_schema::{CompatibilityLevel, SchemaType};

use super::client::Reference;
use super::registry::{Registry, RegistryError, SubjectVersion, VersionSel};

type R = State<Arc<Registry>>;
type Q = Query<HashMap<String, String>>;

/// The registry's routes.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(|| async { reply(StatusCode::OK, json!({})) }))
        .route("/schemas/types", get(types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_text_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_text),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route("/config", get(global_config).put(set_global_config))
        .route(
            "/config/{subject}",
            get(subject_config)
                .put(set_subject_config)
                .delete(delete_subject_config),
        )
        .route(
            "/mode",
            get(|| async { reply(StatusCode::OK, json!({"mode": "READWRITE"})) }),
        )
        .route(
            "/mode/{subject}",
            get(|| async { reply(StatusCode::OK, json!({"mode": "READWRITE"})) }),
        )
        .fallback(|| async {
            error(RegistryError {
                status: 404,
                code: 404,
                message: "HTTP 404 Not Found".into(),
            })
        })
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .with_state(registry)
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

fn reply(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

fn error(e: RegistryError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(status, json!({"error_code": e.code, "message": e.message}))
}

fn answer(r: Result<Value, RegistryError>) -> Response {
    match r {
        Ok(v) => reply(StatusCode::OK, v),
        Err(e) => error(e),
    }
}

/// Runs a registry call that may write (and fsync) off the async threads.
async fn blocking(f: impl FnOnce() -> Result<Value, RegistryError> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => answer(r),
        Err(e) => error(RegistryError {
            status: 500,
            code: 50001,
            message: format!("the registry task failed: {e}"),
        }),
    }
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// A schema in a request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

impl SchemaRequest {
    fn parse(body: &[u8]) -> Result<(SchemaType, String, Vec<Reference>), RegistryError> {
        let r: SchemaRequest = serde_json::from_slice(body)
            .map_err(|e| RegistryError::unprocessable(format!("Unrecognized request body: {e}")))?;
        let schema_type = match r.schema_type.as_deref() {
            None | Some("") => SchemaType::Avro,
            Some(t) => t
                .parse()
                .map_err(|e: rill_schema::SchemaError| RegistryError {
                    status: 422,
                    code: 42201,
                    message: format!("Invalid schema: {e}"),
                })?,
        };
        Ok((schema_type, r.schema, r.references))
    }
}

fn schema_id(s: &str) -> Result<u32, RegistryError> {
    s.parse().map_err(|_| RegistryError::schema_not_found(s))
}

/// The schema's text, or with `?format=serialized` its serialized form where the format
/// has one (Protobuf).
fn text_in_format(schema: &super::registry::Schema, q: &HashMap<String, String>) -> String {
    match q.get("format").map(String::as_str) {
        Some("serialized") => schema
            .parsed
            .serialized()
            .unwrap_or_else(|| schema.text.clone()),
        _ => schema.text.clone(),
    }
}

/// The body of a version, as `GET /subjects/{s}/versions/{v}` returns it.
fn version_body(v: &SubjectVersion, q: &HashMap<String, String>) -> Value {
    let mut body = json!({
        "subject": v.subject,
        "version": v.version,
        "id": v.schema.id,
        "schema": text_in_format(&v.schema, q),
    });
    add_type_and_refs(&mut body, v.schema.schema_type, &v.schema.references);
    body
}

fn add_type_and_refs(body: &mut Value, schema_type: SchemaType, references: &[Reference]) {
    if schema_type != SchemaType::Avro {
        body["schemaType"] = json!(schema_type.as_str());
    }
    if !references.is_empty() {
        body["references"] = json!(references);
    }
}

async fn types() -> Response {
    reply(
        StatusCode::OK,
        json!(SchemaType::ALL.map(SchemaType::as_str)),
    )
}

async fn schema_by_id(State(r): R, Path(id): Path<String>, Query(q): Q) -> Response {
    answer((|| {
        let s = r.schema(schema_id(&id)?)?;
        let mut body = json!({"schema": text_in_format(&s, &q)});
        add_type_and_refs(&mut body, s.schema_type, &s.references);
        Ok(body)
    })())
}

async fn schema_text_by_id(State(r): R, Path(id): Path<String>) -> Response {
    match schema_id(&id).and_then(|id| r.schema(id)) {
        Ok(s) => {
            let mut resp = s.text.clone().into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            resp
        }
        Err(e) => error(e),
    }
}

async fn subjects_of_id(State(r): R, Path(id): Path<String>, Query(q): Q) -> Response {
    answer((|| {
        let mut subjects: Vec<String> = r
            .uses_of(schema_id(&id)?, flag(&q, "deleted"))?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        subjects.dedup();
        Ok(json!(subjects))
    })())
}

async fn versions_of_id(State(r): R, Path(id): Path<String>, Query(q): Q) -> Response {
    answer((|| {
        let uses = r.uses_of(schema_id(&id)?, flag(&q, "deleted"))?;
        Ok(json!(
            uses.into_iter()
                .map(|(s, v)| json!({"subject": s, "version": v}))
                .collect::<Vec<_>>()
        ))
    })())
}

async fn subjects(State(r): R, Query(q): Q) -> Response {
    let prefix = q.get("subjectPrefix").map(String::as_str).unwrap_or("");
    reply(
        StatusCode::OK,
        json!(r.subjects(flag(&q, "deleted"), prefix)),
    )
}

async fn versions(State(r): R, Path(subject): Path<String>, Query(q): Q) -> Response {
    answer(
        r.versions_of(&subject, flag(&q, "deleted"))
            .map(|v| json!(v)),
    )
}

async fn register(State(r): R, Path(subject): Path<String>, body: Bytes) -> Response {
    blocking(move || {
        let (schema_type, text, references) = SchemaRequest::parse(&body)?;
        let id = r.register(&subject, schema_type, &text, references)?;
        Ok(json!({"id": id}))
    })
    .await
}

async fn lookup(State(r): R, Path(subject): Path<String>, Query(q): Q, body: Bytes) -> Response {
    // Parsing a schema (a Protobuf compile) is work: off the async threads.
    blocking(move || {
        let (schema_type, text, references) = SchemaRequest::parse(&body)?;
        let v = r.lookup(
            &subject,
            schema_type,
            &text,
            &references,
            flag(&q, "deleted"),
        )?;
        Ok(version_body(&v, &q))
    })
    .await
}

async fn version(
    State(r): R,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    answer((|| {
        Ok(version_body(
            &r.version(&subject, VersionSel::parse(&version)?, flag(&q, "deleted"))?,
            &q,
        ))
    })())
}

async fn version_text(
    State(r): R,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    match VersionSel::parse(&version).and_then(|v| r.version(&subject, v, flag(&q, "deleted"))) {
        Ok(v) => {
            let mut resp = v.schema.text.clone().into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            resp
        }
        Err(e) => error(e),
    }
}

async fn referenced_by(State(r): R, Path((subject, version)): Path<(String, String)>) -> Response {
    answer((|| {
        Ok(json!(
            r.referenced_by(&subject, VersionSel::parse(&version)?)?
        ))
    })())
}

async fn delete_version(
    State(r): R,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let permanent = flag(&q, "permanent");
    blocking(move || {
        Ok(json!(r.delete_version(
            &subject,
            VersionSel::parse(&version)?,
            permanent
        )?))
    })
    .await
}

async fn delete_subject(State(r): R, Path(subject): Path<String>, Query(q): Q) -> Response {
    let permanent = flag(&q, "permanent");
    blocking(move || Ok(json!(r.delete_subject(&subject, permanent)?))).await
}

fn compatibility(
    r: &Registry,
    subject: &str,
    version: Option<&str>,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Value, RegistryError> {
    let (schema_type, text, references) = SchemaRequest::parse(body)?;
    let sel = version.map(VersionSel::parse).transpose()?;
    let problems = r.check(subject, sel, schema_type, &text, &references)?;
    let mut body = json!({"is_compatible": problems.is_empty()});
    if flag(q, "verbose") {
        body["messages"] = json!(problems);
    }
    Ok(body)
}

async fn check_all(State(r): R, Path(subject): Path<String>, Query(q): Q, body: Bytes) -> Response {
    // Against no version at all (a new subject) everything is compatible.
    blocking(move || match compatibility(&r, &subject, None, &q, &body) {
        Err(e) if e.code == 40401 => Ok(json!({"is_compatible": true})),
        other => other,
    })
    .await
}

async fn check_version(
    State(r): R,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Q,
    body: Bytes,
) -> Response {
    blocking(move || compatibility(&r, &subject, Some(&version), &q, &body)).await
}

fn parse_level(body: &[u8]) -> Result<CompatibilityLevel, RegistryError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| RegistryError::unprocessable(format!("Unrecognized request body: {e}")))?;
    let level = v
        .get("compatibility")
        .or_else(|| v.get("compatibilityLevel"))
        .and_then(Value::as_str)
        .ok_or_else(|| RegistryError::invalid_level("missing"))?;
    level
        .parse()
        .map_err(|_| RegistryError::invalid_level(level))
}

async fn global_config(State(r): R) -> Response {
    reply(
        StatusCode::OK,
        json!({"compatibilityLevel": r.level(None).unwrap_or_default().as_str()}),
    )
}

async fn set_global_config(State(r): R, body: Bytes) -> Response {
    blocking(move || {
        let level = parse_level(&body)?;
        r.set_level(None, Some(level))?;
        Ok(json!({"compatibility": level.as_str()}))
    })
    .await
}

async fn subject_config(State(r): R, Path(subject): Path<String>, Query(q): Q) -> Response {
    let level = match r.level(Some(&subject)) {
        Some(l) => Some(l),
        None if flag(&q, "defaultToGlobal") => r.level(None),
        None => None,
    };
    match level {
        Some(l) => reply(StatusCode::OK, json!({"compatibilityLevel": l.as_str()})),
        None => error(RegistryError {
            status: 404,
            code: 40408,
            message: format!(
                "Subject '{subject}' does not have subject-level compatibility configured"
            ),
        }),
    }
}

async fn set_subject_config(State(r): R, Path(subject): Path<String>, body: Bytes) -> Response {
    blocking(move || {
        let level = parse_level(&body)?;
        r.set_level(Some(&subject), Some(level))?;
        Ok(json!({"compatibility": level.as_str()}))
    })
    .await
}

async fn delete_subject_config(State(r): R, Path(subject): Path<String>) -> Response {
    blocking(move || {
        if r.level(Some(&subject)).is_none() {
            return Err(RegistryError::subject_not_found(&subject));
        }
        let before = r.set_level(Some(&subject), None)?;
        Ok(json!({"compatibilityLevel": before.unwrap_or_default().as_str()}))
    })
    .await
}
