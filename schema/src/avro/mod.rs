//! Avro schemas through `apache-avro`: parsing (with referenced named types), decoding,
//! and the specification's schema-resolution rules for compatibility.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;

use crate::{DecodeError, Dependency, SchemaError, SchemaType};

mod compat;
mod skip;

/// Checks that every `size`, `precision` and `scale` on a schema or a field is an integer
/// (or a string holding one). apache-avro keeps other values as custom attributes and then
/// panics when it derives the Parsing Canonical Form, so such a schema is refused here.
fn integer_attributes(schema: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    match schema {
        Value::Array(union) => union.iter().try_for_each(integer_attributes),
        Value::Object(o) => {
            for key in ["size", "precision", "scale"] {
                let ok = match o.get(key) {
                    None => true,
                    Some(Value::String(s)) => s.parse::<i64>().is_ok(),
                    Some(v) => v.as_i64().is_some(),
                };
                if !ok {
                    return Err(format!("\"{key}\" must be an integer"));
                }
            }
            for key in ["type", "items", "values"] {
                if let Some(inner) = o.get(key) {
                    integer_attributes(inner)?;
                }
            }
            if let Some(Value::Array(fields)) = o.get("fields") {
                fields.iter().try_for_each(integer_attributes)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AvroSchema {
    schema: Schema,
    /// The named types the schema refers to, parsed.
    dependencies: Vec<Schema>,
}

impl AvroSchema {
    pub(crate) fn parse(
        text: &str,
        dependencies: &[Dependency],
    ) -> Result<AvroSchema, SchemaError> {
        let invalid = |e: apache_avro::Error| SchemaError::invalid(SchemaType::Avro, e);
        for t in std::iter::once(text).chain(dependencies.iter().map(|d| d.schema.as_str())) {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(t) {
                integer_attributes(&json).map_err(|e| SchemaError::invalid(SchemaType::Avro, e))?;
            }
        }
        if dependencies.is_empty() {
            let schema = Schema::parse_str(text).map_err(invalid)?;
            return Ok(AvroSchema {
                schema,
                dependencies: Vec::new(),
            });
        }
        let (schema, dependencies) =
            Schema::parse_str_with_list(text, dependencies.iter().map(|d| d.schema.as_str()))
                .map_err(invalid)?;
        Ok(AvroSchema {
            schema,
            dependencies,
        })
    }

    /// The schema with every referenced named type inlined at its first use (later uses
    /// name it), so it parses alone.
    fn inlined(&self) -> Schema {
        let mut schema = self.schema.clone();
        // Parsing already checked that every reference resolves, so this does not fail; if
        // it did, the schema with its references is still the best answer.
        if schema.denormalize(&self.dependencies).is_err() {
            return self.schema.clone();
        }
        schema
    }

    /// The schema as JSON with references inlined, `doc` dropped and object keys sorted.
    ///
    /// Not the specification's Parsing Canonical Form: that form drops defaults, aliases and
    /// logical types, so two versions differing only in a field's default (a compatible
    /// change that matters to readers) would look like the same schema to the registry.
    pub(crate) fn canonical(&self) -> String {
        match serde_json::to_value(self.inlined()) {
            Ok(mut json) => {
                strip_doc(&mut json);
                sorted(&json).to_string()
            }
            Err(_) => self.parsing_canonical_form(),
        }
    }

    /// The specification's Parsing Canonical Form, with references inlined.
    pub(crate) fn parsing_canonical_form(&self) -> String {
        self.inlined().canonical_form()
    }

    pub(crate) fn self_contained(&self) -> String {
        serde_json::to_string(&self.inlined()).unwrap_or_else(|_| self.parsing_canonical_form())
    }

    pub(crate) fn to_json(&self, payload: &[u8]) -> Result<serde_json::Value, DecodeError> {
        let value = self.decode(payload)?;
        serde_json::Value::try_from(value).map_err(|e| DecodeError(e.to_string()))
    }

    /// Checks `payload` is one value of the schema: the allocation-free walk first, and
    /// the full decoder (with its message) when the walk does not accept it.
    pub(crate) fn validate(&self, payload: &[u8]) -> Result<(), DecodeError> {
        match skip::walk(&self.schema, &self.dependencies, payload) {
            Ok(skip::Walked::Valid) => Ok(()),
            Err(skip::Stop::Limit(why)) => Err(DecodeError(why.into())),
            Ok(skip::Walked::AskDecoder) | Err(skip::Stop::Invalid) => {
                self.decode_unguarded(payload).map(|_| ())
            }
        }
    }

    /// Decodes `payload`, consumed exactly, without turning it into JSON (what door
    /// validation needs, per record).
    pub(crate) fn decode(&self, payload: &[u8]) -> Result<apache_avro::types::Value, DecodeError> {
        if let Err(skip::Stop::Limit(why)) = skip::walk(&self.schema, &self.dependencies, payload) {
            return Err(DecodeError(why.into()));
        }
        self.decode_unguarded(payload)
    }

    /// The full decoder, for a payload the walk found within its limits.
    fn decode_unguarded(&self, payload: &[u8]) -> Result<apache_avro::types::Value, DecodeError> {
        let reader = GenericDatumReader::builder(&self.schema)
            .writer_schemata(self.dependencies.iter().chain([&self.schema]).collect())
            .and_then(|b| b.build())
            .map_err(|e| DecodeError(e.to_string()))?;
        let mut input = Input {
            rest: payload,
            ran_out: false,
        };
        let value = reader
            .read_value(&mut input)
            .map_err(|e| DecodeError(format!("not valid Avro for the schema: {e}")))?;
        // apache-avro 0.22 decodes a boolean, a string or a union index cut off by the end
        // of the input as null instead of failing, so the end is watched here.
        if input.ran_out {
            return Err(DecodeError(
                "the payload ends before the Avro value does (truncated)".into(),
            ));
        }
        if !input.rest.is_empty() {
            return Err(DecodeError(format!(
                "{} bytes left over after the Avro value",
                input.rest.len()
            )));
        }
        Ok(value)
    }

    pub(crate) fn can_read(&self, writer: &AvroSchema) -> Vec<String> {
        let mut writer_names = compat::Names::new();
        for s in writer.dependencies.iter().chain([&writer.schema]) {
            compat::collect_names(s, &mut writer_names);
        }
        let mut reader_names = compat::Names::new();
        for s in self.dependencies.iter().chain([&self.schema]) {
            compat::collect_names(s, &mut reader_names);
        }
        compat::Checker::new(writer_names, reader_names).check(&writer.schema, &self.schema)
    }
}

fn strip_doc(json: &mut serde_json::Value) {
    match json {
        serde_json::Value::Object(map) => {
            map.remove("doc");
            // A default is a value, not a schema: its keys are data.
            map.iter_mut()
                .filter(|(k, _)| k.as_str() != "default")
                .for_each(|(_, v)| strip_doc(v));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_doc),
        _ => {}
    }
}

/// `json` with every object's keys in sorted order, whatever map `serde_json` is built with.
pub(crate) fn sorted(json: &serde_json::Value) -> serde_json::Value {
    match json {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted).collect())
        }
        other => other.clone(),
    }
}

/// The payload as a reader that remembers whether the decoder asked for bytes past its end.
struct Input<'a> {
    rest: &'a [u8],
    ran_out: bool,
}

impl std::io::Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.rest.is_empty() {
            self.ran_out = true;
            return Ok(0);
        }
        let n = buf.len().min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}
