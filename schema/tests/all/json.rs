//! JSON Schema: the structural compatibility rules as a table (after Confluent's JSON Schema
//! compatibility rules: <https://docs.confluent.io/platform/current/schema-registry/fundamentals/serdes-develop/serdes-json.html>),
//! references, validation and decoding.

use rill_schema::{ParsedSchema, SchemaType};

use crate::support::{Row, check_table, parse, parse_with};

fn json(text: &str) -> ParsedSchema {
    parse(SchemaType::Json, text)
}

#[test]
fn compatibility_table() {
    let rows = [
        Row {
            rule: "identical schemas",
            old: r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
            new: r#"{"additionalProperties":false,"properties":{"a":{"type":"string"}},"type":"object"}"#,
            backward: true,
            forward: true,
        },
        Row {
            rule: "type: integer is contained in number (TYPE_NARROWED / TYPE_EXTENDED)",
            old: r#"{"type":"integer"}"#,
            new: r#"{"type":"number"}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "type: a type added to the reader's set",
            old: r#"{"type":"string"}"#,
            new: r#"{"type":["string","null"]}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "type: a schema without type allows every type",
            old: r#"{}"#,
            new: r#"{"type":"string"}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "properties: PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL is incompatible",
            old: r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
            new: r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}}}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "properties: an optional property added to a closed writer (PROPERTY_ADDED_TO_CLOSED_CONTENT_MODEL, not required)",
            old: r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
            new: r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"additionalProperties":false}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "properties: PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
            old: r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}}}"#,
            new: r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "properties: a property added to an open writer, accepting anything",
            old: r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
            new: r#"{"type":"object","properties":{"a":{"type":"string"},"b":{}}}"#,
            backward: true,
            forward: true,
        },
        Row {
            rule: "properties: a property added that the writer's additionalProperties schema fits",
            old: r#"{"type":"object","additionalProperties":{"type":"integer"}}"#,
            new: r#"{"type":"object","properties":{"n":{"type":"number"}},"additionalProperties":{"type":"integer"}}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "properties: a property's schema compared recursively (type narrowed)",
            old: r#"{"type":"object","properties":{"amount":{"type":"number"}}}"#,
            new: r#"{"type":"object","properties":{"amount":{"type":"integer"}}}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "additionalProperties: closed to open (ADDITIONAL_PROPERTIES_ADDED / REMOVED)",
            old: r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
            new: r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "required: REQUIRED_ATTRIBUTE_ADDED is incompatible",
            old: r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
            new: r#"{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "enum: ENUM_ARRAY_NARROWED is incompatible",
            old: r#"{"enum":["a","b","c"]}"#,
            new: r#"{"enum":["a","b"]}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "enum: writer's enum read by a reader of its type",
            old: r#"{"type":"string","enum":["a","b"]}"#,
            new: r#"{"type":"string"}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "bounds: MAX_LENGTH_DECREASED",
            old: r#"{"type":"string","maxLength":10}"#,
            new: r#"{"type":"string","maxLength":5}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "bounds: MINIMUM_INCREASED",
            old: r#"{"type":"number","minimum":0}"#,
            new: r#"{"type":"number","minimum":1}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "bounds: exclusiveMinimum at the same value is narrower than minimum",
            old: r#"{"type":"number","minimum":0}"#,
            new: r#"{"type":"number","exclusiveMinimum":0}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "bounds: MAX_ITEMS_DECREASED",
            old: r#"{"type":"array","maxItems":3}"#,
            new: r#"{"type":"array","maxItems":2}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "items: compared recursively (ITEMS type extended)",
            old: r#"{"type":"array","items":{"type":"integer"}}"#,
            new: r#"{"type":"array","items":{"type":"number"}}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "pattern: PATTERN_ADDED cannot be verified and is refused",
            old: r#"{"type":"string"}"#,
            new: r#"{"type":"string","pattern":"^a"}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "unhandled keyword added to the reader: cannot verify",
            old: r#"{"type":"string"}"#,
            new: r#"{"type":"string","not":{"const":"x"}}"#,
            backward: false,
            forward: true,
        },
        Row {
            rule: "anyOf: SUM_TYPE_EXTENDED (a branch added to the reader)",
            old: r#"{"type":"string"}"#,
            new: r#"{"anyOf":[{"type":"string"},{"type":"null"}]}"#,
            backward: true,
            forward: false,
        },
        Row {
            rule: "$ref: local definitions followed (definition's type widened)",
            old: r##"{"type":"object","properties":{"a":{"$ref":"#/definitions/A"}},"definitions":{"A":{"type":"integer"}}}"##,
            new: r##"{"type":"object","properties":{"a":{"$ref":"#/definitions/A"}},"definitions":{"A":{"type":"number"}}}"##,
            backward: true,
            forward: false,
        },
        Row {
            rule: "$ref: a recursive local definition terminates",
            old: r##"{"$ref":"#/definitions/Node","definitions":{"Node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"$ref":"#/definitions/Node"}}}}}"##,
            new: r##"{"$ref":"#/definitions/Node","definitions":{"Node":{"type":"object","properties":{"v":{"type":"number"},"next":{"$ref":"#/definitions/Node"}}}}}"##,
            backward: true,
            forward: false,
        },
    ];
    check_table(SchemaType::Json, &rows);
    // A sample of messages, to see that they say what is wrong.
    let open = json(rows[4].old);
    let added = json(rows[4].new);
    let problems = added.can_read(&open);
    assert!(
        problems[0].starts_with("property 'b': the reader adds this property"),
        "{problems:?}"
    );
}

#[test]
fn messages_name_the_property() {
    let old = json(
        r#"{"type":"object","properties":{"order":{"type":"object","properties":{"amount":{"type":"number"}}}}}"#,
    );
    let new = json(
        r#"{"type":"object","properties":{"order":{"type":"object","properties":{"amount":{"type":"integer"}}}}}"#,
    );
    let problems = new.can_read(&old);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("property 'order.amount': the writer allows type number"),
        "{problems:?}"
    );
}

const ADDRESS: &str =
    r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#;
const ADDRESS_WIDER: &str = r#"{"type":"object","properties":{"city":{"type":["string","null"]}}}"#;
const ORDER: &str = r#"{"type":"object","properties":{"id":{"type":"integer"},"ship_to":{"$ref":"address.json"}},"required":["id"]}"#;

#[test]
fn references_validate_and_compare() {
    let order = parse_with(SchemaType::Json, ORDER, &[("address.json", ADDRESS)]);
    order
        .validate(br#"{"id": 1, "ship_to": {"city": "Paris"}}"#)
        .expect("valid");
    assert!(order.validate(br#"{"id": 1, "ship_to": {}}"#).is_err());
    let wider = parse_with(SchemaType::Json, ORDER, &[("address.json", ADDRESS_WIDER)]);
    assert!(
        wider.can_read(&order).is_empty(),
        "{:?}",
        wider.can_read(&order)
    );
    let problems = order.can_read(&wider);
    assert!(
        problems.iter().any(|p| p.contains("ship_to.city")),
        "{problems:?}"
    );
    let missing = ParsedSchema::parse(SchemaType::Json, ORDER, &[]);
    assert!(
        missing.is_err(),
        "a $ref to no given reference does not parse"
    );
}

#[test]
fn canonical_sorts_keys_and_drops_whitespace() {
    let a = json(
        r#"{ "type": "object", "properties": { "b": {"type":"string"}, "a": {"type":"integer"} } }"#,
    );
    let b =
        json(r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#);
    assert_eq!(a.canonical(), b.canonical());
    assert_eq!(
        a.canonical(),
        r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#
    );
}

#[test]
fn validation() {
    let schema = json(
        r#"{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id"]}"#,
    );
    let valid = br#"{"id": 7, "name": "x"}"#;
    assert_eq!(
        schema.to_json(valid).expect("valid"),
        serde_json::json!({"id": 7, "name": "x"})
    );
    let wrong = schema.validate(br#"{"id": "7"}"#).expect_err("wrong type");
    assert!(wrong.to_string().contains("/id"), "{wrong}");
    assert!(
        schema.validate(br#"{"name": "x"}"#).is_err(),
        "missing required"
    );
    assert!(
        schema.validate(&valid[..valid.len() - 1]).is_err(),
        "truncated"
    );
    assert!(
        schema.validate(br#"{"id": 7} {"id": 8}"#).is_err(),
        "trailing value"
    );
    assert!(schema.validate(b"\xff").is_err(), "not JSON");
}

#[test]
fn nested_unions_give_up_instead_of_taking_exponential_time() {
    fn nest(leaf: &serde_json::Value, depth: usize) -> serde_json::Value {
        if depth == 0 {
            return leaf.clone();
        }
        let inner = nest(leaf, depth - 1);
        serde_json::json!({"anyOf": [inner, inner, inner]})
    }
    let writer = json(&nest(&serde_json::json!({"type": "string"}), 8).to_string());
    // Every writer branch tried against every reader branch, level after level: 9^8 pairs.
    let reader = json(&nest(&serde_json::json!({"type": "integer"}), 8).to_string());
    let started = std::time::Instant::now();
    let problems = reader.can_read(&writer);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        problems.iter().any(|p| p.contains("too large")),
        "{problems:?}"
    );
}
