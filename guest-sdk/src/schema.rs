//! Typed handlers: schemas a handler declares, the registry framing, and JSON Schema
//! payloads (`docs/schemas.md`). Avro lives in [`crate::avro`] (feature `avro`).
//!
//! A handler declares the schema it reads a subject with, and the one it writes a subject
//! with, from files in its crate:
//!
//! ```
//! rill_guest::reader_schema!(ORDER, "orders-value", "schemas/example_order.json");
//! assert_eq!(ORDER.subject(), "orders-value");
//! assert_eq!(ORDER.format(), rill_guest::schema::Format::Json);
//! ```
//!
//! Each declaration also lands in the module's `rill.schemas` custom section, which the host
//! reads at deploy: a reader schema that cannot read every version registered under its
//! subject refuses the deploy.
//!
//! Records carry the Confluent framing: magic byte `0`, the writer schema's id as 4 bytes
//! big-endian, the payload. The writer schema of an id comes from the host (`schema_get`),
//! once per id; the id of a schema the handler writes with from `schema_id`, once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result, abi};

/// A schema's format. The file extension of a declared schema picks it: `.avsc` Avro,
/// `.json` JSON Schema, `.proto` Protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Format {
    /// Apache Avro.
    Avro = 0,
    /// JSON Schema.
    Json = 1,
    /// Protocol Buffers.
    Protobuf = 2,
}

const fn ends_with(s: &str, suffix: &str) -> bool {
    let (s, x) = (s.as_bytes(), suffix.as_bytes());
    if x.len() > s.len() {
        return false;
    }
    let mut i = 0;
    while i < x.len() {
        if s[s.len() - x.len() + i] != x[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl Format {
    /// The format of a schema file, by its extension. Panics at compile time for another.
    pub const fn from_path(path: &str) -> Format {
        if ends_with(path, ".avsc") {
            Format::Avro
        } else if ends_with(path, ".json") {
            Format::Json
        } else if ends_with(path, ".proto") {
            Format::Protobuf
        } else {
            panic!("a schema file must end in .avsc (Avro), .json (JSON Schema) or .proto")
        }
    }
}

/// A schema a handler declared with [`crate::reader_schema!`] or [`crate::writer_schema!`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    subject: &'static str,
    format: Format,
    text: &'static str,
}

impl Schema {
    #[doc(hidden)]
    pub const fn new(subject: &'static str, format: Format, text: &'static str) -> Schema {
        Schema {
            subject,
            format,
            text,
        }
    }

    /// The registry subject.
    pub const fn subject(&self) -> &'static str {
        self.subject
    }

    /// The format.
    pub const fn format(&self) -> Format {
        self.format
    }

    /// The schema text, as in the file.
    pub const fn text(&self) -> &'static str {
        self.text
    }

    /// The registry id of this schema under its subject, registering it if needed (the host
    /// caches it; so does this instance, after the first call).
    pub fn id(&self) -> Result<u32> {
        let key = (self.subject, self.text.as_ptr() as usize);
        if let Some(id) = IDS.with_borrow(|m| m.get(&key).copied()) {
            return Ok(id);
        }
        let rc = abi::schema_id(self.subject, self.format as i32, self.text);
        if rc < 0 {
            return Err(Error::msg(format_args!(
                "the registry gave no id for the {:?} schema of subject '{}' (code {rc}; the \
                 host's log says why)",
                self.format, self.subject
            )));
        }
        IDS.with_borrow_mut(|m| m.insert(key, rc as u32));
        Ok(rc as u32)
    }
}

thread_local! {
    /// Writer schema texts by id, as the host gave them.
    static TEXTS: RefCell<HashMap<u32, Rc<str>>> = RefCell::new(HashMap::new());
    /// Ids of declared schemas, by (subject, text address).
    static IDS: RefCell<HashMap<(&'static str, usize), u32>> = RefCell::new(HashMap::new());
}

/// The writer schema registered under `id`, self-contained, from the host (cached).
pub fn writer_schema_text(id: u32) -> Result<Rc<str>> {
    if let Some(t) = TEXTS.with_borrow(|m| m.get(&id).cloned()) {
        return Ok(t);
    }
    let mut buf = vec![0u8; 1024];
    loop {
        let n = abi::schema_get(id, &mut buf);
        if n < 0 {
            let why = if n == -1 {
                "not registered"
            } else {
                "not available: the host has no schema registry or cannot reach it"
            };
            return Err(Error::msg(format_args!("writer schema id {id} is {why}")));
        }
        let n = n as usize;
        if n <= buf.len() {
            buf.truncate(n);
            let text: Rc<str> = String::from_utf8(buf)
                .map_err(|_| Error::msg(format_args!("schema id {id} is not UTF-8")))?
                .into();
            TEXTS.with_borrow_mut(|m| m.insert(id, text.clone()));
            return Ok(text);
        }
        buf.resize(n, 0);
    }
}

/// Splits a framed value into its schema id and payload: magic byte `0`, a 4-byte
/// big-endian id, the payload.
pub fn split(value: &[u8]) -> Result<(u32, &[u8])> {
    match value {
        [0, a, b, c, d, payload @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), payload)),
        [m, ..] if value.len() >= 5 => Err(Error::msg(format_args!(
            "value is not schema-framed: magic byte {m}, expected 0"
        ))),
        _ => Err(Error::msg(format_args!(
            "value is not schema-framed: {} bytes, shorter than the 5-byte framing",
            value.len()
        ))),
    }
}

/// Frames `payload` with `id` (appending to `out`, cleared first).
pub fn frame_into(out: &mut Vec<u8>, id: u32, payload: &[u8]) {
    out.clear();
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
}

/// `payload` framed with `id`.
pub fn frame(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    frame_into(&mut out, id, payload);
    out
}

#[cfg(feature = "json-schema")]
impl crate::Record<'_> {
    /// The value, a framed JSON Schema record, deserialized (see [`decode_json`]).
    pub fn decode_json_schema<T: DeserializeOwned>(&self) -> Result<T> {
        decode_json(self.value_bytes())
    }
}

#[cfg(feature = "json-schema")]
impl crate::Context {
    /// Emits `value` as JSON framed with the registry id of the `writer` schema.
    pub fn emit_json_schema<T: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        writer: &Schema,
        value: &T,
    ) -> Result<()> {
        let bytes = encode_json(writer, value)?;
        self.emit(topic, key, Some(&bytes))
    }
}

/// Decodes a framed JSON Schema value: the framing is checked and split, the payload
/// deserialized with serde_json (the writer's id is not fetched: JSON carries its names).
pub fn decode_json<T: DeserializeOwned>(value: &[u8]) -> Result<T> {
    let (_, payload) = split(value)?;
    Ok(serde_json::from_slice(payload)?)
}

/// `value` as JSON, framed with `writer`'s id.
pub fn encode_json<T: Serialize + ?Sized>(writer: &Schema, value: &T) -> Result<Vec<u8>> {
    let mut out = frame(writer.id()?, &[]);
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// Bytes a `rill.schemas` entry takes (`docs/schemas.md`).
#[doc(hidden)]
pub const fn section_len(subject: &str, text: &str) -> usize {
    2 + 4 + subject.len() + 4 + text.len()
}

/// One `rill.schemas` entry: `role u8, format u8, subject_len u32 LE, subject, schema_len
/// u32 LE, schema`.
#[doc(hidden)]
pub const fn section_entry<const N: usize>(
    role: u8,
    format: Format,
    subject: &str,
    text: &str,
) -> [u8; N] {
    let mut out = [0u8; N];
    out[0] = role;
    out[1] = format as u8;
    let mut at = 2;
    let parts = [subject.as_bytes(), text.as_bytes()];
    let mut p = 0;
    while p < 2 {
        let bytes = parts[p];
        let len = (bytes.len() as u32).to_le_bytes();
        let mut i = 0;
        while i < 4 {
            out[at + i] = len[i];
            i += 1;
        }
        at += 4;
        let mut i = 0;
        while i < bytes.len() {
            out[at + i] = bytes[i];
            i += 1;
        }
        at += bytes.len();
        p += 1;
    }
    assert!(at == N, "section length mismatch");
    out
}

/// Declares the schema this handler reads `subject` with, from a file of the crate (a path
/// relative to its `Cargo.toml`): `reader_schema!(NAME, "subject", "schemas/x.avsc")` makes
/// a [`schema::Schema`](crate::schema::Schema) const `NAME` and a `rill.schemas` entry the
/// host checks at deploy.
#[macro_export]
macro_rules! reader_schema {
    ($vis:vis $name:ident, $subject:expr, $path:expr) => {
        $crate::__declare_schema!(0, $vis $name, $subject, $path);
    };
}

/// Declares the schema this handler emits `subject` with (see [`reader_schema!`]); its id
/// comes from the registry through [`schema::Schema::id`](crate::schema::Schema::id).
#[macro_export]
macro_rules! writer_schema {
    ($vis:vis $name:ident, $subject:expr, $path:expr) => {
        $crate::__declare_schema!(1, $vis $name, $subject, $path);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __declare_schema {
    ($role:expr, $vis:vis $name:ident, $subject:expr, $path:expr) => {
        $vis const $name: $crate::schema::Schema = {
            const SUBJECT: &str = $subject;
            const TEXT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path));
            const FORMAT: $crate::schema::Format = $crate::schema::Format::from_path($path);
            const LEN: usize = $crate::schema::section_len(SUBJECT, TEXT);
            #[cfg_attr(target_arch = "wasm32", unsafe(link_section = "rill.schemas"))]
            #[used]
            static SECTION: [u8; LEN] =
                $crate::schema::section_entry::<LEN>($role, FORMAT, SUBJECT, TEXT);
            $crate::schema::Schema::new(SUBJECT, FORMAT, TEXT)
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_entries_and_framing() {
        const E: [u8; section_len("s", "ab")] = section_entry(1, Format::Json, "s", "ab");
        assert_eq!(E, [1, 1, 1, 0, 0, 0, b's', 2, 0, 0, 0, b'a', b'b']);
        assert_eq!(split(&frame(258, b"x")).unwrap(), (258, &b"x"[..]));
        assert!(
            split(b"\x01\0\0\0\x01x")
                .unwrap_err()
                .message()
                .contains("magic")
        );
        assert!(split(b"{}").unwrap_err().message().contains("shorter"));
        assert_eq!(Format::from_path("a/b.avsc"), Format::Avro);
    }
}
