//! The registry's state in memory: subjects and their versions, schemas by id and by
//! identity, the compatibility levels, and how a stored change applies to them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rill_schema::{CompatibilityLevel, Dependency, ParsedSchema, SchemaType};

use super::{RegistryError, Schema, VersionSel};
use crate::schema::client::Reference;
use crate::schema::store::{Change, StoredVersion};

/// A version of a subject: its number, its schema's id, whether it is soft-deleted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) version: i32,
    pub(super) id: u32,
    pub(super) deleted: bool,
}

/// Identity of a schema across subjects: same type, same canonical form, same references.
pub(super) type SchemaKey = (SchemaType, String, Vec<(String, String, i32)>);

/// Everything the registry serves. Changed only by [`State::apply`] of a change already
/// written to the store.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) schemas: BTreeMap<u32, Arc<Schema>>,
    pub(super) by_key: HashMap<SchemaKey, u32>,
    pub(super) subjects: BTreeMap<String, Vec<Entry>>,
    pub(super) global: Option<CompatibilityLevel>,
    pub(super) subject_levels: HashMap<String, CompatibilityLevel>,
    /// The next id to hand out; never goes down, even when the highest id is deleted.
    pub(super) next_id: u32,
}

impl State {
    pub(super) fn apply(&mut self, change: Change) -> Result<(), String> {
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
    pub(super) fn drop_unused(&mut self) {
        let used: std::collections::HashSet<u32> =
            self.subjects.values().flatten().map(|e| e.id).collect();
        self.schemas.retain(|id, _| used.contains(id));
        self.by_key.retain(|_, id| used.contains(id));
    }

    pub(super) fn live(&self, subject: &str) -> Vec<Entry> {
        self.subjects
            .get(subject)
            .map(|v| v.iter().filter(|e| !e.deleted).copied().collect())
            .unwrap_or_default()
    }

    pub(super) fn level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_levels
            .get(subject)
            .copied()
            .or(self.global)
            .unwrap_or_default()
    }

    pub(super) fn select(
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

    pub(super) fn stored(
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
    pub(super) fn check_unreferenced(
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
    pub(super) fn deletion(
        &self,
        subject: &str,
        e: Entry,
        permanent: bool,
    ) -> Result<Change, RegistryError> {
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
    pub(super) fn referrers(&self, subject: &str, version: i32, with_deleted: bool) -> Vec<u32> {
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
    pub(super) fn parse(
        &self,
        schema_type: SchemaType,
        text: &str,
        references: &[Reference],
    ) -> Result<ParsedSchema, RegistryError> {
        let mut dependencies = Vec::new();
        self.dependencies(references, &mut dependencies, 0)?;
        ParsedSchema::parse(schema_type, text, &dependencies).map_err(RegistryError::invalid_schema)
    }

    pub(super) fn dependencies(
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

pub(super) fn schema_key(parsed: &ParsedSchema, references: &[Reference]) -> SchemaKey {
    (
        parsed.schema_type(),
        parsed.canonical(),
        references
            .iter()
            .map(|r| (r.name.clone(), r.subject.clone(), r.version))
            .collect(),
    )
}

pub(super) fn check_subject(subject: &str) -> Result<(), RegistryError> {
    if subject.is_empty() || subject.len() > 4096 || subject.chars().any(char::is_control) {
        return Err(RegistryError::unprocessable(format!(
            "Invalid subject name '{}'",
            subject.escape_debug()
        )));
    }
    Ok(())
}
