//! JSON Schema through `jsonschema`: validation of payloads. Compatibility between versions
//! is written here (the crate has none), in `compat`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{DecodeError, Dependency, SchemaError, SchemaType};

mod compat;
mod keywords;

#[derive(Debug, Clone)]
pub(crate) struct JsonSchema {
    schema: serde_json::Value,
    /// The referenced schemas by their reference name (the `$ref` URL as written).
    dependencies: Arc<HashMap<String, serde_json::Value>>,
    validator: Arc<jsonschema::Validator>,
}

/// The base URI `jsonschema` resolves relative references against when a schema has no
/// `$id`; a dependency named by a relative URL is registered under it.
const DEFAULT_BASE: &str = "json-schema:///";

impl JsonSchema {
    pub(crate) fn parse(
        text: &str,
        dependencies: &[Dependency],
    ) -> Result<JsonSchema, SchemaError> {
        let invalid = |e: &dyn std::fmt::Display| SchemaError::invalid(SchemaType::Json, e);
        let schema: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(&e))?;
        let mut options = jsonschema::options();
        let mut deps = HashMap::new();
        for d in dependencies {
            let contents: serde_json::Value = serde_json::from_str(&d.schema)
                .map_err(|e| invalid(&format!("reference '{}' is not JSON: {e}", d.name)))?;
            let uri = if d.name.contains(':') {
                d.name.clone()
            } else {
                format!("{DEFAULT_BASE}{}", d.name.trim_start_matches("./"))
            };
            options =
                options.with_resource(uri, jsonschema::Resource::from_contents(contents.clone()));
            deps.insert(d.name.clone(), contents);
        }
        let validator = options.build(&schema).map_err(|e| invalid(&e))?;
        Ok(JsonSchema {
            schema,
            dependencies: Arc::new(deps),
            validator: Arc::new(validator),
        })
    }

    /// The schema with object keys sorted and no whitespace.
    pub(crate) fn canonical(&self) -> String {
        crate::avro::sorted(&self.schema).to_string()
    }

    pub(crate) fn to_json(&self, payload: &[u8]) -> Result<serde_json::Value, DecodeError> {
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| DecodeError(format!("not JSON: {e}")))?;
        // The common case, a valid value, is answered by `is_valid`, which builds no error;
        // `validate` runs only to word a refusal.
        if self.validator.is_valid(&value) {
            return Ok(value);
        }
        if let Err(e) = self.validator.validate(&value) {
            return Err(DecodeError(format!(
                "does not match the JSON schema at '{}': {e}",
                e.instance_path()
            )));
        }
        Ok(value)
    }

    pub(crate) fn can_read(&self, writer: &JsonSchema) -> Vec<String> {
        compat::check(
            compat::Side {
                root: &writer.schema,
                dependencies: &writer.dependencies,
            },
            compat::Side {
                root: &self.schema,
                dependencies: &self.dependencies,
            },
        )
    }
}
