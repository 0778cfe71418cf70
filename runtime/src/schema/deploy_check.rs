//! The deploy-time check of typed handlers: a module that declares a reader schema for a
//! subject (its `rill.schemas` section) is deployed only if that schema can read every
//! version registered under the subject.

use rill_engine::{DeclaredSchema, SchemaFormat, SchemaRole};

use super::{ParsedSchema, SchemaSource, SchemaType, SourceError};

/// Why a module's schemas refuse its deploy. Every message is one line.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// The section does not parse, or a declared schema is not a valid schema.
    #[error("{0}")]
    Invalid(String),
    /// A reader schema cannot read a registered version.
    #[error(
        "reader schema for subject '{subject}' cannot read version {version} (id {id}): {problem}"
    )]
    Incompatible {
        /// The subject.
        subject: String,
        /// The version it cannot read.
        version: i32,
        /// That version's id.
        id: u32,
        /// The first problem.
        problem: String,
    },
    /// The module declares schemas but the registry is missing or unreachable.
    #[error("{0}")]
    Registry(String),
}

fn schema_type(format: SchemaFormat) -> SchemaType {
    match format {
        SchemaFormat::Avro => SchemaType::Avro,
        SchemaFormat::Json => SchemaType::Json,
        SchemaFormat::Protobuf => SchemaType::Protobuf,
    }
}

/// Checks the schemas `wasm` declares against `source` (`None`: this host has no registry).
/// A module that declares none passes whatever the registry; a subject with no versions
/// accepts any reader.
pub fn check_module(wasm: &[u8], source: Option<&dyn SchemaSource>) -> Result<(), CheckError> {
    let declared =
        rill_engine::declared_schemas(wasm).map_err(|e| CheckError::Invalid(e.to_string()))?;
    check_declared(&declared, source)
}

/// [`check_module`] over already-read declarations.
pub fn check_declared(
    declared: &[DeclaredSchema],
    source: Option<&dyn SchemaSource>,
) -> Result<(), CheckError> {
    if declared.is_empty() {
        return Ok(());
    }
    let Some(source) = source else {
        return Err(CheckError::Registry(format!(
            "the module declares schemas (subject '{}') but this host has no schema registry",
            declared[0].subject
        )));
    };
    for d in declared.iter().filter(|d| d.role == SchemaRole::Reader) {
        let reader = ParsedSchema::parse(schema_type(d.format), &d.text, &[]).map_err(|e| {
            CheckError::Invalid(format!("reader schema for subject '{}': {e}", d.subject))
        })?;
        let versions = match source.versions(&d.subject) {
            Ok(v) => v,
            Err(SourceError::UnknownSubject(_)) => continue,
            Err(e @ SourceError::Unavailable { .. }) => {
                return Err(CheckError::Registry(format!(
                    "cannot check reader schema for subject '{}': {e}",
                    d.subject
                )));
            }
            Err(e) => {
                return Err(CheckError::Registry(format!(
                    "cannot check reader schema for subject '{}' against the registry at {}: {e}",
                    d.subject,
                    source.url()
                )));
            }
        };
        for v in versions {
            if let Some(problem) = reader.can_read(&v.schema).into_iter().next() {
                return Err(CheckError::Incompatible {
                    subject: d.subject.clone(),
                    version: v.version,
                    id: v.id,
                    problem,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::super::Version;
    use super::*;

    #[derive(Debug, Default)]
    struct Fake {
        subjects: Mutex<HashMap<String, Vec<Version>>>,
        down: bool,
    }

    impl SchemaSource for Fake {
        fn schema(&self, id: u32) -> Result<Arc<ParsedSchema>, SourceError> {
            Err(SourceError::UnknownId(id))
        }
        fn versions(&self, subject: &str) -> Result<Vec<Version>, SourceError> {
            if self.down {
                return Err(SourceError::Unavailable {
                    url: self.url(),
                    message: "connection refused".into(),
                });
            }
            self.subjects
                .lock()
                .unwrap()
                .get(subject)
                .cloned()
                .ok_or_else(|| SourceError::UnknownSubject(subject.into()))
        }
        fn register(&self, subject: &str, t: SchemaType, text: &str) -> Result<u32, SourceError> {
            let mut s = self.subjects.lock().unwrap();
            let v = s.entry(subject.into()).or_default();
            let id = v.len() as u32 + 1;
            v.push(Version {
                version: id as i32,
                id,
                schema: Arc::new(ParsedSchema::parse(t, text, &[]).unwrap()),
            });
            Ok(id)
        }
        fn url(&self) -> String {
            "http://127.0.0.1:8081".into()
        }
    }

    const V1: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"order_id","type":"string"},{"name":"total_cents","type":"long"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"order_id","type":"string"},{"name":"total_cents","type":"long"},
        {"name":"currency","type":"string","default":"EUR"}]}"#;
    const V3: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"order_id","type":"string"}]}"#;

    fn reader(text: &str) -> Vec<DeclaredSchema> {
        vec![DeclaredSchema {
            role: SchemaRole::Reader,
            format: SchemaFormat::Avro,
            subject: "orders-value".into(),
            text: text.into(),
        }]
    }

    #[test]
    fn a_reader_must_read_every_registered_version() {
        let fake = Fake::default();
        assert!(
            check_declared(&reader(V1), Some(&fake)).is_ok(),
            "no versions"
        );
        fake.register("orders-value", SchemaType::Avro, V1).unwrap();
        fake.register("orders-value", SchemaType::Avro, V2).unwrap();
        check_declared(&reader(V1), Some(&fake)).unwrap();
        check_declared(&reader(V2), Some(&fake)).unwrap();
        check_declared(&reader(V3), Some(&fake)).unwrap();
        fake.register("orders-value", SchemaType::Avro, V3).unwrap();
        let e = check_declared(&reader(V1), Some(&fake))
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 3") && e.contains("total_cents"), "{e}");
        assert!(check_declared(&[], None).is_ok());
        let e = check_declared(&reader(V1), None).unwrap_err().to_string();
        assert!(e.contains("no schema registry"), "{e}");
        let down = Fake {
            down: true,
            ..Fake::default()
        };
        let e = check_declared(&reader(V1), Some(&down))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http://127.0.0.1:8081"), "{e}");
    }
}
