//! A client of a Confluent-compatible schema registry (Rill's own, Confluent's, Karapace,
//! Redpanda's), used by the CLI and, in cluster mode, as the host's [`SchemaSource`].

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{IdCache, ParsedSchema, SchemaSource, SchemaType, SourceError, Version};

/// A registry at one base URL.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    agent: ureq::Agent,
    cache: Arc<IdCache>,
}

/// A schema as `GET /schemas/ids/{id}` and `GET /subjects/{s}/versions/{v}` return it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaBody {
    /// The subject (version answers only).
    #[serde(default)]
    pub subject: Option<String>,
    /// The version (version answers only).
    #[serde(default)]
    pub version: Option<i32>,
    /// The id (version answers only).
    #[serde(default)]
    pub id: Option<u32>,
    /// AVRO when absent.
    #[serde(default)]
    pub schema_type: Option<SchemaType>,
    /// The schema text.
    pub schema: String,
    /// The schemas it refers to.
    #[serde(default)]
    pub references: Vec<Reference>,
}

/// A reference from one schema to another subject's version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Reference {
    /// The name the referring schema uses.
    pub name: String,
    /// The subject it is registered under.
    pub subject: String,
    /// Its version.
    pub version: i32,
}

impl RegistryClient {
    /// A client for `base`, such as `http://127.0.0.1:8081`.
    pub fn new(base: &str) -> RegistryClient {
        let base = if base.starts_with("http://") || base.starts_with("https://") {
            base.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        RegistryClient {
            base,
            agent,
            cache: Arc::default(),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, decoded.
    pub fn get(&self, path: &str) -> Result<Value, SourceError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| self.unavailable(e))?;
        self.answer(resp)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, SourceError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .post(&url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .send(body.to_string().as_bytes())
            .map_err(|e| self.unavailable(e))?;
        self.answer(resp)
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Result<Value, SourceError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .put(&url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .send(body.to_string().as_bytes())
            .map_err(|e| self.unavailable(e))?;
        self.answer(resp)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Value, SourceError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .delete(&url)
            .call()
            .map_err(|e| self.unavailable(e))?;
        self.answer(resp)
    }

    /// The schema text, type and references of `id`.
    pub fn schema_body(&self, id: u32) -> Result<SchemaBody, SourceError> {
        let v = self
            .get(&format!("/schemas/ids/{id}"))
            .map_err(|e| match e {
                SourceError::Refused { code: 40403, .. } => SourceError::UnknownId(id),
                e => e,
            })?;
        serde_json::from_value(v).map_err(|e| self.nonsense(e))
    }

    /// Parses a schema body, fetching what it refers to (transitively).
    pub fn parse(&self, body: &SchemaBody, id: u32) -> Result<ParsedSchema, SourceError> {
        let mut dependencies = Vec::new();
        self.collect_dependencies(&body.references, &mut dependencies, 0)?;
        ParsedSchema::parse(
            body.schema_type.unwrap_or_default(),
            &body.schema,
            &dependencies,
        )
        .map_err(|e| SourceError::Unparsable {
            id,
            message: e.to_string(),
        })
    }

    fn collect_dependencies(
        &self,
        references: &[Reference],
        out: &mut Vec<rill_schema::Dependency>,
        depth: usize,
    ) -> Result<(), SourceError> {
        if depth > 32 {
            return Err(SourceError::Unavailable {
                url: self.base.clone(),
                message: "schema references nest deeper than 32".into(),
            });
        }
        for r in references {
            if out.iter().any(|d| d.name == r.name) {
                continue;
            }
            let v = self.get(&format!(
                "/subjects/{}/versions/{}",
                encode(&r.subject),
                r.version
            ))?;
            let body: SchemaBody = serde_json::from_value(v).map_err(|e| self.nonsense(e))?;
            self.collect_dependencies(&body.references, out, depth + 1)?;
            out.push(rill_schema::Dependency {
                name: r.name.clone(),
                schema: body.schema,
            });
        }
        Ok(())
    }

    fn unavailable(&self, e: ureq::Error) -> SourceError {
        SourceError::Unavailable {
            url: self.base.clone(),
            message: e.to_string(),
        }
    }

    fn nonsense(&self, e: impl std::fmt::Display) -> SourceError {
        SourceError::Unavailable {
            url: self.base.clone(),
            message: format!("unexpected answer: {e}"),
        }
    }

    fn answer(&self, mut resp: ureq::http::Response<ureq::Body>) -> Result<Value, SourceError> {
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| SourceError::Unavailable {
                url: self.base.clone(),
                message: e.to_string(),
            })?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| self.nonsense(e))?
        };
        if status >= 400 {
            let code = value
                .get("error_code")
                .and_then(Value::as_u64)
                .unwrap_or(u64::from(status)) as u32;
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("HTTP {status}: {}", text.trim()));
            return Err(SourceError::Refused { code, message });
        }
        Ok(value)
    }
}

impl SchemaSource for RegistryClient {
    fn schema(&self, id: u32) -> Result<Arc<ParsedSchema>, SourceError> {
        self.cache.get_or_load(id, || {
            let body = self.schema_body(id)?;
            self.parse(&body, id).map(Arc::new)
        })
    }

    fn versions(&self, subject: &str) -> Result<Vec<Version>, SourceError> {
        let numbers = self
            .get(&format!("/subjects/{}/versions", encode(subject)))
            .map_err(|e| match e {
                SourceError::Refused { code: 40401, .. } => {
                    SourceError::UnknownSubject(subject.to_string())
                }
                e => e,
            })?;
        let numbers: Vec<i32> = serde_json::from_value(numbers).map_err(|e| self.nonsense(e))?;
        let mut out = Vec::with_capacity(numbers.len());
        for version in numbers {
            let v = self.get(&format!("/subjects/{}/versions/{version}", encode(subject)))?;
            let body: SchemaBody = serde_json::from_value(v).map_err(|e| self.nonsense(e))?;
            let id = body
                .id
                .ok_or_else(|| self.nonsense("a version without an id"))?;
            let schema = self
                .cache
                .get_or_load(id, || self.parse(&body, id).map(Arc::new))?;
            out.push(Version {
                version,
                id,
                schema,
            });
        }
        Ok(out)
    }

    fn register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        text: &str,
    ) -> Result<u32, SourceError> {
        let mut body = json!({ "schema": text });
        if schema_type != SchemaType::Avro {
            body["schemaType"] = json!(schema_type.as_str());
        }
        let v = self.post(&format!("/subjects/{}/versions", encode(subject)), &body)?;
        v.get("id")
            .and_then(Value::as_u64)
            .map(|id| id as u32)
            .ok_or_else(|| self.nonsense("no id in the answer"))
    }

    fn url(&self) -> String {
        self.base.clone()
    }
}

/// Percent-encodes a subject for a URL path segment.
pub fn encode(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for b in subject.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
