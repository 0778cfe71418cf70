//! The registry's bookkeeping: subjects, their versions, schemas by global id and the
//! compatibility configuration, with the rules of Confluent's Schema Registry. Every change
//! is written to the store ([`super::store`]) before it is applied here, so what a client
//! was told survives a crash.

mod error;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use rill_schema::{CompatibilityLevel, ParsedSchema, SchemaType};

use super::client::Reference;
use super::store::{Change, Store, StoredVersion};
use super::{SchemaSource, SourceError, Version};
pub use error::{RegistryError, VersionSel};
use state::{Entry, State, check_subject, schema_key};

/// A schema as stored: what was registered, and its parse.
#[derive(Debug, Clone)]
pub struct Schema {
    /// The global id.
    pub id: u32,
    /// Its format.
    pub schema_type: SchemaType,
    /// The text as registered.
    pub text: String,
    /// What it refers to.
    pub references: Vec<Reference>,
    /// The parse.
    pub parsed: Arc<ParsedSchema>,
}

/// One version of a subject, as the API returns it.
#[derive(Debug, Clone)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// The version number.
    pub version: i32,
    /// Soft-deleted.
    pub deleted: bool,
    /// The schema.
    pub schema: Arc<Schema>,
}

/// The registry: its state in memory, every change written to its store first.
///
/// Changes are made one at a time (`writing`); each computes its records under a read
/// lock, writes them to the store (an fsync) holding no lock on the state, then applies
/// them under a brief write lock. So lookups, reads and checks never wait for a
/// registration's fsync, and nothing unwritten is ever served.
#[derive(Debug)]
pub struct Registry {
    state: RwLock<State>,
    writing: Mutex<()>,
    store: Box<dyn Store>,
}

impl Registry {
    /// Opens the registry over `store`, replaying what it holds. Records that no longer
    /// parse are skipped with a warning (returned), never fatal: the other subjects stay
    /// served.
    pub fn open(store: Box<dyn Store>) -> Result<(Registry, Vec<String>), RegistryError> {
        let mut state = State {
            next_id: 1,
            ..State::default()
        };
        // Compaction keeps each key's last record at its own offset, so a version can come
        // before the version it refers to: what does not apply yet is tried again, in order,
        // while that makes progress. A record whose key comes again later is superseded.
        let changes = store.replay().map_err(RegistryError::store)?;
        let mut pending: Vec<(usize, Change, String)> = Vec::new();
        for (i, change) in changes.iter().enumerate() {
            if let Err(e) = state.apply(change.clone()) {
                pending.push((i, change.clone(), e));
            }
        }
        pending.retain(|(i, c, _)| !changes[i + 1..].iter().any(|later| later.key() == c.key()));
        loop {
            let before = pending.len();
            let mut still = Vec::new();
            for (i, c, _) in pending {
                if let Err(e) = state.apply(c.clone()) {
                    still.push((i, c, e));
                }
            }
            pending = still;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        let warnings = pending.into_iter().map(|(_, _, e)| e).collect();
        Ok((
            Registry {
                state: RwLock::new(state),
                writing: Mutex::new(()),
                store,
            },
            warnings,
        ))
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a change: one at a time, and the state it reads stays as read until
    /// [`Registry::commit`].
    fn change(&self) -> (MutexGuard<'_, ()>, RwLockReadGuard<'_, State>) {
        let writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        (writing, self.read())
    }

    /// Writes `changes` to the store with no lock on the state held (readers go on), then
    /// applies them. The caller still holds the `writing` guard, so no other change can
    /// come between what `read` showed and this.
    fn commit(
        &self,
        read: RwLockReadGuard<'_, State>,
        changes: Vec<Change>,
    ) -> Result<(), RegistryError> {
        drop(read);
        self.store.append(&changes).map_err(RegistryError::store)?;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        for c in changes {
            if let Err(e) = state.apply(c) {
                tracing::error!("schema registry: a change just written does not apply: {e}");
            }
        }
        Ok(())
    }

    /// `POST /subjects/{s}/versions`: registers a schema (or finds it registered) and
    /// returns its id.
    pub fn register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        text: &str,
        references: Vec<Reference>,
    ) -> Result<u32, RegistryError> {
        check_subject(subject)?;
        let (_writing, state) = self.change();
        let parsed = state.parse(schema_type, text, &references)?;
        let key = schema_key(&parsed, &references);
        let live: Vec<Entry> = state.live(subject);
        if let Some(e) = live.iter().find(|e| {
            state
                .schemas
                .get(&e.id)
                .is_some_and(|s| schema_key(&s.parsed, &s.references) == key)
        }) {
            return Ok(e.id);
        }
        let level = state.level(subject);
        let existing: Vec<(i32, Arc<ParsedSchema>)> = live
            .iter()
            .filter_map(|e| {
                state
                    .schemas
                    .get(&e.id)
                    .map(|s| (e.version, s.parsed.clone()))
            })
            .collect();
        let refs: Vec<(i32, &ParsedSchema)> =
            existing.iter().map(|(v, s)| (*v, s.as_ref())).collect();
        let problems = rill_schema::check_compatibility(level, &parsed, &refs);
        if !problems.is_empty() {
            return Err(RegistryError::new(
                409,
                409,
                format!(
                    "Schema being registered is incompatible with an earlier schema for subject \"{subject}\" ({level}): {}",
                    problems.join("; ")
                ),
            ));
        }
        let id = state.by_key.get(&key).copied().unwrap_or(state.next_id);
        let version = state
            .subjects
            .get(subject)
            .and_then(|v| v.last())
            .map_or(1, |e| e.version + 1);
        let stored = StoredVersion {
            subject: subject.to_string(),
            version,
            id,
            schema_type,
            schema: text.to_string(),
            references,
            deleted: false,
        };
        let mut changes = vec![Change::Version(stored)];
        if id == state.next_id {
            // Kept on its own so a permanently deleted highest id is never handed out again.
            changes.push(Change::NextId(id + 1));
        }
        self.commit(state, changes)?;
        Ok(id)
    }

    /// `POST /subjects/{s}`: the version of `subject` with this schema.
    pub fn lookup(
        &self,
        subject: &str,
        schema_type: SchemaType,
        text: &str,
        references: &[Reference],
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let state = self.read();
        let entries = state
            .subjects
            .get(subject)
            .filter(|v| deleted || v.iter().any(|e| !e.deleted));
        let Some(entries) = entries else {
            return Err(RegistryError::subject_not_found(subject));
        };
        let parsed = state.parse(schema_type, text, references)?;
        let key = schema_key(&parsed, references);
        entries
            .iter()
            .rev()
            .filter(|e| deleted || !e.deleted)
            .find_map(|e| {
                let s = state.schemas.get(&e.id)?;
                (schema_key(&s.parsed, &s.references) == key).then(|| SubjectVersion {
                    subject: subject.to_string(),
                    version: e.version,
                    deleted: e.deleted,
                    schema: s.clone(),
                })
            })
            .ok_or_else(|| RegistryError::new(404, 40403, "Schema not found"))
    }

    /// `GET /subjects`.
    pub fn subjects(&self, deleted: bool, prefix: &str) -> Vec<String> {
        let state = self.read();
        state
            .subjects
            .iter()
            .filter(|(s, v)| s.starts_with(prefix) && v.iter().any(|e| deleted || !e.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// `GET /subjects/{s}/versions`.
    pub fn versions_of(&self, subject: &str, deleted: bool) -> Result<Vec<i32>, RegistryError> {
        let state = self.read();
        let versions: Vec<i32> = state
            .subjects
            .get(subject)
            .map(|v| {
                v.iter()
                    .filter(|e| deleted || !e.deleted)
                    .map(|e| e.version)
                    .collect()
            })
            .unwrap_or_default();
        if versions.is_empty() {
            return Err(RegistryError::subject_not_found(subject));
        }
        Ok(versions)
    }

    /// `GET /subjects/{s}/versions/{v}`.
    pub fn version(
        &self,
        subject: &str,
        sel: VersionSel,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let state = self.read();
        let e = state.select(subject, sel, deleted)?;
        let schema = state
            .schemas
            .get(&e.id)
            .cloned()
            .ok_or_else(|| RegistryError::schema_not_found(e.id))?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version: e.version,
            deleted: e.deleted,
            schema,
        })
    }

    /// `GET /schemas/ids/{id}`.
    pub fn schema(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        self.read()
            .schemas
            .get(&id)
            .cloned()
            .ok_or_else(|| RegistryError::schema_not_found(id))
    }

    /// `GET /schemas/ids/{id}/versions`: every (subject, version) with this id.
    pub fn uses_of(&self, id: u32, deleted: bool) -> Result<Vec<(String, i32)>, RegistryError> {
        let state = self.read();
        if !state.schemas.contains_key(&id) {
            return Err(RegistryError::schema_not_found(id));
        }
        Ok(state
            .subjects
            .iter()
            .flat_map(|(s, v)| {
                v.iter()
                    .filter(|e| e.id == id && (deleted || !e.deleted))
                    .map(move |e| (s.clone(), e.version))
            })
            .collect())
    }

    /// `GET /subjects/{s}/versions/{v}/referencedby`: ids of schemas that refer to it.
    pub fn referenced_by(&self, subject: &str, sel: VersionSel) -> Result<Vec<u32>, RegistryError> {
        let state = self.read();
        let e = state.select(subject, sel, true)?;
        Ok(state.referrers(subject, e.version, false))
    }

    /// `POST /compatibility/subjects/{s}/versions[/{v}]`: problems of `text` against the
    /// selected version, or (`None`) the versions the subject's level checks.
    pub fn check(
        &self,
        subject: &str,
        sel: Option<VersionSel>,
        schema_type: SchemaType,
        text: &str,
        references: &[Reference],
    ) -> Result<Vec<String>, RegistryError> {
        let state = self.read();
        let parsed = state.parse(schema_type, text, references)?;
        let level = state.level(subject);
        let against: Vec<(i32, Arc<ParsedSchema>)> = match sel {
            None => state
                .live(subject)
                .iter()
                .filter_map(|e| {
                    state
                        .schemas
                        .get(&e.id)
                        .map(|s| (e.version, s.parsed.clone()))
                })
                .collect(),
            Some(sel) => {
                let e = state.select(subject, sel, false)?;
                let s = state
                    .schemas
                    .get(&e.id)
                    .ok_or_else(|| RegistryError::schema_not_found(e.id))?;
                vec![(e.version, s.parsed.clone())]
            }
        };
        // A single selected version is checked in the level's direction, transitive or not.
        let level = match (sel, level) {
            (Some(_), CompatibilityLevel::BackwardTransitive) => CompatibilityLevel::Backward,
            (Some(_), CompatibilityLevel::ForwardTransitive) => CompatibilityLevel::Forward,
            (Some(_), CompatibilityLevel::FullTransitive) => CompatibilityLevel::Full,
            (_, l) => l,
        };
        let refs: Vec<(i32, &ParsedSchema)> =
            against.iter().map(|(v, s)| (*v, s.as_ref())).collect();
        Ok(rill_schema::check_compatibility(level, &parsed, &refs))
    }

    /// `DELETE /subjects/{s}/versions/{v}`.
    pub fn delete_version(
        &self,
        subject: &str,
        sel: VersionSel,
        permanent: bool,
    ) -> Result<i32, RegistryError> {
        let (_writing, state) = self.change();
        // `latest` is the latest live version; a number may name a soft-deleted one.
        let e = state.select(subject, sel, permanent || sel != VersionSel::Latest)?;
        if !permanent && e.deleted {
            return Err(RegistryError::new(
                404,
                40406,
                format!(
                    "Subject '{subject}' Version {} was soft deleted. Set permanent=true to delete permanently",
                    e.version
                ),
            ));
        }
        if permanent && !e.deleted {
            return Err(RegistryError::new(
                404,
                40407,
                format!(
                    "Subject '{subject}' Version {} was not deleted first before being permanently deleted",
                    e.version
                ),
            ));
        }
        state.check_unreferenced(subject, e.version, permanent)?;
        let change = state.deletion(subject, e, permanent)?;
        self.commit(state, vec![change])?;
        Ok(e.version)
    }

    /// `DELETE /subjects/{s}`.
    pub fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        let (_writing, state) = self.change();
        let entries = state.subjects.get(subject).cloned().unwrap_or_default();
        if entries.is_empty() {
            return Err(RegistryError::subject_not_found(subject));
        }
        let all_deleted = entries.iter().all(|e| e.deleted);
        if !permanent && all_deleted {
            return Err(RegistryError::new(
                404,
                40404,
                format!(
                    "Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
                ),
            ));
        }
        if permanent && !all_deleted {
            return Err(RegistryError::new(
                404,
                40405,
                format!(
                    "Subject '{subject}' was not deleted first before being permanently deleted"
                ),
            ));
        }
        for e in &entries {
            state.check_unreferenced(subject, e.version, permanent)?;
        }
        let mut changes = Vec::new();
        for e in entries.iter().filter(|e| permanent || !e.deleted) {
            changes.push(state.deletion(subject, *e, permanent)?);
        }
        if permanent && state.subject_levels.contains_key(subject) {
            changes.push(Change::Level {
                subject: Some(subject.to_string()),
                level: None,
            });
        }
        self.commit(state, changes)?;
        Ok(entries.iter().map(|e| e.version).collect())
    }

    /// `GET /config[/{s}]`: `None` when a subject has no level of its own.
    pub fn level(&self, subject: Option<&str>) -> Option<CompatibilityLevel> {
        let state = self.read();
        match subject {
            None => Some(state.global.unwrap_or_default()),
            Some(s) => state.subject_levels.get(s).copied(),
        }
    }

    /// `PUT /config[/{s}]` (`Some`) and `DELETE /config/{s}` (`None`); returns the level
    /// that was set before.
    pub fn set_level(
        &self,
        subject: Option<&str>,
        level: Option<CompatibilityLevel>,
    ) -> Result<Option<CompatibilityLevel>, RegistryError> {
        if let Some(s) = subject {
            check_subject(s)?;
        }
        let (_writing, state) = self.change();
        let before = match subject {
            None => state.global,
            Some(s) => state.subject_levels.get(s).copied(),
        };
        self.commit(
            state,
            vec![Change::Level {
                subject: subject.map(str::to_owned),
                level,
            }],
        )?;
        Ok(before)
    }

    /// Counts for `runtime status`: subjects with a live version, and schemas.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.read();
        (
            state
                .subjects
                .values()
                .filter(|v| v.iter().any(|e| !e.deleted))
                .count(),
            state.schemas.len(),
        )
    }
}

impl SchemaSource for Registry {
    fn schema(&self, id: u32) -> Result<Arc<ParsedSchema>, SourceError> {
        Registry::schema(self, id)
            .map(|s| s.parsed.clone())
            .map_err(|_| SourceError::UnknownId(id))
    }

    fn versions(&self, subject: &str) -> Result<Vec<Version>, SourceError> {
        let state = self.read();
        let live = state.live(subject);
        if live.is_empty() {
            return Err(SourceError::UnknownSubject(subject.to_string()));
        }
        Ok(live
            .iter()
            .filter_map(|e| {
                state.schemas.get(&e.id).map(|s| Version {
                    version: e.version,
                    id: e.id,
                    schema: s.parsed.clone(),
                })
            })
            .collect())
    }

    fn register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        text: &str,
    ) -> Result<u32, SourceError> {
        Registry::register(self, subject, schema_type, text, Vec::new()).map_err(|e| {
            SourceError::Refused {
                code: e.code,
                message: e.message,
            }
        })
    }

    fn url(&self) -> String {
        "this host's schema registry".to_string()
    }
}
