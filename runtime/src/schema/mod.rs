//! Schemas in the host: the registry it serves (Confluent's Schema Registry REST API), the
//! client for an external registry, and the one seam the rest of the host uses,
//! [`SchemaSource`]: door validation, typed handlers and deploy-time checks ask it for a
//! schema by id or a subject's versions, and never know whether the registry is this host's
//! or one reached by URL (cluster mode).

pub mod client;
pub mod deploy_check;
pub mod registry;
pub mod resolver;
pub mod server;
pub mod store;
pub mod validation;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use rill_schema::{CompatibilityLevel, ParsedSchema, SchemaType};

/// Why a schema could not be had from a registry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// No schema has this id.
    #[error("schema id {0} is not registered")]
    UnknownId(u32),
    /// No such subject (or it has no live version).
    #[error("subject '{0}' is not registered")]
    UnknownSubject(String),
    /// The registry refused the request (incompatible, invalid, …) with this message.
    #[error("{message} (registry error {code})")]
    Refused {
        /// Confluent's error code, such as 409 or 42201.
        code: u32,
        /// The registry's message.
        message: String,
    },
    /// The registry could not be reached or answered nonsense.
    #[error("schema registry at {url}: {message}")]
    Unavailable {
        /// Where it was looked for.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The registry's schema text does not parse here.
    #[error("schema id {id} does not parse: {message}")]
    Unparsable {
        /// The id.
        id: u32,
        /// The parser's message.
        message: String,
    },
}

/// A registered version of a subject.
#[derive(Debug, Clone)]
pub struct Version {
    /// The version number (1, 2, …).
    pub version: i32,
    /// The global schema id.
    pub id: u32,
    /// The schema, parsed.
    pub schema: Arc<ParsedSchema>,
}

/// Where the host's parts get schemas: this host's registry, or an external one by URL.
/// Implementations are cheap to call repeatedly (ids are cached; an id's schema never
/// changes).
pub trait SchemaSource: Send + Sync + std::fmt::Debug {
    /// The schema registered under `id`.
    fn schema(&self, id: u32) -> Result<Arc<ParsedSchema>, SourceError>;
    /// The live versions of `subject`, oldest first.
    fn versions(&self, subject: &str) -> Result<Vec<Version>, SourceError>;
    /// Registers `text` under `subject` (or finds it registered) and returns its id.
    fn register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        text: &str,
    ) -> Result<u32, SourceError>;
    /// Where the registry is, for messages (`http://127.0.0.1:8081`).
    fn url(&self) -> String;
}

/// Parsed schemas by id, shared by every user of one source. An id's schema never changes,
/// so entries are never invalidated.
#[derive(Debug, Default)]
pub struct IdCache {
    by_id: Mutex<HashMap<u32, Arc<ParsedSchema>>>,
}

impl IdCache {
    /// The cached schema for `id`, or `load`'s, remembered.
    pub fn get_or_load(
        &self,
        id: u32,
        load: impl FnOnce() -> Result<Arc<ParsedSchema>, SourceError>,
    ) -> Result<Arc<ParsedSchema>, SourceError> {
        if let Some(s) = self
            .by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(s.clone());
        }
        let schema = load()?;
        self.by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, schema.clone());
        Ok(schema)
    }
}
