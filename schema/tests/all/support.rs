//! Helpers shared by the table tests.

use rill_schema::{CompatibilityLevel, Dependency, ParsedSchema, SchemaType, check_compatibility};

/// Parses a schema the test wrote, failing the test with the parser's message.
pub fn parse(schema_type: SchemaType, text: &str) -> ParsedSchema {
    parse_with(schema_type, text, &[])
}

/// Parses a schema with dependencies `(name, text)`.
pub fn parse_with(schema_type: SchemaType, text: &str, deps: &[(&str, &str)]) -> ParsedSchema {
    let deps: Vec<Dependency> = deps
        .iter()
        .map(|(name, schema)| Dependency {
            name: name.to_string(),
            schema: schema.to_string(),
        })
        .collect();
    match ParsedSchema::parse(schema_type, text, &deps) {
        Ok(s) => s,
        Err(e) => panic!("test schema does not parse: {e}\n{text}"),
    }
}

/// One row of a compatibility table: an old version, a new one, and whether the new one
/// reads the old one's data (backward) and the old one the new one's (forward).
pub struct Row {
    /// The rule the row checks, with where it is written.
    pub rule: &'static str,
    pub old: &'static str,
    pub new: &'static str,
    pub backward: bool,
    pub forward: bool,
}

/// Checks every row at every level with a one-version history, and that an incompatible
/// direction gives at least one message. Collects all failures before failing.
pub fn check_table(schema_type: SchemaType, rows: &[Row]) {
    let mut failures = Vec::new();
    for row in rows {
        let old = parse(schema_type, row.old);
        let new = parse(schema_type, row.new);
        for level in CompatibilityLevel::ALL {
            let expected = match level {
                CompatibilityLevel::Backward | CompatibilityLevel::BackwardTransitive => {
                    row.backward
                }
                CompatibilityLevel::Forward | CompatibilityLevel::ForwardTransitive => row.forward,
                CompatibilityLevel::Full | CompatibilityLevel::FullTransitive => {
                    row.backward && row.forward
                }
                CompatibilityLevel::None => true,
            };
            let problems = check_compatibility(level, &new, &[(1, &old)]);
            if problems.is_empty() != expected {
                failures.push(format!(
                    "{}: at {level} expected {} but got {problems:?}",
                    row.rule,
                    if expected {
                        "compatible"
                    } else {
                        "incompatible"
                    },
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
