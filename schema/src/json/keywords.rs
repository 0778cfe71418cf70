//! What single JSON Schema keywords mean to the compatibility check: which keywords are
//! annotations, which the check compares, and reading types, values and bounds.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// Keywords that never restrict what validates.
pub(super) const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "readOnly",
    "writeOnly",
    "deprecated",
    "definitions",
    "$defs",
];

/// Keywords this checker compares; any other keyword in a reader is verified only when the
/// writer has it identical.
pub(super) const HANDLED: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "additionalProperties",
    "required",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "pattern",
    "format",
    "uniqueItems",
    "items",
    "anyOf",
    "oneOf",
    "$ref",
];

pub(super) const TYPES: [&str; 7] = [
    "null", "boolean", "object", "array", "number", "string", "integer",
];

/// The JSON types a schema lets through, before `enum`/`const` narrowing. `None` is all.
pub(super) fn declared_types(schema: &Map<String, Value>) -> Option<HashSet<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(HashSet::from([t.as_str()])),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

pub(super) fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n)
            if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) =>
        {
            "integer"
        }
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The values a schema allows, when it lists them (`enum` or `const`).
pub(super) fn listed_values(schema: &Map<String, Value>) -> Option<Vec<&Value>> {
    if let Some(c) = schema.get("const") {
        return Some(vec![c]);
    }
    schema.get("enum")?.as_array().map(|vs| vs.iter().collect())
}

pub(super) fn type_allows(types: &Option<HashSet<&str>>, t: &str) -> bool {
    match types {
        None => true,
        Some(set) => set.contains(t) || (t == "integer" && set.contains("number")),
    }
}

pub(super) fn is_open(v: Option<&Value>) -> bool {
    !matches!(v, Some(Value::Bool(false)))
}

pub(super) fn accepts_anything(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Object(m) => m.keys().all(|k| ANNOTATIONS.contains(&k.as_str())),
        _ => false,
    }
}

pub(super) fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// A lower or upper bound: its value and whether it is exclusive. Handles draft 4's
/// boolean `exclusiveMinimum` and later drafts' numeric one.
pub(super) fn bound(
    schema: &Map<String, Value>,
    inclusive: &str,
    exclusive: &str,
) -> Option<(f64, bool)> {
    let inc = number(schema.get(inclusive));
    match schema.get(exclusive) {
        Some(Value::Bool(true)) => inc.map(|v| (v, true)),
        Some(Value::Number(n)) => {
            let e = n.as_f64()?;
            // Both given: the tighter one counts; checked by the caller's direction, so
            // keep the exclusive one unless the inclusive one is strictly tighter.
            match inc {
                Some(i)
                    if (inclusive == "minimum" && i > e) || (inclusive == "maximum" && i < e) =>
                {
                    Some((i, false))
                }
                _ => Some((e, true)),
            }
        }
        _ => inc.map(|v| (v, false)),
    }
}

pub(super) static TRUE: Value = Value::Bool(true);

pub(super) static EMPTY: std::sync::LazyLock<Map<String, Value>> =
    std::sync::LazyLock::new(Map::new);

pub(super) fn object_form(v: &Value) -> Option<&Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        Value::Bool(true) => Some(&EMPTY),
        _ => None,
    }
}

pub(super) fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(none)".to_string(), Value::to_string)
}
