//! The registry's bookkeeping: subjects, their versions, schemas by global id and the
//! compatibility configuration, with the rules of Confluent's Schema Registry. Every change
//! is written to the store ([`super::store`]) before it is applied here, so what a client
//! was told survives a crash.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use rill_schema::{CompatibilityLevel, Dependency, ParsedSchema, SchemaType};

use super::client::Reference;
use super::store::{Change, Store, StoredVersion};
use super::{SchemaSource, SourceError, Version};

/// A refused request, with Confluent's error code and the HTTP status it goes with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    /// The HTTP status.
    pub status: u16,
    /// Confluent's error code (40401, 409, 42201, …).
    pub code: u32,
    /// One line naming the problem.
    pub message: String,
}

impl RegistryError {
    fn new(status: u16, code: u32, message: impl Into<String>) -> RegistryError {
        RegistryError {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn subject_not_found(subject: &str) -> RegistryError {
        RegistryError::new(404, 40401, format!("Subject '{subject}' not found."))
    }
    fn version_not_found(subject: &str, version: i32) -> RegistryError {
        RegistryError::new(
            404,
            40402,
            format!("Version {version} not found for subject '{subject}'."),
        )
    }
    pub(crate) fn schema_not_found(what: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(404, 40403, format!("Schema {what} not found"))
    }
    fn invalid_schema(message: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(422, 42201, format!("Invalid schema: {message}"))
    }
    pub(crate) fn invalid_version(v: &str) -> RegistryError {
        RegistryError::new(
            422,
            42202,
            format!(
                "The specified version '{v}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }
    pub(crate) fn invalid_level(level: &str) -> RegistryError {
        RegistryError::new(
            422,
            42203,
            format!(
                "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive (got '{level}')"
            ),
        )
    }
    pub(crate) fn unprocessable(message: impl Into<String>) -> RegistryError {
        RegistryError::new(422, 422, message)
    }
    fn store(e: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(500, 50001, format!("Error in the backend data store: {e}"))
    }
}

/// A version selector: a number, or the latest live version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    /// `latest` (or -1).
    Latest,
    /// A version number.
    Number(i32),
}

impl VersionSel {
    /// Parses a path segment the way Confluent does.
    pub fn parse(s: &str) -> Result<VersionSel, RegistryError> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionSel::Latest);
        }
        match s.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionSel::Number(n)),
            _ => Err(RegistryError::invalid_version(s)),
        }
    }
}

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

#[derive(Debug, Clone, Copy)]
struct Entry {
    version: i32,
    id: u32,
    deleted: bool,
}

/// Identity of a schema across subjects: same type, same canonical form, same references.
type SchemaKey = (SchemaType, String, Vec<(String, String, i32)>);

#[derive(Debug, Default)]
struct State {
    schemas: BTreeMap<u32, Arc<Schema>>,
    by_key: HashMap<SchemaKey, u32>,
    subjects: BTreeMap<String, Vec<Entry>>,
    global: Option<CompatibilityLevel>,
    subject_levels: HashMap<String, CompatibilityLevel>,
    /// The next id to hand out; never goes down, even when the highest id is deleted.
    next_id: u32,
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

impl State {
    fn apply(&mut self, change: Change) -> Result<(), String> {
        match change {
            Change::Version(v) => {
                let id = v.id;
                if !self.schemas.contains_key(&id) {
                    let parsed = self
                        .parse(v.schema_type, &v.schema, &v.references)
                        .map_err(|e| {
                            format!(
                                "schema id {id} ({} version {}) skipped: {}",
                                v.subject, v.version, e.message
                            )
                        })?;
                    let key = schema_key(&parsed, &v.references);
                    self.by_key.insert(key, id);
                    let schema = Schema {
                        id,
                        schema_type: v.schema_type,
                        text: v.schema,
                        references: v.references,
                        parsed: Arc::new(parsed),
                    };
                    self.schemas.insert(id, Arc::new(schema));
                }
                self.next_id = self.next_id.max(id + 1);
                let entries = self.subjects.entry(v.subject).or_default();
                let entry = Entry {
                    version: v.version,
                    id,
                    deleted: v.deleted,
                };
                match entries.binary_search_by_key(&v.version, |e| e.version) {
                    Ok(i) => entries[i] = entry,
                    Err(i) => entries.insert(i, entry),
                }
            }
            Change::Forget { subject, version } => {
                if let Some(entries) = self.subjects.get_mut(&subject) {
                    entries.retain(|e| e.version != version);
                    if entries.is_empty() {
                        self.subjects.remove(&subject);
                    }
                }
                self.drop_unused();
            }
            Change::Level {
                subject: None,
                level,
            } => self.global = level,
            Change::Level {
                subject: Some(s),
                level: Some(l),
            } => {
                self.subject_levels.insert(s, l);
            }
            Change::Level {
                subject: Some(s),
                level: None,
            } => {
                self.subject_levels.remove(&s);
            }
            Change::NextId(n) => self.next_id = self.next_id.max(n),
        }
        Ok(())
    }

    /// Forgets schemas no version uses any more (after a permanent delete).
    fn drop_unused(&mut self) {
        let used: std::collections::HashSet<u32> =
            self.subjects.values().flatten().map(|e| e.id).collect();
        self.schemas.retain(|id, _| used.contains(id));
        self.by_key.retain(|_, id| used.contains(id));
    }

    fn live(&self, subject: &str) -> Vec<Entry> {
        self.subjects
            .get(subject)
            .map(|v| v.iter().filter(|e| !e.deleted).copied().collect())
            .unwrap_or_default()
    }

    fn level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_levels
            .get(subject)
            .copied()
            .or(self.global)
            .unwrap_or_default()
    }

    fn select(
        &self,
        subject: &str,
        sel: VersionSel,
        deleted: bool,
    ) -> Result<Entry, RegistryError> {
        let entries = self
            .subjects
            .get(subject)
            .filter(|v| deleted || v.iter().any(|e| !e.deleted));
        let Some(entries) = entries else {
            return Err(RegistryError::subject_not_found(subject));
        };
        let found = match sel {
            VersionSel::Latest => entries.iter().rev().find(|e| deleted || !e.deleted),
            VersionSel::Number(n) => entries
                .iter()
                .find(|e| e.version == n && (deleted || !e.deleted)),
        };
        found.copied().ok_or_else(|| match sel {
            VersionSel::Number(n) => RegistryError::version_not_found(subject, n),
            VersionSel::Latest => RegistryError::subject_not_found(subject),
        })
    }

    fn stored(
        &self,
        subject: &str,
        e: Entry,
        deleted: bool,
    ) -> Result<StoredVersion, RegistryError> {
        let s = self
            .schemas
            .get(&e.id)
            .ok_or_else(|| RegistryError::schema_not_found(e.id))?;
        Ok(StoredVersion {
            subject: subject.to_string(),
            version: e.version,
            id: e.id,
            schema_type: s.schema_type,
            schema: s.text.clone(),
            references: s.references.clone(),
            deleted,
        })
    }

    /// Refuses (42206) to delete `subject` `version` while a schema refers to it.
    fn check_unreferenced(
        &self,
        subject: &str,
        version: i32,
        permanent: bool,
    ) -> Result<(), RegistryError> {
        let referrers = self.referrers(subject, version, permanent);
        if referrers.is_empty() {
            return Ok(());
        }
        Err(RegistryError::new(
            422,
            42206,
            format!(
                "One or more references exist to the schema {{subject={subject},version={version}}}: ids {referrers:?}"
            ),
        ))
    }

    /// The change that deletes a version: soft (its record marked deleted) or permanent.
    fn deletion(&self, subject: &str, e: Entry, permanent: bool) -> Result<Change, RegistryError> {
        Ok(if permanent {
            Change::Forget {
                subject: subject.to_string(),
                version: e.version,
            }
        } else {
            Change::Version(self.stored(subject, e, true)?)
        })
    }

    /// Ids of schemas that refer to `subject` `version` and are used by a live version
    /// (or, with `with_deleted`, by any version still stored: a permanent delete must not
    /// leave a soft-deleted schema whose reference no longer resolves).
    fn referrers(&self, subject: &str, version: i32, with_deleted: bool) -> Vec<u32> {
        self.schemas
            .values()
            .filter(|s| {
                s.references
                    .iter()
                    .any(|r| r.subject == subject && r.version == version)
            })
            .filter(|s| {
                self.subjects
                    .values()
                    .flatten()
                    .any(|e| e.id == s.id && (with_deleted || !e.deleted))
            })
            .map(|s| s.id)
            .collect()
    }

    /// Parses a schema with its references, resolved through registered versions.
    fn parse(
        &self,
        schema_type: SchemaType,
        text: &str,
        references: &[Reference],
    ) -> Result<ParsedSchema, RegistryError> {
        let mut dependencies = Vec::new();
        self.dependencies(references, &mut dependencies, 0)?;
        ParsedSchema::parse(schema_type, text, &dependencies).map_err(RegistryError::invalid_schema)
    }

    fn dependencies(
        &self,
        references: &[Reference],
        out: &mut Vec<Dependency>,
        depth: usize,
    ) -> Result<(), RegistryError> {
        if depth > 32 {
            return Err(RegistryError::invalid_schema(
                "references nest deeper than 32",
            ));
        }
        for r in references {
            if out.iter().any(|d| d.name == r.name) {
                continue;
            }
            let e = self
                .select(&r.subject, VersionSel::Number(r.version), true)
                .map_err(|_| {
                    RegistryError::invalid_schema(format!(
                        "reference '{}' to subject '{}' version {} is not registered",
                        r.name, r.subject, r.version
                    ))
                })?;
            let s = self
                .schemas
                .get(&e.id)
                .ok_or_else(|| RegistryError::schema_not_found(e.id))?;
            self.dependencies(&s.references, out, depth + 1)?;
            out.push(Dependency {
                name: r.name.clone(),
                schema: s.text.clone(),
            });
        }
        Ok(())
    }
}

fn schema_key(parsed: &ParsedSchema, references: &[Reference]) -> SchemaKey {
    (
        parsed.schema_type(),
        parsed.canonical(),
        references
            .iter()
            .map(|r| (r.name.clone(), r.subject.clone(), r.version))
            .collect(),
    )
}

fn check_subject(subject: &str) -> Result<(), RegistryError> {
    if subject.is_empty() || subject.len() > 4096 || subject.chars().any(char::is_control) {
        return Err(RegistryError::unprocessable(format!(
            "Invalid subject name '{}'",
            subject.escape_debug()
        )));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in memory that can be compacted the way the log compacts: the last record
    /// of each key, at its own position.
    #[derive(Debug, Default)]
    struct MemStore(Mutex<Vec<Change>>);

    impl Store for Arc<MemStore> {
        fn replay(&self) -> Result<Vec<Change>, String> {
            Ok(self.0.lock().unwrap().clone())
        }
        fn append(&self, changes: &[Change]) -> Result<(), String> {
            self.0.lock().unwrap().extend_from_slice(changes);
            Ok(())
        }
    }

    impl MemStore {
        fn compacted(&self) -> Arc<MemStore> {
            let all = self.0.lock().unwrap().clone();
            let kept = all
                .iter()
                .enumerate()
                .filter(|(i, c)| !all[i + 1..].iter().any(|l| l.key() == c.key()))
                .map(|(_, c)| c.clone())
                .filter(|c| !matches!(c, Change::Forget { .. }))
                .collect();
            Arc::new(MemStore(Mutex::new(kept)))
        }
    }

    fn record(name: &str, field_type: &str) -> String {
        format!(
            r#"{{"type":"record","name":"{name}","fields":[{{"name":"x","type":"{field_type}"}}]}}"#
        )
    }

    /// After compaction a referring version can come before the version it refers to; the
    /// replay still restores both, and ids are not reused after the highest is forgotten.
    #[test]
    fn replay_survives_compaction_reordering_references() {
        let store = Arc::new(MemStore::default());
        let (r, _) = Registry::open(Box::new(store.clone())).unwrap();
        let a = r
            .register("a", SchemaType::Avro, &record("A", "long"), Vec::new())
            .unwrap();
        let refs = vec![Reference {
            name: "A".into(),
            subject: "a".into(),
            version: 1,
        }];
        let b = r
            .register("b", SchemaType::Avro, &record("B", "A"), refs)
            .unwrap();
        // A live referrer, then a soft-deleted one, keeps `a` version 1 from being removed.
        assert_eq!(
            r.delete_version("a", VersionSel::Number(1), false)
                .unwrap_err()
                .code,
            42206
        );
        r.delete_version("b", VersionSel::Number(1), false).unwrap();
        r.delete_version("a", VersionSel::Number(1), false).unwrap();
        assert_eq!(
            r.delete_version("a", VersionSel::Number(1), true)
                .unwrap_err()
                .code,
            42206
        );
        let c = r
            .register("c", SchemaType::Avro, &record("C", "int"), Vec::new())
            .unwrap();
        r.delete_subject("c", false).unwrap();
        r.delete_subject("c", true).unwrap();

        let (again, warnings) = Registry::open(Box::new(store.compacted())).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(again.schema(b).unwrap().references[0].subject, "a");
        assert!(
            again
                .version("b", VersionSel::Number(1), true)
                .unwrap()
                .deleted
        );
        assert_eq!(again.schema(a).unwrap().id, a);
        assert!(again.schema(c).is_err(), "forgotten for good");
        let d = again
            .register("d", SchemaType::Avro, &record("D", "string"), Vec::new())
            .unwrap();
        assert_eq!(d, c + 1, "the forgotten id {c} is not handed out again");
    }

    /// A store whose appends wait until the test lets them finish.
    #[derive(Debug)]
    struct SlowStore {
        entered: std::sync::mpsc::SyncSender<()>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl Store for SlowStore {
        fn replay(&self) -> Result<Vec<Change>, String> {
            Ok(Vec::new())
        }
        fn append(&self, _: &[Change]) -> Result<(), String> {
            self.entered.send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
            Ok(())
        }
    }

    #[test]
    fn reads_go_on_while_a_change_is_being_written() {
        use std::sync::mpsc::{channel, sync_channel};
        use std::time::Duration;
        let (entered, wait_entered) = sync_channel(1);
        let (release, released) = channel();
        let store = SlowStore {
            entered,
            release: Mutex::new(released),
        };
        let (registry, _) = Registry::open(Box::new(store)).unwrap();
        let registry = Arc::new(registry);
        let writer = {
            let registry = registry.clone();
            std::thread::spawn(move || {
                registry.register("s", SchemaType::Avro, &record("R", "int"), Vec::new())
            })
        };
        wait_entered.recv().unwrap();
        // The registration is inside its fsync: reads answer now, without it.
        let (answered, answer) = channel();
        {
            let registry = registry.clone();
            std::thread::spawn(move || {
                let _ = answered.send((registry.subjects(false, ""), registry.level(None)));
            });
        }
        let (subjects, level) = answer
            .recv_timeout(Duration::from_secs(10))
            .expect("a read waited for the fsync");
        assert!(subjects.is_empty(), "nothing unwritten is served");
        assert_eq!(level, Some(CompatibilityLevel::Backward));
        release.send(()).unwrap();
        assert_eq!(writer.join().unwrap().unwrap(), 1);
        assert_eq!(registry.subjects(false, ""), vec!["s".to_string()]);
    }
}
