//! Protobuf: the compatibility rules as a table (after Confluent's Protobuf rules and the
//! Protocol Buffers language guide's "Updating A Message Type"), canonical form, message
//! indexes, validation and decoding.

use rill_schema::{ParsedSchema, SchemaType, wire};

use crate::support::{Row, check_table, parse};

fn proto(text: &str) -> ParsedSchema {
    parse(SchemaType::Protobuf, text)
}

const BASE: &str = r#"syntax = "proto3";
package shop;
message Order {
  int64 id = 1;
  string note = 2;
  Line line = 3;
  repeated string tags = 4;
  Status status = 5;
  map<string, int32> counts = 6;
  fixed32 code = 7;
}
message Line { int32 qty = 1; }
enum Status { NEW = 0; PAID = 1; }
"#;

/// `BASE` with `from` replaced by `to` (which must occur).
fn base_with(from: &str, to: &str) -> &'static str {
    assert!(BASE.contains(from), "{from}");
    Box::leak(BASE.replacen(from, to, 1).into_boxed_str())
}

#[test]
fn compatibility_table() {
    let rows = [
        Row {
            rule: "guide: adding a field is compatible (proto3 fields are optional)",
            old: BASE,
            new: base_with(
                "  fixed32 code = 7;",
                "  fixed32 code = 7;\n  string extra = 8;",
            ),
            backward: true,
            forward: true,
        },
        Row {
            rule: "guide: removing a field is compatible (FIELD_REMOVED)",
            old: BASE,
            new: base_with("  string note = 2;\n", ""),
            backward: true,
            forward: true,
        },
        Row {
            rule: "guide: renaming a field keeps its number and wire format",
            old: BASE,
            new: base_with("string note = 2;", "string comment = 2;"),
            backward: true,
            forward: true,
        },
        Row {
            rule: "guide: int32, uint32, int64, uint64 and bool are compatible",
            old: BASE,
            new: base_with("int32 qty = 1;", "uint64 qty = 1;"),
            backward: true,
            forward: true,
        },
        Row {
            rule: "guide: enum is compatible with int32 (varint group)",
            old: BASE,
            new: base_with("Status status = 5;", "int32 status = 5;"),
            backward: true,
            forward: true,
        },
        Row {
            rule: "guide: sint32 and sint64 are not compatible with the other varints (FIELD_SCALAR_KIND_CHANGED)",
            old: BASE,
            new: base_with("int64 id = 1;", "sint64 id = 1;"),
            backward: false,
            forward: false,
        },
        Row {
            rule: "guide: string and bytes are compatible (valid UTF-8)",
            old: BASE,
            new: base_with("string note = 2;", "bytes note = 2;"),
            backward: true,
            forward: true,
        },
        Row {
            rule: "FIELD_KIND_CHANGED: a string becomes an embedded message",
            old: BASE,
            new: base_with("string note = 2;", "Order note = 2;"),
            backward: false,
            forward: false,
        },
        Row {
            rule: "FIELD_SCALAR_KIND_CHANGED: string to int64",
            old: BASE,
            new: base_with("string note = 2;", "int64 note = 2;"),
            backward: false,
            forward: false,
        },
        Row {
            rule: "guide: fixed32 is compatible with sfixed32",
            old: BASE,
            new: base_with("fixed32 code = 7;", "sfixed32 code = 7;"),
            backward: true,
            forward: true,
        },
        Row {
            rule: "FIELD_SCALAR_KIND_CHANGED: fixed32 to fixed64",
            old: BASE,
            new: base_with("fixed32 code = 7;", "fixed64 code = 7;"),
            backward: false,
            forward: false,
        },
        Row {
            rule: "FIELD_KIND_CHANGED: singular to repeated",
            old: BASE,
            new: base_with("int64 id = 1;", "repeated int64 id = 1;"),
            backward: false,
            forward: false,
        },
        Row {
            rule: "FIELD_NAMED_TYPE_CHANGED: a message field's type renamed",
            old: BASE,
            new: base_with(
                "message Line { int32 qty = 1; }",
                "message Line { int32 qty = 1; }\nmessage Item { int32 qty = 1; }",
            )
            .replacen("Line line = 3;", "Item line = 3;", 1)
            .leak(),
            backward: false,
            forward: false,
        },
        Row {
            rule: "a nested message's field compared recursively (Line.qty to string)",
            old: BASE,
            new: base_with("int32 qty = 1;", "string qty = 1;"),
            backward: false,
            forward: false,
        },
        Row {
            rule: "MESSAGE_REMOVED: the top-level message renamed",
            old: BASE,
            new: base_with("message Order {", "message Purchase {"),
            backward: false,
            forward: false,
        },
        Row {
            rule: "PACKAGE_CHANGED: every message's full name changes",
            old: BASE,
            new: base_with("package shop;", "package store;"),
            backward: false,
            forward: false,
        },
        Row {
            rule: "FIELD_MOVED_TO_EXISTING_ONEOF: an existing field moved into a oneof",
            old: BASE,
            new: base_with(
                "  string note = 2;",
                "  oneof extra { string note = 2; bool gift = 9; }",
            ),
            backward: false,
            forward: true,
        },
        Row {
            rule: "proto3 optional (a synthetic oneof) is not a move into a oneof",
            old: BASE,
            new: base_with("string note = 2;", "optional string note = 2;"),
            backward: true,
            forward: true,
        },
        Row {
            rule: "ENUM_CONST_ADDED: an enum value added",
            old: BASE,
            new: base_with("PAID = 1;", "PAID = 1; SHIPPED = 2;"),
            backward: true,
            forward: true,
        },
        Row {
            rule: "map values compared like fields (int32 to int64)",
            old: BASE,
            new: base_with("map<string, int32>", "map<string, int64>"),
            backward: true,
            forward: true,
        },
        Row {
            rule: "map values compared like fields (int32 to string)",
            old: BASE,
            new: base_with("map<string, int32>", "map<string, string>"),
            backward: false,
            forward: false,
        },
        Row {
            rule: "REQUIRED_FIELD_ADDED (proto2)",
            old: "syntax = \"proto2\";\nmessage Order { optional int64 id = 1; }\n",
            new: "syntax = \"proto2\";\nmessage Order { optional int64 id = 1; required string sku = 2; }\n",
            backward: false,
            forward: true,
        },
    ];
    check_table(SchemaType::Protobuf, &rows);
}

#[test]
fn messages_name_the_field() {
    let old = proto(BASE);
    let new = proto(base_with("int32 qty = 1;", "string qty = 1;"));
    let problems = new.can_read(&old);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("field 'line.qty' (number 1, message Line): ")),
        "{problems:?}"
    );
}

#[test]
fn canonical_ignores_whitespace_and_comments() {
    let spaced = proto(&format!(
        "// The shop's orders.\n\n{}",
        BASE.replace("  ", "      ").replace(";\n", "; // why\n")
    ));
    assert_eq!(spaced.canonical(), proto(BASE).canonical());
    assert_ne!(
        proto(base_with("string note = 2;", "string note = 12;")).canonical(),
        proto(BASE).canonical()
    );
}

const NESTED: &str = r#"syntax = "proto3";
message Outer {
  message Inner { int32 v = 1; }
  message Other { message Deep { string s = 1; } }
  Inner inner = 1;
}
message Second { bool b = 1; }
"#;

#[test]
fn to_json_follows_message_indexes() {
    let schema = proto(NESTED);
    // [0]: Outer, written as the single byte 0. Field 1 (Inner) holding v = 5.
    assert_eq!(
        schema.to_json(&[0, 0x0a, 0x02, 0x08, 0x05]).expect("Outer"),
        serde_json::json!({"inner": {"v": 5}})
    );
    // [1]: Second (count 1, index 1; zig-zag 2 and 2).
    assert_eq!(
        schema.to_json(&[2, 2, 0x08, 0x01]).expect("Second"),
        serde_json::json!({"b": true})
    );
    // [0, 0]: Outer.Inner (count 2, then 0 and 0).
    assert_eq!(
        schema.to_json(&[4, 0, 0, 0x08, 0x07]).expect("Inner"),
        serde_json::json!({"v": 7})
    );
    // [0, 1, 0]: Outer.Other.Deep (count 3 is zig-zag 6; 1 is 2).
    assert_eq!(
        schema
            .to_json(&[6, 0, 2, 0, 0x0a, 0x01, b'x'])
            .expect("Deep"),
        serde_json::json!({"s": "x"})
    );
    assert!(
        schema.to_json(&[2, 4, 0x08, 0x01]).is_err(),
        "no message at index 2"
    );
    assert!(
        schema.to_json(&[4, 0, 10, 0x08, 0x01]).is_err(),
        "no nested message 5"
    );
    assert!(schema.to_json(&[4, 0]).is_err(), "indexes cut off");
}

#[test]
fn validation() {
    let schema = proto(BASE);
    // Order: id 1, note "hi".
    let valid = [0, 0x08, 0x01, 0x12, 0x02, b'h', b'i'];
    let json = schema.to_json(&valid).expect("valid");
    assert_eq!(json["id"], "1");
    assert_eq!(json["note"], "hi");
    for cut in [2, 4, 5, 6] {
        assert!(
            schema.validate(&valid[..cut]).is_err(),
            "truncated to {cut}"
        );
    }
    let mut trailing = valid.to_vec();
    trailing.push(0);
    assert!(schema.validate(&trailing).is_err(), "trailing zero byte");
    // Field 1 (int64) written length-delimited.
    assert!(
        schema.validate(&[0, 0x0a, 0x01, 0x00]).is_err(),
        "wrong wire type"
    );
    let framed = wire::frame(3, &valid);
    let split = wire::split(&framed).expect("framed");
    schema.validate(split.payload).expect("valid after framing");
    assert!(wire::split(&[0, 0, 0]).is_err());
}
