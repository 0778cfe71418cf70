//! The engine's [`rill_engine::SchemaResolver`] over this host's [`SchemaSource`]: what the
//! `schema_get` and `schema_id` imports of typed handlers ask.
//!
//! The source is set once the host knows its registry ([`SchemaSlot::set`]); until then, and
//! on hosts without one, the imports answer "no registry". Self-contained texts are cached by
//! id and ids by (subject, type, text), so after its first record a handler's schema calls
//! never leave this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rill_engine::{ResolveError, SchemaFormat, SchemaResolver};

use super::{SchemaSource, SchemaType, SourceError};

/// The host's schema source, set after start-up, shared by the scheduler and every
/// instance's resolver.
#[derive(Debug, Default)]
pub struct SchemaSlot(RwLock<Option<Arc<dyn SchemaSource>>>);

impl SchemaSlot {
    /// Sets (or replaces) the source.
    pub fn set(&self, source: Arc<dyn SchemaSource>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// The source, if one is set.
    pub fn get(&self) -> Option<Arc<dyn SchemaSource>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Resolves the schemas of typed handlers through a [`SchemaSlot`], with caches.
#[derive(Debug, Default)]
pub struct SourceResolver {
    slot: Arc<SchemaSlot>,
    texts: Mutex<HashMap<u32, Arc<str>>>,
    ids: Mutex<HashMap<(String, SchemaFormat, String), u32>>,
}

impl SourceResolver {
    /// A resolver over `slot`.
    pub fn new(slot: Arc<SchemaSlot>) -> SourceResolver {
        SourceResolver {
            slot,
            ..SourceResolver::default()
        }
    }

    fn source(&self) -> Result<Arc<dyn SchemaSource>, ResolveError> {
        self.slot.get().ok_or_else(|| {
            ResolveError::Unavailable(
                "this host has no schema registry (start it with one, or point it at one)".into(),
            )
        })
    }
}

fn resolve_error(e: SourceError) -> ResolveError {
    match e {
        SourceError::Unavailable { .. } => ResolveError::Unavailable(e.to_string()),
        _ => ResolveError::Unknown(e.to_string()),
    }
}

fn schema_type(format: SchemaFormat) -> SchemaType {
    match format {
        SchemaFormat::Avro => SchemaType::Avro,
        SchemaFormat::Json => SchemaType::Json,
        SchemaFormat::Protobuf => SchemaType::Protobuf,
    }
}

impl SchemaResolver for SourceResolver {
    fn schema(&self, id: u32) -> Result<Arc<str>, ResolveError> {
        if let Some(t) = self
            .texts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(t.clone());
        }
        let parsed = self.source()?.schema(id).map_err(resolve_error)?;
        let text: Arc<str> = parsed.self_contained().into();
        self.texts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, text.clone());
        Ok(text)
    }

    fn schema_id(
        &self,
        subject: &str,
        format: SchemaFormat,
        text: &str,
    ) -> Result<u32, ResolveError> {
        let key = (subject.to_owned(), format, text.to_owned());
        if let Some(id) = self.ids.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*id);
        }
        let id = self
            .source()?
            .register(subject, schema_type(format), text)
            .map_err(resolve_error)?;
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, id);
        Ok(id)
    }
}
