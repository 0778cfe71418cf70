//! Avro binary straight into the handler's serde type, by the writer schema, without
//! building apache-avro's `Value` tree first (which allocates a `String` per field name
//! and per string value, and then copies each string again into the handler's type).
//!
//! Used only when no resolution is needed (the reader's fields are the writer's, see
//! [`super::plan`]) and the writer schema has only the types below: primitives, records,
//! enums, arrays, maps, unions, fixed, and the logical types that are an int, a long or a
//! string. Anything else (decimals, durations, named-type references) takes the `Value`
//! path, and so does a record this path cannot give the type: any error here is retried
//! there, whose error is the one reported. Values are handed over as apache-avro's
//! `from_value` hands them (a union as its branch, `null` as `None`, an enum as its
//! symbol), so a type reads the same either way.

use apache_avro::Schema;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// Whether [`decode`] handles every part of `schema`.
pub(super) fn supported(schema: &Schema) -> bool {
    match schema {
        Schema::Null
        | Schema::Boolean
        | Schema::Int
        | Schema::Long
        | Schema::Float
        | Schema::Double
        | Schema::Bytes
        | Schema::String
        | Schema::Enum(_)
        | Schema::Fixed(_)
        | Schema::Date
        | Schema::TimeMillis
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos
        | Schema::Uuid(apache_avro::schema::UuidSchema::String) => true,
        Schema::Array(a) => supported(&a.items),
        Schema::Map(m) => supported(&m.types),
        Schema::Union(u) => u.variants().iter().all(supported),
        Schema::Record(r) => r.fields.iter().all(|f| supported(&f.schema)),
        _ => false,
    }
}

/// Decodes one datum of `schema` from the front of `bytes` into `T`.
pub(super) fn decode<T: de::DeserializeOwned>(schema: &Schema, bytes: &[u8]) -> Result<T, Error> {
    let mut input = Input { bytes, depth: 0 };
    T::deserialize(Datum {
        schema,
        input: &mut input,
    })
}

/// Why a direct decode failed (the caller then takes the `Value` path).
#[derive(Debug)]
pub(super) struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        Error(msg.to_string())
    }
}

/// Nesting deeper than this is left to the `Value` path (which reports it as it does).
const MAX_DEPTH: usize = 64;

struct Input<'a> {
    bytes: &'a [u8],
    depth: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.bytes.len() {
            return Err(Error("the datum ends early".into()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn long(&mut self) -> Result<i64, Error> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let &[b] = self.take(1)? else { unreachable!() };
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(Error("a varint longer than 10 bytes".into()))
    }

    fn int(&mut self) -> Result<i32, Error> {
        i32::try_from(self.long()?).map_err(|_| Error("an int out of range".into()))
    }

    fn len(&mut self) -> Result<usize, Error> {
        usize::try_from(self.long()?).map_err(|_| Error("a negative length".into()))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.len()?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Error("a string that is not UTF-8".into()))
    }

    /// The item count of the next array or map block (0 at the end); a negative count is
    /// followed by the block's size in bytes, which is not needed here.
    fn block(&mut self) -> Result<usize, Error> {
        let n = self.long()?;
        if n < 0 {
            self.long()?;
        }
        usize::try_from(n.unsigned_abs()).map_err(|_| Error("a block too large".into()))
    }
}

/// One datum of `schema` at the input's position.
struct Datum<'s, 'i, 'a> {
    schema: &'s Schema,
    input: &'i mut Input<'a>,
}

impl<'s, 'i, 'a> Datum<'s, 'i, 'a> {
    fn nested<R>(
        &mut self,
        f: impl FnOnce(&mut Input<'a>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if self.input.depth >= MAX_DEPTH {
            return Err(Error("nested too deeply".into()));
        }
        self.input.depth += 1;
        let r = f(self.input);
        self.input.depth -= 1;
        r
    }

    /// A union's chosen branch.
    fn branch(&mut self, u: &'s apache_avro::schema::UnionSchema) -> Result<&'s Schema, Error> {
        let i = self.input.long()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| u.variants().get(i))
            .ok_or_else(|| Error(format!("union branch {i} does not exist")))
    }
}

impl<'de, 's, 'i, 'a> de::Deserializer<'de> for Datum<'s, 'i, 'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        match self.schema {
            Schema::Union(u) => {
                let schema = self.branch(u)?;
                return self.nested(|input| {
                    de::Deserializer::deserialize_any(Datum { schema, input }, visitor)
                });
            }
            Schema::Array(a) => {
                let items = &a.items;
                return self.nested(|input| visitor.visit_seq(Blocks::new(items, input)?));
            }
            Schema::Map(m) => {
                let values = &m.types;
                return self.nested(|input| visitor.visit_map(Blocks::new(values, input)?));
            }
            Schema::Record(r) => {
                let fields = &r.fields[..];
                return self.nested(|input| {
                    visitor.visit_map(Fields {
                        fields,
                        input,
                        next: 0,
                    })
                });
            }
            _ => {}
        }
        let input = &mut *self.input;
        match self.schema {
            Schema::Null => visitor.visit_unit(),
            Schema::Boolean => match input.take(1)? {
                [0] => visitor.visit_bool(false),
                [1] => visitor.visit_bool(true),
                _ => Err(Error("a boolean that is neither 0 nor 1".into())),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => visitor.visit_i32(input.int()?),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => visitor.visit_i64(input.long()?),
            Schema::Float => {
                let b = input.take(4)?;
                visitor.visit_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            Schema::Double => {
                let b = input.take(8)?;
                visitor.visit_f64(f64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            Schema::Bytes => visitor.visit_bytes(input.bytes()?),
            Schema::Fixed(f) => visitor.visit_bytes(input.take(f.size)?),
            Schema::String | Schema::Uuid(_) => visitor.visit_str(input.str()?),
            Schema::Enum(e) => visitor.visit_str(symbol(input, &e.symbols)?),
            _ => Err(Error("a type the direct path does not read".into())),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        match self.schema {
            Schema::Null => visitor.visit_none(),
            Schema::Union(u) => match self.branch(u)? {
                Schema::Null => visitor.visit_none(),
                schema => self.nested(|input| visitor.visit_some(Datum { schema, input })),
            },
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.schema {
            Schema::Enum(e) => {
                let s = symbol(self.input, &e.symbols)?;
                visitor.visit_enum(s.into_deserializer())
            }
            // Unions as Rust enums are apache-avro's own convention: the `Value` path.
            _ => Err(Error(
                "an enum from something other than an Avro enum".into(),
            )),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Read (and drop) the datum: the input must move past it.
        de::Deserializer::deserialize_any(self, de::IgnoredAny)?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

fn symbol<'s>(input: &mut Input<'_>, symbols: &'s [String]) -> Result<&'s str, Error> {
    let i = input.int()?;
    usize::try_from(i)
        .ok()
        .and_then(|i| symbols.get(i))
        .map(String::as_str)
        .ok_or_else(|| Error(format!("enum symbol {i} does not exist")))
}

/// A record's fields, in the writer's order, as a map from field name to value.
struct Fields<'s, 'i, 'a> {
    fields: &'s [apache_avro::schema::RecordField],
    input: &'i mut Input<'a>,
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_, '_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(field.name.as_str().into_deserializer())
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let field = &self.fields[self.next];
        self.next += 1;
        seed.deserialize(Datum {
            schema: &field.schema,
            input: self.input,
        })
    }
}

/// An array's items or a map's entries, block by block (a map's keys are strings).
struct Blocks<'s, 'i, 'a> {
    /// The items' or the values' schema.
    schema: &'s Schema,
    input: &'i mut Input<'a>,
    /// Items left in the current block; 0 once the last block is read.
    left: usize,
}

impl<'s, 'i, 'a> Blocks<'s, 'i, 'a> {
    fn new(schema: &'s Schema, input: &'i mut Input<'a>) -> Result<Self, Error> {
        let left = input.block()?;
        Ok(Blocks {
            schema,
            input,
            left,
        })
    }

    /// Reads the next item (or entry value), then the next block's count after a block's last.
    fn value<'de, T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let v = seed.deserialize(Datum {
            schema: self.schema,
            input: self.input,
        })?;
        self.left -= 1;
        if self.left == 0 {
            self.left = self.input.block()?;
        }
        Ok(v)
    }
}

impl<'de> de::SeqAccess<'de> for Blocks<'_, '_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.value(seed).map(Some)
    }
}

impl<'de> de::MapAccess<'de> for Blocks<'_, '_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        let key = self.input.str()?;
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.value(seed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use apache_avro::types::Value;
    use serde::Deserialize;

    use super::*;

    const WRITER: &str = r#"{"type":"record","name":"W","namespace":"t","fields":[
        {"name":"id","type":"long"},
        {"name":"n","type":"int"},
        {"name":"ok","type":"boolean"},
        {"name":"f","type":"float"},
        {"name":"d","type":"double"},
        {"name":"s","type":"string"},
        {"name":"b","type":"bytes"},
        {"name":"maybe","type":["null","string"]},
        {"name":"none","type":["null","long"]},
        {"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"counts","type":{"type":"map","values":"long"}},
        {"name":"inner","type":{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"}]}},
        {"name":"fx","type":{"type":"fixed","name":"Two","size":2}},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"extra","type":{"type":"array","items":{"type":"map","values":["null","double"]}}}
    ]}"#;

    #[derive(Debug, PartialEq, Deserialize)]
    enum Color {
        #[serde(rename = "RED")]
        Red,
        #[serde(rename = "GREEN")]
        Green,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Inner {
        x: i32,
    }

    /// Every writer field but `extra`, which must be skipped.
    #[derive(Debug, PartialEq, Deserialize)]
    struct Reader {
        id: i64,
        n: i64,
        ok: bool,
        f: f32,
        d: f64,
        s: String,
        #[serde(with = "serde_bytes_like")]
        b: Vec<u8>,
        maybe: Option<String>,
        none: Option<i64>,
        color: Color,
        tags: Vec<String>,
        counts: HashMap<String, i64>,
        inner: Inner,
        day: i32,
    }

    /// `Vec<u8>` from Avro bytes, as both paths hand them over.
    mod serde_bytes_like {
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
            }
            d.deserialize_bytes(V)
        }
    }

    fn datum(schema: &Schema, tags: usize) -> Vec<u8> {
        let extra = Value::Array(vec![Value::Map(
            [(
                "k".to_string(),
                Value::Union(1, Box::new(Value::Double(0.5))),
            )]
            .into(),
        )]);
        let value = Value::Record(vec![
            ("id".into(), Value::Long(-7_000_000_000)),
            ("n".into(), Value::Int(42)),
            ("ok".into(), Value::Boolean(true)),
            ("f".into(), Value::Float(1.5)),
            ("d".into(), Value::Double(-2.25)),
            ("s".into(), Value::String("héllo".into())),
            ("b".into(), Value::Bytes(vec![0, 255])),
            (
                "maybe".into(),
                Value::Union(1, Box::new(Value::String("yes".into()))),
            ),
            ("none".into(), Value::Union(0, Box::new(Value::Null))),
            ("color".into(), Value::Enum(1, "GREEN".into())),
            (
                "tags".into(),
                Value::Array((0..tags).map(|i| Value::String(format!("t{i}"))).collect()),
            ),
            (
                "counts".into(),
                Value::Map([("a".to_string(), Value::Long(3))].into()),
            ),
            (
                "inner".into(),
                Value::Record(vec![("x".into(), Value::Int(-1))]),
            ),
            ("fx".into(), Value::Fixed(2, vec![1, 2])),
            ("day".into(), Value::Date(19_000)),
            ("extra".into(), extra),
        ]);
        let mut out = Vec::new();
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .unwrap();
        writer.write_value(&mut out, value).unwrap();
        out
    }

    #[test]
    fn reads_what_the_value_path_reads() {
        let schema = Schema::parse_str(WRITER).unwrap();
        assert!(supported(&schema));
        for tags in [0, 1, 300] {
            let bytes = datum(&schema, tags);
            let direct: Reader = decode(&schema, &bytes).unwrap();
            let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
                .build()
                .unwrap()
                .read_value(&mut &bytes[..])
                .unwrap();
            let through_value: Reader = apache_avro::from_value(&value).unwrap();
            assert_eq!(direct, through_value);
            assert_eq!(direct.tags.len(), tags);
            assert_eq!(direct.color, Color::Green);
            assert_eq!(direct.maybe.as_deref(), Some("yes"));
        }
    }

    #[test]
    fn a_short_or_wrong_datum_is_an_error_not_a_panic() {
        let schema = Schema::parse_str(WRITER).unwrap();
        let bytes = datum(&schema, 3);
        for cut in 0..bytes.len() {
            assert!(
                decode::<Reader>(&schema, &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // A union branch and an enum symbol that do not exist.
        let bad = Schema::parse_str(r#"["null","long"]"#).unwrap();
        assert!(decode::<Option<i64>>(&bad, &[4]).is_err());
        let e = Schema::parse_str(r#"{"type":"enum","name":"E","symbols":["A"]}"#).unwrap();
        assert!(decode::<String>(&e, &[2]).is_err());
    }

    #[test]
    fn what_it_does_not_read_takes_the_value_path() {
        let decimal = r#"{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}"#;
        let named = r#"{"type":"record","name":"R","fields":[
            {"name":"a","type":{"type":"fixed","name":"F","size":1}},{"name":"b","type":"F"}]}"#;
        for text in [decimal, named] {
            assert!(!supported(&Schema::parse_str(text).unwrap()), "{text}");
        }
    }
}
