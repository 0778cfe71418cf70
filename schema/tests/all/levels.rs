//! Compatibility levels: which versions a new schema is checked against, and in which
//! direction. Each scenario is a 3-version history where v1→v2 is compatible in the
//! scenario's direction and v1→v3 is not, so a transitive level must see v1 and a
//! latest-only level must not.

use rill_schema::{CompatibilityLevel as L, ParsedSchema, SchemaType, check_compatibility};

use crate::support::parse;

fn record(fields: &str) -> ParsedSchema {
    parse(
        SchemaType::Avro,
        &format!(r#"{{"type":"record","name":"Order","fields":[{fields}]}}"#),
    )
}

/// Checks `new` against `[v1, v2]` at every level; `compatible` lists the levels that
/// should pass.
fn check_levels(v1: &ParsedSchema, v2: &ParsedSchema, v3: &ParsedSchema, compatible: &[L]) {
    let mut failures = Vec::new();
    for level in L::ALL {
        let problems = check_compatibility(level, v3, &[(1, v1), (2, v2)]);
        let expected = compatible.contains(&level);
        if problems.is_empty() != expected {
            failures.push(format!("{level}: expected {expected}, got {problems:?}"));
        }
        for p in &problems {
            assert!(
                p.contains("version 1") || p.contains("version 2"),
                "a problem names its version: {p}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn backward_breaks_only_against_the_first_version() {
    // v2 adds `note` with a default (reads v1); v3 drops the default: it reads v2, whose
    // data has `note`, but not v1's. Every old version reads v3's data.
    let v1 = record(r#"{"name":"id","type":"long"}"#);
    let v2 = record(r#"{"name":"id","type":"long"},{"name":"note","type":"string","default":""}"#);
    let v3 = record(r#"{"name":"id","type":"long"},{"name":"note","type":"string"}"#);
    assert!(v2.can_read(&v1).is_empty());
    check_levels(
        &v1,
        &v2,
        &v3,
        &[
            L::Backward,
            L::Forward,
            L::ForwardTransitive,
            L::Full,
            L::None,
        ],
    );
    let problems = check_compatibility(L::BackwardTransitive, &v3, &[(1, &v1), (2, &v2)]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "the new schema cannot read data written with version 1: field 'note' (record Order)"
        ),
        "{problems:?}"
    );
}

#[test]
fn forward_breaks_only_against_the_first_version() {
    // v1 has `note` without a default; v2 gives it one; v3 drops it. v2 reads v3's data
    // (default), v1 does not.
    let v1 = record(r#"{"name":"id","type":"long"},{"name":"note","type":"string"}"#);
    let v2 = record(r#"{"name":"id","type":"long"},{"name":"note","type":"string","default":""}"#);
    let v3 = record(r#"{"name":"id","type":"long"}"#);
    assert!(v1.can_read(&v2).is_empty());
    check_levels(
        &v1,
        &v2,
        &v3,
        &[
            L::Backward,
            L::BackwardTransitive,
            L::Forward,
            L::Full,
            L::None,
        ],
    );
    let problems = check_compatibility(L::ForwardTransitive, &v3, &[(1, &v1), (2, &v2)]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("version 1 cannot read data written with the new schema"),
        "{problems:?}"
    );
}

#[test]
fn incompatible_with_the_latest_fails_every_level_but_none() {
    let v1 = record(r#"{"name":"id","type":"long"}"#);
    let v2 = record(r#"{"name":"id","type":"long"}"#);
    let v3 = record(r#"{"name":"id","type":"string"}"#);
    check_levels(&v1, &v2, &v3, &[L::None]);
}

#[test]
fn first_version_is_always_compatible() {
    let v1 = record(r#"{"name":"id","type":"long"}"#);
    for level in L::ALL {
        assert!(check_compatibility(level, &v1, &[]).is_empty());
    }
}

#[test]
fn level_names_round_trip() {
    for level in L::ALL {
        assert_eq!(level.as_str().parse::<L>(), Ok(level));
        assert_eq!(level.as_str().to_lowercase().parse::<L>(), Ok(level));
    }
    assert!("SIDEWAYS".parse::<L>().is_err());
}

#[test]
fn protobuf_field_type_changed_after_a_removal() {
    // v2 removes field 1 (compatible both ways); v3 brings number 1 back as a string,
    // which v2 cannot tell from an unknown field but v1 reads as an int32.
    let v1 = parse(
        SchemaType::Protobuf,
        "syntax = \"proto3\";\nmessage M { int32 x = 1; string y = 2; }\n",
    );
    let v2 = parse(
        SchemaType::Protobuf,
        "syntax = \"proto3\";\nmessage M { string y = 2; }\n",
    );
    let v3 = parse(
        SchemaType::Protobuf,
        "syntax = \"proto3\";\nmessage M { string x = 1; string y = 2; }\n",
    );
    assert!(v2.can_read(&v1).is_empty() && v1.can_read(&v2).is_empty());
    check_levels(&v1, &v2, &v3, &[L::Backward, L::Forward, L::Full, L::None]);
}

#[test]
fn json_history_registered_without_checks() {
    // JSON Schema compatibility is inclusion of document sets, which is transitive: a
    // history that passed its checks cannot make a transitive level fail where the
    // latest-only one passes. This history was registered under NONE (v1→v2 is not
    // compatible), so the levels still pick the versions they should: v3 reads v2's
    // integers but not v1's strings, and v2 does not read v3's non-integers.
    let v1 = parse(SchemaType::Json, r#"{"type":"string"}"#);
    let v2 = parse(SchemaType::Json, r#"{"type":"integer"}"#);
    let v3 = parse(SchemaType::Json, r#"{"type":"number"}"#);
    check_levels(&v1, &v2, &v3, &[L::Backward, L::None]);
}
