//! Avro: the specification's "Schema Resolution" rules as a table, references and inlining,
//! payload validation and decoding.
//!
//! Rule citations name the subsection of "Schema Resolution" in the Avro 1.12
//! specification (<https://avro.apache.org/docs/1.12.0/specification/#schema-resolution>).

use rill_schema::{ParsedSchema, SchemaType, wire};

use crate::support::{Row, check_table, parse, parse_with};

fn avro(text: &str) -> ParsedSchema {
    parse(SchemaType::Avro, text)
}

#[test]
fn resolution_table() {
    let rows = [
        Row {
            rule: "records: reader field with a default, absent from the writer, takes the default",
            old: r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#,
            new: r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"note","type":"string","default":""}]}"#,
            backward: true,
            forward: true,
        },
        Row {
            rule: "records: reader field with no default, absent from the writer, is an error",
            old: r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#,
            new: r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"note","type":"string"}]}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "records: a writer field absent from the reader is ignored",
            old: r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"note","type":"string"}]}"#,
            new: r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "aliases: a reader field's aliases match a writer field's name (rename)",
            old: r#"{"type":"record","name":"Order","fields":[{"name":"total_cents","type":"long"}]}"#,
            new: r#"{"type":"record","name":"Order","fields":[{"name":"amount_cents","type":"long","aliases":["total_cents"]}]}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "records: fields are matched by name; a rename without an alias loses the field",
            old: r#"{"type":"record","name":"Order","fields":[{"name":"total_cents","type":"long"}]}"#,
            new: r#"{"type":"record","name":"Order","fields":[{"name":"amount_cents","type":"long"}]}"#,
            backward: false,
            forward: false,
        },
        Row {
            rule: "aliases: a reader record's aliases match the writer's record name",
            old: r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"}]}"#,
            new: r#"{"type":"record","name":"Purchase","namespace":"shop","aliases":["Order"],"fields":[{"name":"id","type":"long"}]}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "records: both schemas are records with the same (unqualified) name",
            old: r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#,
            new: r#"{"type":"record","name":"Purchase","fields":[{"name":"id","type":"long"}]}"#,
            backward: false,
            forward: false,
        },
        Row {
            rule: "records: the same unqualified name matches across namespaces",
            old: r#"{"type":"record","name":"Order","namespace":"a","fields":[{"name":"id","type":"long"}]}"#,
            new: r#"{"type":"record","name":"Order","namespace":"b","fields":[{"name":"id","type":"long"}]}"#,
            backward: true,
            forward: true,
        },
        Row {
            rule: "promotion: int is promotable to long",
            old: r#""int""#,
            new: r#""long""#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "promotion: int is promotable to float",
            old: r#""int""#,
            new: r#""float""#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "promotion: int is promotable to double",
            old: r#""int""#,
            new: r#""double""#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "promotion: long is promotable to float",
            old: r#""long""#,
            new: r#""float""#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "promotion: long is promotable to double",
            old: r#""long""#,
            new: r#""double""#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "promotion: float is promotable to double",
            old: r#""float""#,
            new: r#""double""#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "promotion: string is promotable to bytes and bytes to string",
            old: r#""string""#,
            new: r#""bytes""#,
            backward: true,
            forward: true,
        },
        Row {
            rule: "primitives: no promotion between int and string, nor boolean and int",
            old: r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"boolean"}]}"#,
            new: r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#,
            backward: false,
            forward: false,
        },
        Row {
            rule: "enums: a writer symbol the reader has, read as is (symbol added)",
            old: r#"{"type":"enum","name":"Suit","symbols":["HEARTS","SPADES"]}"#,
            new: r#"{"type":"enum","name":"Suit","symbols":["HEARTS","SPADES","CLUBS"]}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "enums: a writer symbol missing from the reader takes the reader's default",
            old: r#"{"type":"enum","name":"Suit","symbols":["HEARTS","SPADES","CLUBS"]}"#,
            new: r#"{"type":"enum","name":"Suit","symbols":["UNKNOWN","HEARTS","SPADES"],"default":"UNKNOWN"}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "enums: a writer symbol missing from a reader without default is an error",
            old: r#"{"type":"enum","name":"Suit","symbols":["HEARTS","SPADES","CLUBS"]}"#,
            new: r#"{"type":"enum","name":"Suit","symbols":["HEARTS","SPADES"]}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "enums: both schemas are enums with the same (unqualified) name",
            old: r#"{"type":"enum","name":"Suit","symbols":["HEARTS"]}"#,
            new: r#"{"type":"enum","name":"Colour","symbols":["HEARTS"]}"#,
            backward: false,
            forward: false,
        },
        Row {
            rule: "unions: writer's a union, reader's not: every writer branch must match",
            old: r#"["null","string"]"#,
            new: r#""string""#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "unions: writer's a union, reader's not: all branches promotable",
            old: r#"["int","long"]"#,
            new: r#""double""#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "unions: both unions: a branch added to the reader",
            old: r#"["null","string"]"#,
            new: r#"["null","string","int"]"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "unions: both unions: a writer branch resolved against a promoted reader branch",
            old: r#"["null","int"]"#,
            new: r#"["null","long"]"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "unions: both unions, branch order does not matter",
            old: r#"["null","string"]"#,
            new: r#"["string","null"]"#,
            backward: true,
            forward: true,
        },
        Row {
            rule: "fixed: both schemas are fixed with the same size",
            old: r#"{"type":"fixed","name":"Hash","size":16}"#,
            new: r#"{"type":"fixed","name":"Hash","size":32}"#,
            backward: false,
            forward: false,
        },
        Row {
            rule: "fixed: both schemas are fixed with the same (unqualified) name",
            old: r#"{"type":"fixed","name":"Hash","size":16}"#,
            new: r#"{"type":"fixed","name":"Digest","size":16}"#,
            backward: false,
            forward: false,
        },
        Row {
            rule: "arrays: item schemas resolved recursively (int items promoted to long)",
            old: r#"{"type":"array","items":"int"}"#,
            new: r#"{"type":"array","items":"long"}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "maps: value schemas resolved recursively (float values promoted to double)",
            old: r#"{"type":"map","values":"float"}"#,
            new: r#"{"type":"map","values":"double"}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "arrays: item schemas resolved recursively (string items not read as int)",
            old: r#"{"type":"array","items":"string"}"#,
            new: r#"{"type":"array","items":"int"}"#,
            backward: false,
            forward: false,
        },
        Row {
            rule: "arrays and maps do not resolve against each other",
            old: r#"{"type":"array","items":"string"}"#,
            new: r#"{"type":"map","values":"string"}"#,
            backward: false,
            forward: false,
        },
        Row {
            rule: "records: field schemas resolved recursively (nested record gains a field without default)",
            old: r#"{"type":"record","name":"Order","fields":[{"name":"ship_to","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}}]}"#,
            new: r#"{"type":"record","name":"Order","fields":[{"name":"ship_to","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"},{"name":"zip","type":"string"}]}}]}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "logical types: a date is read by its underlying int, promotable to long",
            old: r#"{"type":"int","logicalType":"date"}"#,
            new: r#""long""#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "logical types: decimals of different scale do not resolve",
            old: r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#,
            new: r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":3}"#,
            backward: false,
            forward: false,
        },
        Row {
            rule: "records: a recursive type resolves against itself",
            old: r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}"#,
            new: r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","Node"]}]}"#,
            backward: true,
            forward: false,
        },
    ];
    check_table(SchemaType::Avro, &rows);
}

#[test]
fn messages_name_the_field_path() {
    let old = avro(
        r#"{"type":"record","name":"Order","fields":[{"name":"amount","type":"string"},{"name":"ship_to","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}}]}"#,
    );
    let new = avro(
        r#"{"type":"record","name":"Order","fields":[{"name":"amount","type":"int"},{"name":"ship_to","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"},{"name":"zip","type":"string"}]}}]}"#,
    );
    let problems = new.can_read(&old);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("field 'amount' (record Order): "),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("field 'ship_to.zip' (record Address): "),
        "{problems:?}"
    );
}

const ADDRESS: &str = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[{"name":"city","type":"string"},{"name":"country","type":{"type":"enum","name":"Country","symbols":["NL","FR"]}}]}"#;
const CUSTOMER: &str = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"name","type":"string"},{"name":"home","type":"com.acme.Address"}]}"#;
const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"buyer","type":"com.acme.Customer"},{"name":"ship_to","type":"com.acme.Address"},{"name":"origin","type":"com.acme.Country"}]}"#;

fn order_with_references() -> ParsedSchema {
    parse_with(
        SchemaType::Avro,
        ORDER,
        &[
            ("com.acme.Address", ADDRESS),
            ("com.acme.Customer", CUSTOMER),
        ],
    )
}

#[test]
fn a_reference_that_is_not_given_is_an_error() {
    let only_address = [rill_schema::Dependency {
        name: "com.acme.Address".into(),
        schema: ADDRESS.into(),
    }];
    assert!(ParsedSchema::parse(SchemaType::Avro, ORDER, &only_address).is_err());
    assert!(ParsedSchema::parse(SchemaType::Avro, ORDER, &[]).is_err());
}

#[test]
fn self_contained_parses_alone_and_means_the_same() {
    let order = order_with_references();
    let alone = order.self_contained();
    let reparsed = avro(&alone);
    assert_eq!(reparsed.canonical(), order.canonical());
    // Each named type is defined once, at its first use, and named afterwards.
    assert_eq!(alone.matches(r#""name":"Address""#).count(), 1, "{alone}");
    assert_eq!(alone.matches(r#""name":"Country""#).count(), 1, "{alone}");
    assert!(reparsed.can_read(&order).is_empty());
    assert!(order.can_read(&reparsed).is_empty());
    // The same payload decodes the same with both.
    let payload = [
        2, b'A', 4, b'A', b'm', 0, // buyer: name "A", home: city "Am", NL
        2, b'P', 2, // ship_to: city "P", FR
        0, // origin: NL
    ];
    let json = order.to_json(&payload).expect("decodes");
    assert_eq!(reparsed.to_json(&payload).expect("decodes"), json);
    assert_eq!(json["buyer"]["home"]["city"], "Am");
    assert_eq!(json["ship_to"]["country"], "FR");
    assert_eq!(json["origin"], "NL");
}

#[test]
fn canonical_ignores_whitespace_order_and_doc_but_not_defaults() {
    let a =
        avro(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":1}]}"#);
    let b = avro(
        r#"{ "fields": [ {"type": "int", "name": "a", "default": 1, "doc": "the a"} ],
            "name": "R", "type": "record", "doc": "an R" }"#,
    );
    let c =
        avro(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":2}]}"#);
    assert_eq!(a.canonical(), b.canonical());
    assert_ne!(a.canonical(), c.canonical());
    // The specification's form drops the default too.
    assert_eq!(
        a.avro_parsing_canonical_form(),
        Some(r#"{"name":"R","type":"record","fields":[{"name":"a","type":"int"}]}"#.to_string())
    );
    assert_eq!(
        a.avro_parsing_canonical_form(),
        c.avro_parsing_canonical_form()
    );
    let order = order_with_references().avro_parsing_canonical_form();
    assert!(
        order
            .as_deref()
            .is_some_and(|f| f.contains(r#""name":"com.acme.Address""#)),
        "{order:?}"
    );
}

const ITEM: &str = r#"{"type":"record","name":"Item","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"},{"name":"tags","type":{"type":"array","items":"string"}},{"name":"in_stock","type":"boolean"}]}"#;

#[test]
fn validation() {
    let item = avro(ITEM);
    // id 1, name "ab", tags ["x"], in_stock true.
    let valid = [2, 4, b'a', b'b', 2, 2, b'x', 0, 1];
    let json = item.to_json(&valid).expect("valid payload");
    assert_eq!(
        json,
        serde_json::json!({"id": 1, "name": "ab", "tags": ["x"], "in_stock": true})
    );
    item.validate(&valid).expect("valid payload");
    for cut in 0..valid.len() {
        assert!(
            item.validate(&valid[..cut]).is_err(),
            "truncated to {cut} bytes"
        );
    }
    let mut trailing = valid.to_vec();
    trailing.push(0);
    let e = item.validate(&trailing).expect_err("trailing byte");
    assert!(e.to_string().contains("left over"), "{e}");
    // A boolean byte that is neither 0 nor 1.
    let mut wrong = valid;
    wrong[8] = 7;
    assert!(item.validate(&wrong).is_err());
    // A string length longer than the payload.
    assert!(item.validate(&[2, 100, b'a']).is_err());
    // A negative string length.
    assert!(item.validate(&[2, 3, b'a']).is_err());
    // A string claiming about 256 MiB in a few bytes fails fast.
    let started = std::time::Instant::now();
    assert!(
        item.validate(&[2, 0x80, 0x80, 0x80, 0x80, 0x02, b'a'])
            .is_err()
    );
    // An array claiming 2^40 items.
    assert!(
        item.validate(&[2, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 2])
            .is_err()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn framing() {
    let item = avro(ITEM);
    let framed = wire::frame(7, &[2, 0, 0, 0]);
    let split = wire::split(&framed).expect("framed");
    assert_eq!(split.id, 7);
    item.validate(split.payload).expect("valid");
    assert_eq!(
        wire::split(&framed[..3]),
        Err(wire::FramingError::TooShort(3))
    );
    let mut bad = framed.clone();
    bad[0] = 1;
    assert_eq!(wire::split(&bad), Err(wire::FramingError::BadMagic(1)));
}

/// A reference to a type in the null namespace, used twice. From a namespaced schema the
/// name "Line" means "shop.Line" to apache-avro (the specification's reading); Java's
/// parser falls back to the null namespace, this crate does not (see the crate's report).
#[test]
fn a_reference_in_the_null_namespace_used_twice() {
    let line = r#"{"type":"record","name":"Line","fields":[{"name":"qty","type":"int"}]}"#;
    let order = r#"{"type":"record","name":"Order","fields":[{"name":"first","type":"Line"},{"name":"rest","type":{"type":"array","items":"Line"}}]}"#;
    let parsed = parse_with(SchemaType::Avro, order, &[("Line", line)]);
    let alone = avro(&parsed.self_contained());
    let payload = [2, 4, 4, 6, 0]; // first: qty 1; rest: [qty 2, qty 3] (one block of 2)
    assert_eq!(
        alone.to_json(&payload).expect("decodes"),
        parsed.to_json(&payload).expect("decodes")
    );
    assert!(alone.can_read(&parsed).is_empty() && parsed.can_read(&alone).is_empty());
    let namespaced = order.replace(
        r#""name":"Order","#,
        r#""name":"Order","namespace":"shop","#,
    );
    let dependencies = [rill_schema::Dependency {
        name: "Line".into(),
        schema: line.into(),
    }];
    assert!(ParsedSchema::parse(SchemaType::Avro, &namespaced, &dependencies).is_err());
}

#[test]
fn a_size_precision_or_scale_that_is_not_an_integer_is_refused() {
    // apache-avro 0.22 keeps these as custom attributes and then panics deriving the
    // Parsing Canonical Form (found by fuzzing).
    for text in [
        r#"{"type":"record","name":"R","fields":[],"scale":"x"}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","size":1.5}]}"#,
        r#"["null",{"type":"enum","name":"E","symbols":["A"],"precision":true}]"#,
    ] {
        let e = ParsedSchema::parse(SchemaType::Avro, text, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be an integer"), "{text}: {e}");
    }
    // A default value with such keys is data, not schema.
    let fine = avro(
        r#"{"type":"record","name":"R","fields":[
            {"name":"f","type":{"type":"fixed","name":"F","size":4}},
            {"name":"d","type":{"type":"record","name":"D","fields":[{"name":"size","type":"string"}]},
             "default":{"size":"large"}}]}"#,
    );
    assert!(fine.avro_parsing_canonical_form().is_some());
}
