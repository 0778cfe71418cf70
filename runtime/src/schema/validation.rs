//! Validation at the doors: records appended to a topic with
//! `value_schema_validation` (`confluent.value.schema.validation`) or
//! `key_schema_validation` on must carry the schema framing (magic byte 0, a 4-byte schema
//! id), the id must be registered as a version of the topic's subject, and the payload must
//! decode with that schema. Null values (tombstones) and null keys pass.
//!
//! Subjects follow Confluent's TopicNameStrategy, the one Confluent Server checks by
//! default: `<topic>-value` for values, `<topic>-key` for keys. Record and topic-record
//! strategies are not supported.
//!
//! Both doors call [`Validator`]: the Kafka door through [`RecordValidator`] (the batches
//! of one partition's produce), the admin door through [`Validator::check_records`]. A
//! refusal names the record by its index in what was sent; nothing of a refused request is
//! appended.
//!
//! # The cache
//!
//! Which ids are versions of a subject is cached per subject, with the parsed schemas, for
//! [`MEMBERSHIP_TTL`]: an id, once a version of a subject, stays one unless that version is
//! deleted, so the only staleness is a deleted version still accepted for up to the TTL. A
//! record whose id is cached costs at most one hash lookup (none when it has the id of the
//! record before it) plus walking its payload; an id not in the cache (or an expired
//! subject) refreshes the subject from the registry, off the async reactor.
//!
//! An id found not to be a version of the subject is remembered for [`REFUSAL_TTL`] only:
//! a producer that keeps sending it is refused from memory, on the reactor, instead of
//! costing two registry requests each time, and registering the schema takes effect within
//! that second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rill_kafka::validation::{RecordValidator, Refusal};
use rill_log::TopicConfig;
use rill_schema::wire;

use super::{ParsedSchema, SchemaSource, SourceError};

/// How long a subject's known versions are trusted before the registry is asked again.
pub const MEMBERSHIP_TTL: Duration = Duration::from_secs(10);

/// How long an id found not to be a version of a subject is refused without asking again.
pub const REFUSAL_TTL: Duration = Duration::from_secs(1);

/// Refusals remembered at most; past this the memory is cleared (random ids cannot grow it).
const MAX_REFUSALS: usize = 4096;

/// Which part of a record is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The key, against `<topic>-key`.
    Key,
    /// The value, against `<topic>-value`.
    Value,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }

    /// The subject of `topic`'s keys or values under TopicNameStrategy.
    pub fn subject(self, topic: &str) -> String {
        format!("{topic}-{}", self.name())
    }
}

/// The versions of one subject as last read from the registry.
#[derive(Debug)]
struct Known {
    read_at: Instant,
    ids: HashMap<u32, Arc<ParsedSchema>>,
}

/// Checks records against the registry, caching subject membership.
#[derive(Debug)]
pub struct Validator {
    source: Option<Arc<dyn SchemaSource>>,
    ttl: Duration,
    subjects: RwLock<HashMap<String, Known>>,
    /// (subject, id) found not to be a version: when, and why (without the record index).
    refused: Mutex<HashMap<(String, u32), (Instant, String)>>,
}

/// A record's key and value, as the checks see it.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

impl Validator {
    /// A validator asking `source`; `None` when the host has no registry, and then every
    /// record of a validating topic is refused as unavailable.
    pub fn new(source: Option<Arc<dyn SchemaSource>>) -> Validator {
        Validator::with_ttl(source, MEMBERSHIP_TTL)
    }

    /// [`Validator::new`] with another cache lifetime (tests); refusals are remembered for
    /// the shorter of it and [`REFUSAL_TTL`].
    pub fn with_ttl(source: Option<Arc<dyn SchemaSource>>, ttl: Duration) -> Validator {
        Validator {
            source,
            ttl,
            subjects: RwLock::default(),
            refused: Mutex::default(),
        }
    }

    fn refusal_ttl(&self) -> Duration {
        self.ttl.min(REFUSAL_TTL)
    }

    /// Why `id` was refused for `subject` in the last [`REFUSAL_TTL`], if it was.
    fn recently_refused(&self, subject: &str, id: u32, now: Instant) -> Option<String> {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let (at, why) = refused.get(&(subject.to_owned(), id))?;
        (now.saturating_duration_since(*at) < self.refusal_ttl()).then(|| why.clone())
    }

    fn remember_refusal(&self, subject: &str, id: u32, why: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.len() >= MAX_REFUSALS {
            refused.clear();
        }
        refused.insert((subject.to_owned(), id), (Instant::now(), why.to_owned()));
    }

    /// Checks `records` for `topic` as `config` says (values, keys, or both). With
    /// `may_block` false only the cache is used, and [`Refusal::WouldBlock`] says the
    /// registry must be asked.
    pub fn check_records(
        &self,
        topic: &str,
        config: &TopicConfig,
        records: &[KeyValue<'_>],
        may_block: bool,
    ) -> Result<(), Refusal> {
        let now = Instant::now();
        if config.value_schema_validation {
            self.check_part(topic, Part::Value, records, now, may_block)?;
        }
        if config.key_schema_validation {
            self.check_part(topic, Part::Key, records, now, may_block)?;
        }
        Ok(())
    }

    fn check_part(
        &self,
        topic: &str,
        part: Part,
        records: &[KeyValue<'_>],
        now: Instant,
        may_block: bool,
    ) -> Result<(), Refusal> {
        let subject = part.subject(topic);
        let mut from = 0;
        loop {
            // The fast path: one read lock for the batch, at most one hash lookup per record.
            let missing = self.check_cached(&subject, part, records, from, now)?;
            let Some((index, id)) = missing else {
                return Ok(());
            };
            if let Some(why) = self.recently_refused(&subject, id, now) {
                let message = format!("record {index}: {why}");
                return Err(Refusal::Invalid { index, message });
            }
            if !may_block {
                return Err(Refusal::WouldBlock);
            }
            self.refresh(&subject, id, index, part)?;
            from = index;
        }
    }

    /// Checks records from `from` on with what is cached. Returns the first record whose id
    /// is not known (fresh) as a version of `subject`.
    fn check_cached(
        &self,
        subject: &str,
        part: Part,
        records: &[KeyValue<'_>],
        from: usize,
        now: Instant,
    ) -> Result<Option<(usize, u32)>, Refusal> {
        let subjects = self.subjects.read().unwrap_or_else(|e| e.into_inner());
        let known = subjects
            .get(subject)
            // Read during this call (a refresh), or recently enough.
            .filter(|k| k.read_at >= now || now.duration_since(k.read_at) < self.ttl);
        // Records of a batch nearly always share one id: the last one found is kept, so
        // the map is asked once per id change rather than once per record.
        let mut last: Option<(u32, &Arc<ParsedSchema>)> = None;
        for (index, (key, value)) in records.iter().enumerate().skip(from) {
            let bytes = match part {
                Part::Key => key,
                Part::Value => value,
            };
            let Some(bytes) = bytes else { continue };
            let framed = wire::split(bytes).map_err(|e| Refusal::Invalid {
                index,
                message: format!(
                    "record {index}: the {} is not framed with a schema id: {e}",
                    part.name()
                ),
            })?;
            let schema = match last {
                Some((id, schema)) if id == framed.id => schema,
                _ => match known.and_then(|k| k.ids.get(&framed.id)) {
                    Some(schema) => {
                        last = Some((framed.id, schema));
                        schema
                    }
                    None => return Ok(Some((index, framed.id))),
                },
            };
            schema
                .validate(framed.payload)
                .map_err(|e| Refusal::Invalid {
                    index,
                    message: format!(
                        "record {index}: the {} does not decode with schema id {} of subject \
                     '{subject}': {e}",
                        part.name(),
                        framed.id
                    ),
                })?;
        }
        Ok(None)
    }

    /// Reads `subject`'s versions from the registry into the cache; refuses record `index`
    /// when `id` is not one of them.
    fn refresh(&self, subject: &str, id: u32, index: usize, part: Part) -> Result<(), Refusal> {
        let Some(source) = &self.source else {
            return Err(Refusal::Unavailable(
                "schema validation is on, but this host runs no schema registry \
                 (--no-schema-registry)"
                    .into(),
            ));
        };
        let unavailable = |e: SourceError| {
            Refusal::Unavailable(format!(
                "cannot check the {} against the schema registry at {}: {e}",
                part.name(),
                source.url()
            ))
        };
        let read_at = Instant::now();
        let versions = match source.versions(subject) {
            Ok(v) => v,
            Err(SourceError::UnknownSubject(_)) => Vec::new(),
            Err(e) => return Err(unavailable(e)),
        };
        let ids: HashMap<u32, Arc<ParsedSchema>> =
            versions.into_iter().map(|v| (v.id, v.schema)).collect();
        let member = ids.contains_key(&id);
        self.subjects
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(subject.to_owned(), Known { read_at, ids });
        if member {
            return Ok(());
        }
        // Say which: an id nobody registered, or one of another subject.
        let why = match source.schema(id) {
            Err(SourceError::UnknownId(_)) => format!("schema id {id} is not registered"),
            Ok(_) => format!("schema id {id} is not a version of subject '{subject}'"),
            Err(e) => return Err(unavailable(e)),
        };
        self.remember_refusal(subject, id, &why);
        let message = format!("record {index}: {why}");
        Err(Refusal::Invalid { index, message })
    }
}

impl RecordValidator for Validator {
    fn check_batches(
        &self,
        topic: &str,
        config: &TopicConfig,
        batches: &[u8],
        may_block: bool,
    ) -> Result<(), Refusal> {
        let mut records: Vec<KeyValue<'_>> = Vec::new();
        for batch in rill_log::batches(batches) {
            // Malformed bytes are the log's to refuse, with its own message.
            let Ok(batch) = batch else { break };
            if batch.is_control() {
                continue;
            }
            for r in batch.records() {
                let Ok(r) = r else { break };
                records.push((r.key, r.value));
            }
        }
        self.check_records(topic, config, &records, may_block)
    }
}

#[cfg(test)]
mod tests;
