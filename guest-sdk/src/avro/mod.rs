//! Avro records (feature `avro`): decode a framed value with the handler's reader schema,
//! resolving it against the writer's schema as Avro resolution says; encode with a writer
//! schema and frame with its registry id.
//!
//! ```no_run
//! use rill_guest::prelude::*;
//!
//! rill_guest::reader_schema!(ORDER, "orders-value", "schemas/order_v1.avsc");
//!
//! #[derive(Deserialize)]
//! struct Order { order_id: String, total_cents: i64 }
//!
//! fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
//!     let order: Order = rec.decode_avro(&ORDER)?;
//!     ctx.emit_json("totals", rec.key(), &json!({"id": order.order_id, "cents": order.total_cents}))
//! }
//! ```
//!
//! Parsed schemas are kept per id for the life of the instance (an id's schema never
//! changes), and so is the plan of each (reader, writer id) pair: after the first record
//! of a writer version, a decode is the Avro decode and the serde step only. When the
//! reader needs no resolution, those two are one: the bytes go straight into the type.

mod direct;

use std::cell::RefCell;
use std::collections::HashMap;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::schema::{Schema, frame_into, split, writer_schema_text};
use crate::{Context, Error, Record, Result};

pub use apache_avro;

/// How a (reader, writer) pair decodes: the writer's datum, resolved to the reader schema
/// when the two differ in more than the writer's extra fields (see
/// [`reader_fields_unchanged`]). When no resolution is needed and the writer schema has
/// only the types [`direct`] reads, the bytes go straight into the handler's type, with
/// apache-avro's `Value` path as the fallback. (apache-avro's own schema-aware deserializer
/// would skip the `Value` too, but it insists that the Rust type carry the record's name.)
struct Plan {
    values: GenericDatumReader<'static>,
    /// The writer schema, when [`direct`] may decode it.
    direct: Option<&'static apache_avro::Schema>,
}

thread_local! {
    /// Parsed schemas, leaked once per distinct text (ids and declared schemas are few).
    static PARSED: RefCell<HashMap<usize, &'static apache_avro::Schema>> =
        RefCell::new(HashMap::new());
    /// Writer schemas by id.
    static WRITERS: RefCell<HashMap<u32, &'static apache_avro::Schema>> =
        RefCell::new(HashMap::new());
    /// Decode plans by (reader text address, writer id).
    static PLANS: RefCell<HashMap<(usize, u32), &'static Plan>> = RefCell::new(HashMap::new());
}

fn avro_error(what: &str, e: apache_avro::Error) -> Error {
    Error::msg(format_args!("{what}: {e}"))
}

/// A declared schema, parsed once.
fn declared(schema: &Schema) -> Result<&'static apache_avro::Schema> {
    let key = schema.text().as_ptr() as usize;
    if let Some(s) = PARSED.with_borrow(|m| m.get(&key).copied()) {
        return Ok(s);
    }
    let parsed = apache_avro::Schema::parse_str(schema.text()).map_err(|e| {
        avro_error(
            &format!("the Avro schema of subject '{}'", schema.subject()),
            e,
        )
    })?;
    let parsed: &'static _ = Box::leak(Box::new(parsed));
    PARSED.with_borrow_mut(|m| m.insert(key, parsed));
    Ok(parsed)
}

fn writer(id: u32) -> Result<&'static apache_avro::Schema> {
    if let Some(s) = WRITERS.with_borrow(|m| m.get(&id).copied()) {
        return Ok(s);
    }
    let text = writer_schema_text(id)?;
    let parsed = apache_avro::Schema::parse_str(&text)
        .map_err(|e| avro_error(&format!("writer schema id {id} is not Avro"), e))?;
    let parsed: &'static _ = Box::leak(Box::new(parsed));
    WRITERS.with_borrow_mut(|m| m.insert(id, parsed));
    Ok(parsed)
}

/// Field renames the reader's aliases ask for: record name → (alias → field name).
type Renames = HashMap<String, HashMap<String, String>>;

fn collect_aliases(v: &serde_json::Value, out: &mut Renames) {
    match v {
        serde_json::Value::Object(o) => {
            if let (Some(name), Some(serde_json::Value::Array(fields))) =
                (o.get("name").and_then(|n| n.as_str()), o.get("fields"))
            {
                for f in fields {
                    let fname = f.get("name").and_then(|n| n.as_str()).unwrap_or_default();
                    for a in f
                        .get("aliases")
                        .and_then(|a| a.as_array())
                        .into_iter()
                        .flatten()
                    {
                        if let Some(a) = a.as_str() {
                            let short = name.rsplit('.').next().unwrap_or(name).to_owned();
                            out.entry(short)
                                .or_default()
                                .insert(a.to_owned(), fname.to_owned());
                        }
                    }
                }
            }
            o.values().for_each(|x| collect_aliases(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_aliases(x, out)),
        _ => {}
    }
}

fn rename_fields(v: &mut serde_json::Value, renames: &Renames) {
    match v {
        serde_json::Value::Object(o) => {
            let name = o.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            let short = name.rsplit('.').next().unwrap_or(name);
            if let (Some(map), Some(serde_json::Value::Array(fields))) =
                (renames.get(short), o.get_mut("fields"))
            {
                let names: Vec<String> = fields
                    .iter()
                    .filter_map(|f| f.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                    .collect();
                for f in fields.iter_mut() {
                    let fname = f.get("name").and_then(|n| n.as_str()).unwrap_or_default();
                    if let Some(to) = map.get(fname).filter(|to| !names.contains(to)) {
                        f["name"] = serde_json::Value::String(to.clone());
                    }
                }
            }
            o.values_mut().for_each(|x| rename_fields(x, renames));
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| rename_fields(x, renames)),
        _ => {}
    }
}

/// The writer schema with the fields the reader knows by an alias renamed to the reader's
/// names. Avro resolution matches a reader field by its name or its aliases; apache-avro's
/// value resolution only by name, so the aliases are applied here, once per writer id (the
/// binary encoding does not depend on field names).
fn apply_reader_aliases(reader: &str, writer: &str) -> Option<String> {
    if !reader.contains("aliases") {
        return None;
    }
    let mut renames = Renames::new();
    collect_aliases(&serde_json::from_str(reader).ok()?, &mut renames);
    if renames.is_empty() {
        return None;
    }
    let mut w: serde_json::Value = serde_json::from_str(writer).ok()?;
    rename_fields(&mut w, &renames);
    Some(w.to_string())
}

/// Whether decoding with the writer schema alone already gives every field the reader
/// wants, unchanged: both are the same record and each reader field is a writer field of the
/// same type. The writer's other fields are then skipped by serde, and the resolution step
/// (which rebuilds every record) is not needed. Anything else (a default to fill, a
/// promotion, an enum or union to resolve) takes the full resolution.
fn reader_fields_unchanged(r: &apache_avro::Schema, w: &apache_avro::Schema) -> bool {
    use apache_avro::Schema::Record;
    let (Record(r), Record(w)) = (r, w) else {
        return false;
    };
    r.name == w.name
        && r.fields.iter().all(|rf| {
            w.fields.iter().any(|wf| {
                wf.name == rf.name && wf.schema.canonical_form() == rf.schema.canonical_form()
            })
        })
}

fn plan(reader: &Schema, id: u32) -> Result<&'static Plan> {
    let key = (reader.text().as_ptr() as usize, id);
    if let Some(p) = PLANS.with_borrow(|m| m.get(&key).copied()) {
        return Ok(p);
    }
    let r = declared(reader)?;
    let mut w = writer(id)?;
    if let Some(text) = apply_reader_aliases(reader.text(), &writer_schema_text(id)?) {
        let renamed = apache_avro::Schema::parse_str(&text)
            .map_err(|e| avro_error(&format!("writer schema id {id} with reader aliases"), e))?;
        w = Box::leak(Box::new(renamed));
    }
    let build = |e| avro_error(&format!("writer schema id {id}"), e);
    let same = r.canonical_form() == w.canonical_form() || reader_fields_unchanged(r, w);
    let values = GenericDatumReader::builder(w)
        .maybe_reader_schema((!same).then_some(r))
        .build()
        .map_err(build)?;
    let direct = (same && direct::supported(w)).then_some(w);
    let plan: &'static Plan = Box::leak(Box::new(Plan { values, direct }));
    PLANS.with_borrow_mut(|m| m.insert(key, plan));
    Ok(plan)
}

/// Decodes a framed Avro `value` into `T` through `reader`: the writer schema comes from
/// the record's id. Errors (not traps) for an unframed value, an unknown id, and data the
/// reader schema cannot read.
pub fn decode<T: DeserializeOwned>(reader: &Schema, value: &[u8]) -> Result<T> {
    let (id, mut payload) = split(value)?;
    let plan = plan(reader, id)?;
    if let Some(writer) = plan.direct
        && let Ok(v) = direct::decode(writer, payload)
    {
        return Ok(v);
    }
    let cannot = |e| avro_error(&format!("cannot read Avro data of schema id {id}"), e);
    let v = plan.values.read_value(&mut payload).map_err(cannot)?;
    apache_avro::from_value(&v).map_err(cannot)
}

/// Encodes `value` with the writer schema `writer` and frames it with its registry id.
pub fn encode<T: Serialize + ?Sized>(writer: &Schema, value: &T) -> Result<Vec<u8>> {
    let id = writer.id()?;
    let mut out = Vec::new();
    encode_with_id(&mut out, id, writer, value)?;
    Ok(out)
}

/// Encodes `value` with `writer` into `out` (cleared first), framed with `id`.
pub fn encode_with_id<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    id: u32,
    writer: &Schema,
    value: &T,
) -> Result<()> {
    let schema = declared(writer)?;
    let w = GenericDatumWriter::builder(schema)
        .build()
        .map_err(|e| avro_error("Avro writer", e))?;
    frame_into(out, id, &[]);
    w.write_ser(out, &value).map_err(|e| {
        avro_error(
            &format!("value does not fit the schema of '{}'", writer.subject()),
            e,
        )
    })?;
    Ok(())
}

impl Record<'_> {
    /// The value, a framed Avro record, decoded through the `reader` schema (see
    /// [`decode`]).
    pub fn decode_avro<T: DeserializeOwned>(&self, reader: &Schema) -> Result<T> {
        let Some(v) = self.value() else {
            return Err(Error::msg("the value is null, not a framed Avro record"));
        };
        decode(reader, v)
    }
}

impl Context {
    /// Emits `value` encoded with the `writer` schema and framed with its registry id.
    pub fn emit_avro<T: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        writer: &Schema,
        value: &T,
    ) -> Result<()> {
        let bytes = encode(writer, value)?;
        self.emit(topic, key, Some(&bytes))
    }
}
