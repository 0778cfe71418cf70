//! Protobuf compatibility, after Confluent's Protobuf rules: fields are matched by number,
//! and a change is compatible when the reader decodes what the writer encodes.
//!
//! - A top-level message of the writer missing from the reader (renamed, or the package
//!   changed) is incompatible (`MESSAGE_REMOVED`); so is a nested message removed, since a
//!   payload's message indexes may name it.
//! - A field number whose type changed is incompatible unless both types are in one
//!   wire-compatible group: int32/uint32/int64/uint64/bool/enum (varint), sint32/sint64
//!   (zig-zag), fixed32/sfixed32, fixed64/sfixed64, string/bytes/message (length-delimited).
//!   Message fields of different message types are incompatible (`FIELD_NAMED_TYPE_CHANGED`);
//!   of the same type, compared recursively.
//! - Singular to repeated or back is incompatible (`FIELD_KIND_CHANGED`), including the
//!   packable scalars the Protobuf language guide lets through.
//! - Adding or removing an optional field is compatible; a proto2 `required` field the
//!   reader has and the writer may leave out is incompatible (`REQUIRED_FIELD_ADDED`).
//! - A field moved into a oneof is incompatible (`FIELD_MOVED_TO_EXISTING_ONEOF`; this
//!   checker also refuses a move into a new oneof, which Confluent lets through for a
//!   single field). Proto3 `optional` (a synthetic oneof) does not count.
//! - Enum values added or removed are compatible (unknown values are kept).

use std::collections::HashSet;

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};

pub(super) fn check(writer: &[MessageDescriptor], reader: &[MessageDescriptor]) -> Vec<String> {
    let mut checker = Checker {
        seen: HashSet::new(),
        problems: Vec::new(),
    };
    for (i, w) in writer.iter().enumerate() {
        match reader.iter().find(|r| r.full_name() == w.full_name()) {
            Some(r) => checker.message(w, r, ""),
            None if i == 0 => checker.problems.push(format!(
                "message {}: the writer's first message is missing from the reader (renamed, removed or its package changed)",
                w.full_name()
            )),
            None => checker.problems.push(format!(
                "message {}: missing from the reader (renamed, removed or its package changed)",
                w.full_name()
            )),
        }
    }
    checker.problems
}

struct Checker {
    /// Message pairs (writer, reader) already checked or under check: each pair is checked
    /// once, and recursive messages terminate.
    seen: HashSet<(String, String)>,
    problems: Vec<String>,
}

/// The wire-compatible group of a field type; types in the same group read each other.
fn group(kind: &Kind) -> &'static str {
    match kind {
        Kind::Int32 | Kind::Uint32 | Kind::Int64 | Kind::Uint64 | Kind::Bool | Kind::Enum(_) => {
            "varint"
        }
        Kind::Sint32 | Kind::Sint64 => "zig-zag varint",
        Kind::Fixed32 | Kind::Sfixed32 => "fixed32",
        Kind::Fixed64 | Kind::Sfixed64 => "fixed64",
        Kind::Float => "float",
        Kind::Double => "double",
        // string and bytes read each other (valid UTF-8 aside); an embedded message is a
        // different kind, as Confluent says (FIELD_KIND_CHANGED): bytes of a message read
        // as a string fail UTF-8, a string read as a message fails to decode.
        Kind::String | Kind::Bytes => "string or bytes",
        Kind::Message(_) => "message",
    }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => format!("message {}", m.full_name()),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn in_real_oneof(field: &FieldDescriptor) -> bool {
    field.containing_oneof().is_some_and(|o| !o.is_synthetic())
}

fn say(
    message: &MessageDescriptor,
    field: &FieldDescriptor,
    path: &str,
    problem: impl std::fmt::Display,
) -> String {
    let name = if path.is_empty() {
        field.name().to_string()
    } else {
        format!("{path}.{}", field.name())
    };
    format!(
        "field '{name}' (number {}, message {}): {problem}",
        field.number(),
        message.name()
    )
}

impl Checker {
    fn message(&mut self, w: &MessageDescriptor, r: &MessageDescriptor, path: &str) {
        let key = (w.full_name().to_string(), r.full_name().to_string());
        if !self.seen.insert(key) {
            return;
        }
        for wf in w.fields() {
            let Some(rf) = r.get_field(wf.number()) else {
                continue;
            };
            self.field(&wf, &rf, r, path);
        }
        for rf in r.fields() {
            if rf.cardinality() == Cardinality::Required
                && w.get_field(rf.number())
                    .is_none_or(|wf| wf.cardinality() != Cardinality::Required)
            {
                self.problems.push(say(
                    r,
                    &rf,
                    path,
                    "the reader requires this field and the writer may leave it out",
                ));
            }
        }
        // Nested messages by name, beyond those fields use: message indexes may name them.
        for wn in w.child_messages().filter(|m| !m.is_map_entry()) {
            match r.child_messages().find(|m| m.name() == wn.name()) {
                Some(rn) => self.message(&wn, &rn, path),
                None => self.problems.push(format!(
                    "message {}: the nested message is missing from the reader (renamed or removed)",
                    wn.full_name()
                )),
            }
        }
    }

    fn field(
        &mut self,
        wf: &FieldDescriptor,
        rf: &FieldDescriptor,
        r: &MessageDescriptor,
        path: &str,
    ) {
        let here = if path.is_empty() {
            rf.name().to_string()
        } else {
            format!("{path}.{}", rf.name())
        };
        if wf.is_map() && rf.is_map() {
            // Map entries are messages named after the field; compare keys and values.
            if let (Kind::Message(we), Kind::Message(re)) = (wf.kind(), rf.kind()) {
                for (wk, rk) in [
                    (we.map_entry_key_field(), re.map_entry_key_field()),
                    (we.map_entry_value_field(), re.map_entry_value_field()),
                ] {
                    self.field(&wk, &rk, &re, &here);
                }
            }
            return;
        }
        if wf.is_list() != rf.is_list() || wf.is_map() != rf.is_map() {
            let label = |f: &FieldDescriptor| {
                if f.is_map() {
                    "a map"
                } else if f.is_list() {
                    "repeated"
                } else {
                    "singular"
                }
            };
            self.problems.push(say(
                r,
                rf,
                path,
                format!(
                    "the writer's field is {} and the reader's {}",
                    label(wf),
                    label(rf)
                ),
            ));
            return;
        }
        if in_real_oneof(rf) && !in_real_oneof(wf) {
            self.problems
                .push(say(r, rf, path, "the field moved into a oneof"));
        }
        let (wk, rk) = (wf.kind(), rf.kind());
        match (&wk, &rk) {
            (Kind::Message(wm), Kind::Message(rm)) => {
                if wm.full_name() != rm.full_name() {
                    self.problems.push(say(
                        r,
                        rf,
                        path,
                        format!(
                            "the writer's {} is not the reader's {}",
                            kind_name(&wk),
                            kind_name(&rk)
                        ),
                    ));
                } else {
                    self.message(wm, rm, &here);
                }
            }
            _ if group(&wk) != group(&rk) => self.problems.push(say(
                r,
                rf,
                path,
                format!(
                    "the writer's {} ({}) cannot be read as {} ({})",
                    kind_name(&wk),
                    group(&wk),
                    kind_name(&rk),
                    group(&rk)
                ),
            )),
            _ => {}
        }
    }
}
