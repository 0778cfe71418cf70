//! Schemas for typed handlers: the host half of `schema_get` and `schema_id`
//! (`docs/abi.md`, "Schemas"), and the `rill.schemas` custom section a module declares its
//! schemas in.
//!
//! The engine knows no registry. An instance is given a [`SchemaResolver`] (the runtime's,
//! over its schema registry); the imports ask it for a writer schema by id, or for the id of
//! a schema the guest writes with. A resolver answers from a cache once it has seen an id, so
//! the imports cost a map lookup after the first record of each schema.

use std::sync::Arc;

use wasmtime::Caller;

use crate::host::{Abort, HostState, abort, guest_slice, guest_slice_mut, push_log};
use crate::outcome::Level;

/// The name of the custom section that declares a module's schemas.
pub const SCHEMA_SECTION: &str = "rill.schemas";

/// `schema_get` / `schema_id` result: the registry does not know the id, or refused the
/// schema (incompatible with the subject's versions, invalid).
pub const SCHEMA_ERR_UNKNOWN: i32 = -1;
/// `schema_get` / `schema_id` result: no registry is configured or it cannot be reached.
pub const SCHEMA_ERR_UNAVAILABLE: i32 = -2;
/// `schema_id` result: bad arguments (subject not UTF-8, unknown type code).
pub const SCHEMA_ERR_INVALID: i32 = -3;

/// A schema's format, as the ABI codes it (`0` Avro, `1` JSON Schema, `2` Protobuf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaFormat {
    /// Apache Avro.
    Avro,
    /// JSON Schema.
    Json,
    /// Protocol Buffers.
    Protobuf,
}

impl SchemaFormat {
    /// The format of an ABI code.
    pub fn from_code(code: i32) -> Option<SchemaFormat> {
        match code {
            0 => Some(SchemaFormat::Avro),
            1 => Some(SchemaFormat::Json),
            2 => Some(SchemaFormat::Protobuf),
            _ => None,
        }
    }

    /// The name the registry API uses (`AVRO`, `JSON`, `PROTOBUF`).
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaFormat::Avro => "AVRO",
            SchemaFormat::Json => "JSON",
            SchemaFormat::Protobuf => "PROTOBUF",
        }
    }
}

/// Why a resolver could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The registry does not know the id, or refused the schema.
    #[error("{0}")]
    Unknown(String),
    /// No registry is configured, or it cannot be reached.
    #[error("{0}")]
    Unavailable(String),
}

/// Where an instance gets schemas: the runtime implements it over its registry.
pub trait SchemaResolver: Send + Sync {
    /// The schema registered under `id`, self-contained (references inlined).
    fn schema(&self, id: u32) -> Result<Arc<str>, ResolveError>;
    /// The id of `text` under `subject`, registering it if it is not yet.
    fn schema_id(
        &self,
        subject: &str,
        format: SchemaFormat,
        text: &str,
    ) -> Result<u32, ResolveError>;
}

/// The resolver an instance uses, shared with its owner.
#[derive(Clone)]
pub struct SchemaHandle(pub Arc<dyn SchemaResolver>);

impl std::fmt::Debug for SchemaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SchemaHandle")
    }
}

fn no_registry() -> ResolveError {
    ResolveError::Unavailable("this host has no schema registry configured".into())
}

fn code(e: &ResolveError) -> i32 {
    match e {
        ResolveError::Unknown(_) => SCHEMA_ERR_UNKNOWN,
        ResolveError::Unavailable(_) => SCHEMA_ERR_UNAVAILABLE,
    }
}

/// `schema_get(id, out_ptr, out_cap) -> i32`: the length of the self-contained schema text
/// of `id` (its first `out_cap` bytes copied out), or a negative code; the reason is logged.
pub(crate) fn schema_get(
    mut caller: Caller<'_, HostState>,
    id: i32,
    out_ptr: i32,
    out_cap: i32,
) -> wasmtime::Result<i32> {
    let resolved = match &caller.data().schemas {
        Some(h) => h.0.schema(id as u32),
        None => Err(no_registry()),
    };
    let text = match resolved {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("schema_get({}): {e}", id as u32);
            push_log(&mut caller, Level::Error, msg.as_bytes())?;
            return Ok(code(&e));
        }
    };
    let mem = crate::host::memory(&caller);
    let data = mem.data_mut(&mut caller);
    let n = text.len().min(out_cap.max(0) as usize);
    match guest_slice_mut(data, out_ptr, n as i32, "schema_get output") {
        Ok(dst) => {
            dst.copy_from_slice(&text.as_bytes()[..n]);
            Ok(text.len().min(i32::MAX as usize) as i32)
        }
        Err(a) => Err(abort(&mut caller, a)),
    }
}

/// `schema_id(subject_ptr, subject_len, type, schema_ptr, schema_len) -> i32`: the id of the
/// schema under the subject (registered if needed), or a negative code; the reason is logged.
pub(crate) fn schema_id(
    mut caller: Caller<'_, HostState>,
    subject_ptr: i32,
    subject_len: i32,
    format: i32,
    schema_ptr: i32,
    schema_len: i32,
) -> wasmtime::Result<i32> {
    let mem = crate::host::memory(&caller);
    let data: &[u8] = mem.data(&caller);
    let args = (|| {
        let subject = guest_slice(data, subject_ptr, subject_len, "schema_id subject")?;
        let text = guest_slice(data, schema_ptr, schema_len, "schema_id schema")?;
        Ok::<_, Abort>((subject.to_vec(), text.to_vec()))
    })();
    let (subject, text) = match args {
        Ok(a) => a,
        Err(a) => return Err(abort(&mut caller, a)),
    };
    let (Ok(subject), Ok(text), Some(format)) = (
        String::from_utf8(subject),
        String::from_utf8(text),
        SchemaFormat::from_code(format),
    ) else {
        let msg = "schema_id: the subject and schema must be UTF-8 and the type 0, 1 or 2";
        push_log(&mut caller, Level::Error, msg.as_bytes())?;
        return Ok(SCHEMA_ERR_INVALID);
    };
    let resolved = match &caller.data().schemas {
        Some(h) => h.0.schema_id(&subject, format, &text),
        None => Err(no_registry()),
    };
    match resolved {
        Ok(id) if id <= i32::MAX as u32 => Ok(id as i32),
        Ok(id) => {
            let msg = format!("schema_id('{subject}'): id {id} does not fit the ABI");
            push_log(&mut caller, Level::Error, msg.as_bytes())?;
            Ok(SCHEMA_ERR_UNKNOWN)
        }
        Err(e) => {
            let msg = format!("schema_id('{subject}'): {e}");
            push_log(&mut caller, Level::Error, msg.as_bytes())?;
            Ok(code(&e))
        }
    }
}

/// Whether a schema declared in the `rill.schemas` section is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaRole {
    /// The handler reads records of the subject with it.
    Reader,
    /// The handler emits records of the subject with it.
    Writer,
}

/// One schema a module declares in its `rill.schemas` custom section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredSchema {
    /// Read or written.
    pub role: SchemaRole,
    /// Its format.
    pub format: SchemaFormat,
    /// The registry subject (`orders-value`).
    pub subject: String,
    /// The schema text.
    pub text: String,
}

/// The `rill.schemas` section is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed `rill.schemas` section: {0}")]
pub struct SectionError(String);

/// The schemas a module declares: every entry of every `rill.schemas` custom section, in
/// order. A module without one declares none. Entries are
/// `role u8, format u8, subject_len u32 LE, subject, schema_len u32 LE, schema`.
pub fn declared_schemas(wasm: &[u8]) -> Result<Vec<DeclaredSchema>, SectionError> {
    let mut out = Vec::new();
    for body in custom_sections(wasm, SCHEMA_SECTION)? {
        let mut rest = body;
        while !rest.is_empty() {
            let (entry, tail) = parse_entry(rest)?;
            out.push(entry);
            rest = tail;
        }
    }
    Ok(out)
}

fn parse_entry(b: &[u8]) -> Result<(DeclaredSchema, &[u8]), SectionError> {
    let err = |m: &str| SectionError(m.to_owned());
    let [role, format, rest @ ..] = b else {
        return Err(err("truncated entry"));
    };
    let role = match role {
        0 => SchemaRole::Reader,
        1 => SchemaRole::Writer,
        r => return Err(SectionError(format!("unknown role {r}"))),
    };
    let format = SchemaFormat::from_code(i32::from(*format))
        .ok_or_else(|| SectionError(format!("unknown schema type {format}")))?;
    let (subject, rest) = take_str(rest).ok_or_else(|| err("truncated subject"))?;
    let (text, rest) = take_str(rest).ok_or_else(|| err("truncated schema"))?;
    let entry = DeclaredSchema {
        role,
        format,
        subject,
        text,
    };
    Ok((entry, rest))
}

fn take_str(b: &[u8]) -> Option<(String, &[u8])> {
    let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let s = b.get(4..4usize.checked_add(len)?)?;
    Some((String::from_utf8(s.to_vec()).ok()?, &b[4 + len..]))
}

fn leb_u32(b: &[u8], at: &mut usize) -> Option<u32> {
    let mut v: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(v).ok();
        }
    }
    None
}

/// The bodies of the custom sections named `name`.
fn custom_sections<'a>(wasm: &'a [u8], name: &str) -> Result<Vec<&'a [u8]>, SectionError> {
    let bad = || SectionError("the module's sections do not parse".into());
    let mut at = 8;
    let mut found = Vec::new();
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = leb_u32(wasm, &mut at).ok_or_else(bad)? as usize;
        let end = at
            .checked_add(size)
            .filter(|&e| e <= wasm.len())
            .ok_or_else(bad)?;
        if id == 0 {
            let mut p = at;
            let n = leb_u32(wasm, &mut p).ok_or_else(bad)? as usize;
            let name_end = p.checked_add(n).filter(|&e| e <= end).ok_or_else(bad)?;
            if &wasm[p..name_end] == name.as_bytes() {
                found.push(&wasm[name_end..end]);
            }
        }
        at = end;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(role: u8, format: u8, subject: &str, text: &str) -> Vec<u8> {
        let mut v = vec![role, format];
        v.extend((subject.len() as u32).to_le_bytes());
        v.extend(subject.as_bytes());
        v.extend((text.len() as u32).to_le_bytes());
        v.extend(text.as_bytes());
        v
    }

    fn section(name: &str, body: &[u8]) -> Vec<u8> {
        let mut payload = vec![name.len() as u8];
        payload.extend(name.as_bytes());
        payload.extend(body);
        let mut s = vec![0u8];
        let mut n = payload.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            s.push(if n == 0 { b } else { b | 0x80 });
            if n == 0 {
                break;
            }
        }
        s.extend(payload);
        s
    }

    #[test]
    fn reads_every_entry_of_every_section() {
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        let big = "x".repeat(300);
        let mut body = entry(0, 0, "orders-value", "{\"type\":\"string\"}");
        body.extend(entry(1, 1, "out-value", &big));
        wasm.extend(section(SCHEMA_SECTION, &body));
        wasm.extend(section("other", b"zzz"));
        wasm.extend(section(SCHEMA_SECTION, &entry(0, 2, "p", "syntax")));
        let got = declared_schemas(&wasm).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].subject, "orders-value");
        assert_eq!(got[0].role, SchemaRole::Reader);
        assert_eq!(got[1].format, SchemaFormat::Json);
        assert_eq!(got[1].text, big);
        assert_eq!(got[2].format, SchemaFormat::Protobuf);
        let mut cut = b"\0asm\x01\0\0\0".to_vec();
        cut.extend(section(SCHEMA_SECTION, &body[..body.len() - 1]));
        assert!(declared_schemas(&cut).is_err());
        assert!(declared_schemas(b"\0asm\x01\0\0\0").unwrap().is_empty());
    }
}
