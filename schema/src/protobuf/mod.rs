//! Protobuf schemas compiled at run time (`protox`) and decoded dynamically
//! (`prost-reflect`). Compatibility between versions is written here.

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use prost_reflect::prost::Message as _;

use crate::{DecodeError, Dependency, SchemaError, SchemaType};

mod compat;

#[derive(Debug, Clone)]
pub(crate) struct ProtobufSchema {
    pool: DescriptorPool,
    /// The messages of the schema's own file, in declaration order (message index 0 first).
    messages: Vec<MessageDescriptor>,
}

const MAIN: &str = "rill_schema_main.proto";

impl ProtobufSchema {
    pub(crate) fn parse(
        text: &str,
        dependencies: &[Dependency],
    ) -> Result<ProtobufSchema, SchemaError> {
        let invalid = |e: &dyn std::fmt::Display| SchemaError::invalid(SchemaType::Protobuf, e);
        // protox's parser recurses per nested block without a limit: a deep enough text
        // would overflow the stack, so depth is counted first. Its lexer also asserts on
        // an octal literal with an 8 or 9 in it (`068`), which aborts a debug build.
        for t in std::iter::once(text).chain(dependencies.iter().map(|d| d.schema.as_str())) {
            let scan = scan(t);
            if scan.depth > MAX_NESTING {
                return Err(invalid(&format_args!(
                    "blocks nest deeper than {MAX_NESTING} levels"
                )));
            }
            if let Some(literal) = scan.bad_octal {
                return Err(invalid(&format_args!(
                    "{literal} is not a valid integer (a leading 0 makes it octal)"
                )));
            }
        }
        let mut files: Vec<(String, String)> = dependencies
            .iter()
            .map(|d| (d.name.clone(), d.schema.clone()))
            .collect();
        files.push((MAIN.to_string(), text.to_string()));
        let resolver = Files(files);
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler.open_file(MAIN).map_err(|e| invalid(&e))?;
        let pool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(MAIN)
            .ok_or_else(|| invalid(&"the file did not compile"))?;
        let messages: Vec<MessageDescriptor> = file.messages().collect();
        if messages.is_empty() {
            return Err(invalid(&"the schema defines no message"));
        }
        Ok(ProtobufSchema { pool, messages })
    }

    /// The compiled file descriptor, without source locations and under a fixed file name,
    /// encoded and in hex: whitespace, comments and the order of imports' text do not
    /// change it; declaration order does.
    pub(crate) fn canonical(&self) -> String {
        let Some(file) = self.pool.get_file_by_name(MAIN) else {
            return String::new();
        };
        let mut proto = file.file_descriptor_proto().clone();
        proto.source_code_info = None;
        proto
            .encode_to_vec()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub(crate) fn to_json(&self, payload: &[u8]) -> Result<serde_json::Value, DecodeError> {
        let decoded = self.decode(payload)?;
        serde_json::to_value(&decoded).map_err(|e| DecodeError(e.to_string()))
    }

    /// Decoding is the check; the JSON form is not built.
    pub(crate) fn validate(&self, payload: &[u8]) -> Result<(), DecodeError> {
        self.decode(payload).map(|_| ())
    }

    /// The message the indexes at the start of `payload` name, decoded from the rest.
    fn decode(&self, payload: &[u8]) -> Result<DynamicMessage, DecodeError> {
        let (indexes, rest) =
            crate::wire::split_message_indexes(payload).map_err(|e| DecodeError(e.to_string()))?;
        let (&first, nested) = indexes
            .split_first()
            .ok_or_else(|| DecodeError("no message index".into()))?;
        let mut message = self
            .messages
            .get(first)
            .cloned()
            .ok_or_else(|| DecodeError(format!("no message at index {first}")))?;
        for &i in nested {
            let child = message.child_messages().nth(i);
            message = child.ok_or_else(|| {
                DecodeError(format!(
                    "no nested message at index {i} in {}",
                    message.full_name()
                ))
            })?;
        }
        DynamicMessage::decode(message, rest)
            .map_err(|e| DecodeError(format!("not valid Protobuf: {e}")))
    }

    pub(crate) fn can_read(&self, writer: &ProtobufSchema) -> Vec<String> {
        compat::check(&writer.messages, &self.messages)
    }

    /// The schema as Confluent's `?format=serialized` gives it: the compiled file
    /// descriptor (without source locations), base64-encoded.
    pub(crate) fn serialized(&self) -> Option<String> {
        use base64::Engine as _;
        let file = self.pool.get_file_by_name(MAIN)?;
        let mut proto = file.file_descriptor_proto().clone();
        proto.source_code_info = None;
        Some(base64::engine::general_purpose::STANDARD.encode(proto.encode_to_vec()))
    }
}

/// The schema's file and its dependencies by name; a text is `.proto` source or, as
/// Confluent's serializers register them, a base64-encoded `FileDescriptorProto`. Google's
/// well-known types are built in, as serializers do not register them.
struct Files(Vec<(String, String)>);

impl protox::file::FileResolver for Files {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match self.0.iter().find(|(n, _)| n == name) {
            Some((n, text)) => match descriptor_from_base64(text) {
                Some(mut proto) => {
                    proto.name = Some(n.clone());
                    Ok(protox::file::File::from_file_descriptor_proto(proto))
                }
                None => protox::file::File::from_source(n, text),
            },
            None => protox::file::GoogleFileResolver::new().open_file(name),
        }
    }
}

/// Deepest `{` nesting a schema text may have.
const MAX_NESTING: usize = 64;

/// What [`scan`] finds in a schema text before protox sees it.
struct Scan {
    /// The deepest nesting of brackets (roughly: enough to bound the parser's recursion).
    depth: usize,
    /// The first octal-looking literal with an 8 or 9 in it.
    bad_octal: Option<String>,
}

/// Scans `text` outside comments and strings.
fn scan(text: &str) -> Scan {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut bad_octal = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // Identifiers whole, so the digits in `field_089` are not taken for a number.
            c if c.is_ascii_alphabetic() || c == '_' => {
                while chars
                    .next_if(|d| d.is_ascii_alphanumeric() || *d == '_')
                    .is_some()
                {}
            }
            '0'..='9' => {
                if let Some(literal) = number(c, &mut chars) {
                    bad_octal.get_or_insert(literal);
                }
            }
            // `.5`, `.089e1`: a float, not a dot and a number.
            '.' if chars.peek().is_some_and(char::is_ascii_digit) => {
                while chars.next_if(char::is_ascii_digit).is_some() {}
                float_tail(&mut chars);
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            // A string ends at its quote or, unterminated, at the end of its line, as
            // protox's lexer ends it.
            '"' | '\'' => {
                let mut escaped = false;
                while let Some(d) = chars.next_if(|&d| d != '\n') {
                    if !escaped && d == c {
                        break;
                    }
                    escaped = !escaped && d == '\\';
                }
            }
            '{' | '[' | '(' | '<' => {
                depth += 1;
                max = max.max(depth);
            }
            '}' | ']' | ')' | '>' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Scan {
        depth: max,
        bad_octal,
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Consumes the number token that starts with `first`, as protox's lexer splits numbers
/// (`0x1F`, `017`, `12`, `1.5e3f`, `6F`), and returns it if it is an octal literal with an
/// 8 or 9 in it.
fn number(first: char, chars: &mut Chars<'_>) -> Option<String> {
    if first == '0' && chars.peek().is_some_and(|c| matches!(c, 'x' | 'X')) {
        let mut after = chars.clone();
        after.next();
        if after.peek().is_some_and(char::is_ascii_hexdigit) {
            chars.next();
            while chars.next_if(char::is_ascii_hexdigit).is_some() {}
        }
        return None;
    }
    let mut digits = String::from(first);
    while let Some(d) = chars.next_if(char::is_ascii_digit) {
        digits.push(d);
    }
    if chars.next_if_eq(&'.').is_some() {
        while chars.next_if(char::is_ascii_digit).is_some() {}
        float_tail(chars);
        return None;
    }
    if exponent(chars) {
        chars.next_if(|c| matches!(c, 'f' | 'F'));
        return None;
    }
    // `0f` and `6F` are floats; `06F` is the octal `06` and then an identifier.
    if (digits == "0" || !digits.starts_with('0'))
        && chars.next_if(|c| matches!(c, 'f' | 'F')).is_some()
    {
        return None;
    }
    (digits.starts_with('0') && digits.contains(['8', '9'])).then_some(digits)
}

/// Consumes a float's optional exponent and `f` suffix.
fn float_tail(chars: &mut Chars<'_>) {
    exponent(chars);
    chars.next_if(|c| matches!(c, 'f' | 'F'));
}

/// Consumes `e`, an optional sign and digits, if they are all there.
fn exponent(chars: &mut Chars<'_>) -> bool {
    let mut after = chars.clone();
    if after.next_if(|c| matches!(c, 'e' | 'E')).is_none() {
        return false;
    }
    after.next_if(|c| matches!(c, '+' | '-'));
    if after.next_if(char::is_ascii_digit).is_none() {
        return false;
    }
    while after.next_if(char::is_ascii_digit).is_some() {}
    *chars = after;
    true
}

/// A base64-encoded `FileDescriptorProto`, if `text` is one. `.proto` source always has
/// spaces or punctuation base64 lacks, so the two cannot be confused.
fn descriptor_from_base64(text: &str) -> Option<prost_reflect::prost_types::FileDescriptorProto> {
    use base64::Engine as _;
    let text = text.trim();
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let proto = prost_reflect::prost_types::FileDescriptorProto::decode(bytes.as_slice()).ok()?;
    (!proto.message_type.is_empty() || !proto.enum_type.is_empty()).then_some(proto)
}

#[cfg(test)]
mod tests {
    /// A text nested 100,000 blocks deep is refused before protox (whose parser would
    /// overflow the stack), on a small stack to prove it.
    #[test]
    fn deep_nesting_is_refused_before_the_parser() {
        let mut text = String::from("syntax = \"proto3\";\n");
        text.push_str(&"message a {".repeat(100_000));
        text.push_str(&"}".repeat(100_000));
        let e = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                super::ProtobufSchema::parse(&text, &[])
                    .unwrap_err()
                    .to_string()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(e.contains("deeper than 64"), "{e}");
        let ok = "syntax = \"proto3\";\n// a { comment\nmessage A { string s = 1; map<string, int32> m = 2; }";
        assert!(super::ProtobufSchema::parse(ok, &[]).is_ok());
        assert_eq!(super::scan(ok).depth, 2);
    }

    #[test]
    fn an_octal_literal_with_an_8_or_9_is_refused_not_handed_to_protox() {
        // protox-parse 0.9 debug-asserts on these (found by fuzzing).
        for text in [
            "068",
            "message M { int32 a = 09; }",
            "\"\n068",
            "058e",
            "09e+",
            "6F008",
        ] {
            let e = super::ProtobufSchema::parse(text, &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("a leading 0 makes it octal"), "{text}: {e}");
        }
        let fine = "syntax = \"proto3\";\nmessage M { int32 a = 010; double b = 1; }\n// 09\n";
        assert!(super::ProtobufSchema::parse(fine, &[]).is_ok());
        assert!(
            super::scan("x = 0.89e09; y = \"09\"; z = 0x9; w = 09e-1; v = 09.; u = field_089 .089")
                .bad_octal
                .is_none()
        );
    }
}
