//! Hostile schemas and payloads, as the registry (`POST /subjects/…/versions`) and door
//! validation receive them: parsing a schema of any type, deriving its forms, checking it
//! against another, and decoding a payload with it must never panic, overflow the stack or
//! hang, and door validation must accept only what a consumer can decode.
//!
//! Input: byte 0 picks the type (low two bits) and whether the payload is also parsed as a
//! second schema (bit 2); the rest is `schema text NUL payload`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_schema::{CompatibilityLevel, ParsedSchema, SchemaType, check_compatibility, wire};

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    // The framing parsers see every input whole.
    let _ = wire::split(rest);
    let _ = wire::split_message_indexes(rest);

    let schema_type = match head & 3 {
        0 => SchemaType::Avro,
        1 => SchemaType::Json,
        _ => SchemaType::Protobuf,
    };
    let (text, payload) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(schema) = ParsedSchema::parse(schema_type, text, &[]) else {
        return;
    };
    let _ = schema.canonical();
    let _ = schema.avro_parsing_canonical_form();
    let _ = schema.serialized();
    let _ = schema.can_read(&schema);
    // What the registry stores in canonical form parses again (it is what a restarted
    // registry replays and what handlers fetch).
    let contained = schema.self_contained();
    assert!(
        ParsedSchema::parse(schema_type, &contained, &[]).is_ok(),
        "the self-contained form of a valid schema does not parse: {contained}"
    );

    // Door validation accepts a payload only if it decodes for readers too.
    if schema.validate(payload).is_ok() {
        assert!(
            schema.to_json(payload).is_ok(),
            "validate accepted a payload that to_json cannot decode"
        );
    }

    if head & 4 != 0
        && let Ok(other_text) = std::str::from_utf8(payload)
        && let Ok(other) = ParsedSchema::parse(schema_type, other_text, &[])
    {
        let _ = schema.can_read(&other);
        let _ = other.can_read(&schema);
        for level in [
            CompatibilityLevel::Backward,
            CompatibilityLevel::ForwardTransitive,
            CompatibilityLevel::Full,
        ] {
            let _ = check_compatibility(level, &schema, &[(1, &other)]);
        }
    }
});
