//! Schemas for Rill: the formats a registered schema can have (Avro, JSON Schema,
//! Protobuf), whether a payload is valid for one, the compatibility levels the registry
//! enforces between versions, and the wire framing serializers use (magic byte 0, a
//! 4-byte big-endian schema id, the payload).
//!
//! Nothing here does I/O. The host's registry (`rill-runtime`'s `schema` module) keeps
//! subjects, versions and ids durable and serves the REST API; this crate answers the
//! questions it asks: is this schema valid, is it compatible, does this payload decode.

mod avro;
mod compat;
mod json;
mod protobuf;
pub mod wire;

use std::fmt;

pub use compat::{CompatibilityLevel, check_compatibility};

/// A schema's format, as the registry API names it (`schemaType`; absent means Avro).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// Apache Avro (the default).
    #[default]
    Avro,
    /// JSON Schema.
    Json,
    /// Protocol Buffers (proto3 or proto2 source text).
    Protobuf,
}

impl SchemaType {
    /// The name the registry API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
            SchemaType::Protobuf => "PROTOBUF",
        }
    }

    /// Every type, in the order `GET /schemas/types` lists them.
    pub const ALL: [SchemaType; 3] = [SchemaType::Json, SchemaType::Protobuf, SchemaType::Avro];
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SchemaType {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, SchemaError> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(SchemaType::Avro),
            "JSON" => Ok(SchemaType::Json),
            "PROTOBUF" => Ok(SchemaType::Protobuf),
            other => Err(SchemaError::UnknownType(other.to_string())),
        }
    }
}

/// A schema another one refers to, already looked up by the registry: its reference name
/// (an Avro full name, a Protobuf import path, a JSON Schema `$ref` URL) and its text.
///
/// A schema's dependencies are passed as the transitive closure, dependencies of
/// dependencies first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The name the referring schema uses for it.
    pub name: String,
    /// The referenced schema's text.
    pub schema: String,
}

/// Why a schema is not a valid schema of its type (the registry answers 42201).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// `schemaType` is none of AVRO, JSON, PROTOBUF.
    #[error("unknown schema type '{0}' (expected AVRO, JSON or PROTOBUF)")]
    UnknownType(String),
    /// The text does not parse as a schema of its type.
    #[error("invalid {schema_type} schema: {message}")]
    Invalid {
        /// The type it was parsed as.
        schema_type: SchemaType,
        /// What the parser said.
        message: String,
    },
}

impl SchemaError {
    pub(crate) fn invalid(schema_type: SchemaType, message: impl fmt::Display) -> SchemaError {
        SchemaError::Invalid {
            schema_type,
            message: message.to_string(),
        }
    }
}

/// Why a payload does not decode with a schema.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// A parsed, checked schema, ready to validate and decode payloads and to be compared with
/// other versions.
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    kind: Kind,
    /// The text as registered (what `GET /schemas/ids/{id}` returns).
    text: String,
}

#[derive(Debug, Clone)]
enum Kind {
    Avro(avro::AvroSchema),
    Json(json::JsonSchema),
    Protobuf(protobuf::ProtobufSchema),
}

impl ParsedSchema {
    /// Parses `text` as a schema of `schema_type`, with the schemas it refers to.
    pub fn parse(
        schema_type: SchemaType,
        text: &str,
        dependencies: &[Dependency],
    ) -> Result<ParsedSchema, SchemaError> {
        let kind = match schema_type {
            SchemaType::Avro => Kind::Avro(avro::AvroSchema::parse(text, dependencies)?),
            SchemaType::Json => Kind::Json(json::JsonSchema::parse(text, dependencies)?),
            SchemaType::Protobuf => {
                Kind::Protobuf(protobuf::ProtobufSchema::parse(text, dependencies)?)
            }
        };
        Ok(ParsedSchema {
            kind,
            text: text.to_string(),
        })
    }

    /// The schema's format.
    pub fn schema_type(&self) -> SchemaType {
        match self.kind {
            Kind::Avro(_) => SchemaType::Avro,
            Kind::Json(_) => SchemaType::Json,
            Kind::Protobuf(_) => SchemaType::Protobuf,
        }
    }

    /// The text as given to [`ParsedSchema::parse`].
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A normal form: two texts of the same schema that differ only in whitespace or key
    /// order give the same string (Avro also drops `doc`; Protobuf drops comments and is
    /// the compiled descriptor). The registry uses it to find an already registered schema
    /// (same id, same version).
    ///
    /// For Avro this keeps defaults, aliases and logical types, unlike the specification's
    /// Parsing Canonical Form ([`ParsedSchema::avro_parsing_canonical_form`]), so that a
    /// version that only adds a default is a new version.
    pub fn canonical(&self) -> String {
        match &self.kind {
            Kind::Avro(s) => s.canonical(),
            Kind::Json(s) => s.canonical(),
            Kind::Protobuf(s) => s.canonical(),
        }
    }

    /// For Avro, the specification's Parsing Canonical Form with references inlined (what
    /// Avro fingerprints are computed over); `None` for other types.
    pub fn avro_parsing_canonical_form(&self) -> Option<String> {
        match &self.kind {
            Kind::Avro(s) => Some(s.parsing_canonical_form()),
            Kind::Json(_) | Kind::Protobuf(_) => None,
        }
    }

    /// The schema with every reference inlined, so a reader that knows nothing of the
    /// registry (a Wasm handler) can use it alone. For Protobuf this is the text itself.
    pub fn self_contained(&self) -> String {
        match &self.kind {
            Kind::Avro(s) => s.self_contained(),
            Kind::Json(_) | Kind::Protobuf(_) => self.text.clone(),
        }
    }

    /// The schema in Confluent's `?format=serialized` form, where the format has one:
    /// Protobuf's base64-encoded `FileDescriptorProto`.
    pub fn serialized(&self) -> Option<String> {
        match &self.kind {
            Kind::Protobuf(s) => s.serialized(),
            Kind::Avro(_) | Kind::Json(_) => None,
        }
    }

    /// Checks that `payload` (the bytes after the 5-byte framing; for Protobuf they start
    /// with the message indexes, see [`wire::split_message_indexes`]) is a valid value of
    /// this schema, consumed exactly.
    pub fn validate(&self, payload: &[u8]) -> Result<(), DecodeError> {
        match &self.kind {
            // Decoding is the check; the JSON form is not needed.
            Kind::Avro(s) => s.validate(payload),
            Kind::Protobuf(s) => s.validate(payload),
            Kind::Json(s) => s.to_json(payload).map(|_| ()),
        }
    }

    /// Decodes `payload` (as for [`ParsedSchema::validate`]) into JSON, for people reading
    /// records (`runtime consume --decode`).
    pub fn to_json(&self, payload: &[u8]) -> Result<serde_json::Value, DecodeError> {
        match &self.kind {
            Kind::Avro(s) => s.to_json(payload),
            Kind::Json(s) => s.to_json(payload),
            Kind::Protobuf(s) => s.to_json(payload),
        }
    }

    /// Why data written with `writer` cannot be read with `self` as the reader schema, one
    /// line per problem; empty when it can. Schemas of different types never can.
    pub fn can_read(&self, writer: &ParsedSchema) -> Vec<String> {
        match (&self.kind, &writer.kind) {
            (Kind::Avro(r), Kind::Avro(w)) => r.can_read(w),
            (Kind::Json(r), Kind::Json(w)) => r.can_read(w),
            (Kind::Protobuf(r), Kind::Protobuf(w)) => r.can_read(w),
            _ => vec![format!(
                "the schema type changed from {} to {}",
                writer.schema_type(),
                self.schema_type()
            )],
        }
    }
}
