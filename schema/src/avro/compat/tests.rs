//! The crate's checker against the specification, row by row: where it disagrees, the
//! parent module writes the rule by hand; where it agrees, the hand checker agrees too.

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

use super::*;

/// (rule, writer, reader, the specification's verdict, whether the crate disagrees).
const ROWS: &[(&str, &str, &str, bool, bool)] = &[
    (
        "promotion int to long",
        r#""int""#,
        r#""long""#,
        true,
        false,
    ),
    (
        "no demotion long to int",
        r#""long""#,
        r#""int""#,
        false,
        false,
    ),
    (
        "promotion long to double",
        r#""long""#,
        r#""double""#,
        true,
        false,
    ),
    (
        "promotion float to double",
        r#""float""#,
        r#""double""#,
        true,
        false,
    ),
    ("string to bytes", r#""string""#, r#""bytes""#, true, false),
    ("bytes to string", r#""bytes""#, r#""string""#, true, false),
    (
        "reader field with default missing from the writer",
        r#"{"type":"record","name":"R","fields":[]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":0}]}"#,
        true,
        false,
    ),
    (
        "reader field without default missing from the writer",
        r#"{"type":"record","name":"R","fields":[]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
        false,
        false,
    ),
    (
        "field renamed with a reader alias",
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"b","type":"int","aliases":["a"]}]}"#,
        true,
        false,
    ),
    (
        "record renamed with a reader alias",
        r#"{"type":"record","name":"R","fields":[]}"#,
        r#"{"type":"record","name":"S","aliases":["R"],"fields":[]}"#,
        true,
        true,
    ),
    (
        "enum renamed with a reader alias",
        r#"{"type":"enum","name":"E","symbols":["A"]}"#,
        r#"{"type":"enum","name":"F","aliases":["E"],"symbols":["A"]}"#,
        true,
        true,
    ),
    (
        "enum symbol missing, reader default",
        r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
        r#"{"type":"enum","name":"E","symbols":["A","Z"],"default":"Z"}"#,
        true,
        false,
    ),
    (
        "enum symbol missing, no default (crate: Partial)",
        r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
        r#"{"type":"enum","name":"E","symbols":["A"]}"#,
        false,
        false,
    ),
    (
        "writer union to non-union, a branch unreadable (crate: Partial)",
        r#"["null","string"]"#,
        r#""string""#,
        false,
        false,
    ),
    (
        "non-union to union",
        r#""string""#,
        r#"["null","string"]"#,
        true,
        false,
    ),
    (
        "fixed size changed",
        r#"{"type":"fixed","name":"F","size":4}"#,
        r#"{"type":"fixed","name":"F","size":8}"#,
        false,
        false,
    ),
    (
        "fixed renamed",
        r#"{"type":"fixed","name":"F","size":4}"#,
        r#"{"type":"fixed","name":"G","size":4}"#,
        false,
        false,
    ),
    (
        "array items promoted",
        r#"{"type":"array","items":"int"}"#,
        r#"{"type":"array","items":"double"}"#,
        true,
        false,
    ),
    (
        "map values promoted",
        r#"{"type":"map","values":"long"}"#,
        r#"{"type":"map","values":"float"}"#,
        true,
        false,
    ),
];

fn parse(text: &str) -> Schema {
    match Schema::parse_str(text) {
        Ok(s) => s,
        Err(e) => panic!("{text}: {e}"),
    }
}

fn ours(writer: &Schema, reader: &Schema) -> Vec<String> {
    let mut w = Names::new();
    collect_names(writer, &mut w);
    let mut r = Names::new();
    collect_names(reader, &mut r);
    Checker::new(w, r).check(writer, reader)
}

#[test]
fn crate_checker_against_the_specification() {
    let mut failures = Vec::new();
    for &(rule, writer, reader, spec, crate_disagrees) in ROWS {
        let (writer, reader) = (parse(writer), parse(reader));
        // Only `Full` means every written datum can be read.
        let theirs = matches!(
            SchemaCompatibility::can_read(&writer, &reader),
            Ok(Compatibility::Full)
        );
        if theirs != (spec != crate_disagrees) {
            failures.push(format!("{rule}: the crate says {theirs}"));
        }
        let problems = ours(&writer, &reader);
        if problems.is_empty() != spec {
            failures.push(format!("{rule}: this checker says {problems:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn references_resolve_where_the_crate_compares_names() {
    let address =
        r#"{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}"#;
    let (by_ref, deps) = match Schema::parse_str_with_list(
        r#"{"type":"record","name":"Order","fields":[{"name":"to","type":"Address"}]}"#,
        [address],
    ) {
        Ok(x) => x,
        Err(e) => panic!("{e}"),
    };
    let inline = parse(
        r#"{"type":"record","name":"Order","fields":[{"name":"to","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}}]}"#,
    );
    assert!(SchemaCompatibility::can_read(&by_ref, &inline).is_err());
    let mut w = Names::new();
    deps.iter()
        .chain([&by_ref])
        .for_each(|s| collect_names(s, &mut w));
    let mut r = Names::new();
    collect_names(&inline, &mut r);
    assert_eq!(
        Checker::new(w, r).check(&by_ref, &inline),
        Vec::<String>::new()
    );
}
