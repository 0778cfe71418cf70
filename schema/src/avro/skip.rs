//! A fast, allocation-free check that a payload is one value of a schema: the bytes are
//! walked by the schema and skipped, nothing is built. Door validation runs it on every
//! record (docs/benchmarks.md, "Schema validation"); building apache-avro's values for each
//! cost most of the produce throughput.
//!
//! It is also the guard in front of apache-avro's decoder, which recurses without a limit
//! and allocates a block's items before reading them: a payload nested deeper than
//! [`MAX_DEPTH`] or holding more than [`MAX_ITEMS`] array and map items is refused here,
//! finally, so the decoder never sees it (a deep value would overflow the host's stack).
//! Logical types whose content the walk does not check (decimals, UUIDs, durations) are
//! skipped by their wire shape and leave the verdict to the full decoder; a value the walk
//! finds malformed is handed to the decoder too, for its message.

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, UuidSchema};

use super::compat::{Names, collect_names};

/// Deepest nesting of records, arrays, maps and unions in one value.
pub(super) const MAX_DEPTH: usize = 64;
/// Most array and map items in one value (null items take no bytes, so the payload's
/// size does not bound them).
pub(super) const MAX_ITEMS: u64 = 10_000_000;

/// Why the walk stopped.
pub(super) enum Stop {
    /// Not a value of the schema (the full decoder says why).
    Invalid,
    /// Over a limit: refused without the decoder.
    Limit(&'static str),
}

/// What the walk found of a value it went through to its end.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Walked {
    /// A value of the schema, consumed exactly.
    Valid,
    /// Within the limits, but with logical types whose content only the decoder checks (or
    /// bytes left over, for the decoder's message).
    AskDecoder,
}

/// Walks `payload` as one value of `schema` (whose named types, with `dependencies`', are
/// resolved when a reference is met) and requires it to be consumed exactly.
pub(super) fn walk(
    schema: &Schema,
    dependencies: &[Schema],
    payload: &[u8],
) -> Result<Walked, Stop> {
    let mut w = Walk {
        rest: payload,
        names: None,
        schema,
        dependencies,
        depth: 0,
        items: 0,
        unchecked: false,
    };
    w.value(schema)?;
    Ok(if w.rest.is_empty() && !w.unchecked {
        Walked::Valid
    } else {
        Walked::AskDecoder
    })
}

/// Whether the walk alone accepts `payload` (tests).
#[cfg(test)]
pub(super) fn accepts(schema: &Schema, dependencies: &[Schema], payload: &[u8]) -> bool {
    matches!(walk(schema, dependencies, payload), Ok(Walked::Valid))
}

struct Walk<'a> {
    rest: &'a [u8],
    /// Built at the first reference: most schemas have none.
    names: Option<Names<'a>>,
    schema: &'a Schema,
    dependencies: &'a [Schema],
    depth: usize,
    items: u64,
    /// A logical type was skipped without checking its content.
    unchecked: bool,
}

impl<'a> Walk<'a> {
    fn long(&mut self) -> Result<i64, Stop> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.rest.split_first().ok_or(Stop::Invalid)?;
            self.rest = rest;
            // The tenth byte may only carry the 64th bit.
            if i == 9 && b > 1 {
                return Err(Stop::Invalid);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err(Stop::Invalid)
    }

    fn int(&mut self) -> Result<i32, Stop> {
        i32::try_from(self.long()?).map_err(|_| Stop::Invalid)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        if n > self.rest.len() {
            // Final: the decoder would allocate a length's bytes before reading them.
            return Err(Stop::Limit(
                "the payload ends before the Avro value does (truncated, or a length beyond its end)",
            ));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn len(&mut self) -> Result<usize, Stop> {
        usize::try_from(self.long()?).map_err(|_| Stop::Invalid)
    }

    fn value(&mut self, schema: &'a Schema) -> Result<(), Stop> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Stop::Limit("the value nests deeper than 64 levels"));
        }
        let r = self.value_inner(schema);
        self.depth -= 1;
        r
    }

    fn value_inner(&mut self, schema: &'a Schema) -> Result<(), Stop> {
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => match self.take(1)?[0] {
                0 | 1 => Ok(()),
                _ => Err(Stop::Invalid),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => self.int().map(|_| ()),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(|_| ()),
            Schema::Float => self.take(4).map(|_| ()),
            Schema::Double => self.take(8).map(|_| ()),
            Schema::Bytes => {
                let n = self.len()?;
                self.take(n).map(|_| ())
            }
            Schema::String => {
                let n = self.len()?;
                std::str::from_utf8(self.take(n)?).map_err(|_| Stop::Invalid)?;
                Ok(())
            }
            Schema::Fixed(f) => self.take(f.size).map(|_| ()),
            Schema::Enum(e) => {
                let i = self.int()?;
                if usize::try_from(i).is_ok_and(|i| i < e.symbols.len()) {
                    Ok(())
                } else {
                    Err(Stop::Invalid)
                }
            }
            Schema::Union(u) => {
                let i = usize::try_from(self.long()?).map_err(|_| Stop::Invalid)?;
                self.value(u.variants().get(i).ok_or(Stop::Invalid)?)
            }
            Schema::Record(r) => r.fields.iter().try_for_each(|f| self.value(&f.schema)),
            Schema::Array(a) => self.blocks(|w| w.value(&a.items)),
            Schema::Map(m) => self.blocks(|w| {
                let n = w.len()?;
                std::str::from_utf8(w.take(n)?).map_err(|_| Stop::Invalid)?;
                w.value(&m.types)
            }),
            Schema::Ref { name } => {
                let (schema, dependencies) = (self.schema, self.dependencies);
                let names = self.names.get_or_insert_with(|| {
                    let mut names = Names::new();
                    for s in dependencies.iter().chain([schema]) {
                        collect_names(s, &mut names);
                    }
                    names
                });
                let target = *names.get(&name.fullname(None)).ok_or(Stop::Limit(
                    "a reference to a type the schema does not define",
                ))?;
                if matches!(target, Schema::Ref { .. }) {
                    return Err(Stop::Limit("a reference to a reference"));
                }
                self.value(target)
            }
            // Skipped by their wire shape; their content is the decoder's to check.
            Schema::Decimal(d) => {
                self.unchecked = true;
                match &d.inner {
                    InnerDecimalSchema::Fixed(f) => self.take(f.size).map(|_| ()),
                    _ => self.value_inner(&Schema::Bytes),
                }
            }
            Schema::BigDecimal => {
                self.unchecked = true;
                self.value_inner(&Schema::Bytes)
            }
            Schema::Uuid(u) => {
                self.unchecked = true;
                match u {
                    UuidSchema::Fixed(f) => self.take(f.size).map(|_| ()),
                    _ => self.value_inner(&Schema::Bytes),
                }
            }
            Schema::Duration(f) => {
                self.unchecked = true;
                self.take(f.size).map(|_| ())
            }
        }
    }

    /// Array and map blocks: a count, negative when followed by the block's byte size, up
    /// to a count of 0.
    fn blocks(&mut self, mut item: impl FnMut(&mut Self) -> Result<(), Stop>) -> Result<(), Stop> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.len()?;
            }
            let count = count.unsigned_abs();
            // Every item takes at least one byte unless it is null: a count beyond the
            // bytes left is refused before looping over it.
            if count > self.rest.len() as u64 + 1 {
                // Final: the decoder would allocate the block's items before reading them.
                return Err(Stop::Limit(
                    "an array or map block claims more items than the bytes left",
                ));
            }
            self.items += count;
            if self.items > MAX_ITEMS {
                return Err(Stop::Limit(
                    "the value holds more than 10,000,000 array or map items",
                ));
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk accepts exactly what the full decoder accepts, on every prefix and on
    /// every single-byte change of a value that exercises each handled type.
    #[test]
    fn agrees_with_the_decoder() {
        let text = r#"{"type":"record","name":"R","fields":[
            {"name":"b","type":"boolean"},{"name":"i","type":"int"},{"name":"l","type":"long"},
            {"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"s","type":"string"},
            {"name":"by","type":"bytes"},{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
            {"name":"x","type":{"type":"fixed","name":"X","size":2}},
            {"name":"a","type":{"type":"array","items":"long"}},
            {"name":"m","type":{"type":"map","values":"string"}},
            {"name":"u","type":["null","string","E"]},
            {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
        let s = super::super::AvroSchema::parse(text, &[]).unwrap();
        let mut v = vec![1, 0x80, 0x01, 0x03];
        v.extend_from_slice(&1.5f32.to_le_bytes());
        v.extend_from_slice(&2.5f64.to_le_bytes());
        v.extend_from_slice(&[4, b'h', b'i', 2, 9, 2, 7, 7, 4, 2, 4, 0]);
        v.extend_from_slice(&[2, 2, b'k', 2, b'v', 0, 4, 2, 0x90, 0x01]);
        assert!(accepts(&s.schema, &[], &v));
        s.decode(&v).unwrap();
        for cut in 0..v.len() {
            let prefix = &v[..cut];
            if accepts(&s.schema, &[], prefix) {
                assert!(s.decode(prefix).is_ok(), "prefix {cut}");
            }
        }
        for at in 0..v.len() {
            for byte in [0u8, 1, 2, 3, 0x7f, 0x80, 0xff] {
                let mut w = v.clone();
                w[at] = byte;
                if accepts(&s.schema, &[], &w) {
                    assert!(s.decode(&w).is_ok(), "byte {at} = {byte}");
                }
            }
        }
    }

    /// A recursive schema with a payload nested 100,000 deep: refused by the walk, never
    /// handed to apache-avro's decoder (which would overflow the stack), and quickly.
    #[test]
    fn deep_values_are_refused_before_the_decoder() {
        let text = r#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]}]}"#;
        let s = crate::ParsedSchema::parse(crate::SchemaType::Avro, text, &[]).unwrap();
        let mut deep = vec![2u8; 100_000];
        deep.push(0);
        // Run on a small stack: the decoder would need far more than this.
        let (v, j) = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                (
                    s.validate(&deep).unwrap_err(),
                    s.to_json(&deep).unwrap_err(),
                )
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(v.0.contains("deeper than 64"), "{}", v.0);
        assert!(j.0.contains("deeper than 64"), "{}", j.0);
        let s = crate::ParsedSchema::parse(crate::SchemaType::Avro, text, &[]).unwrap();
        s.validate(&[2, 2, 0]).unwrap();
    }

    /// Null items take no bytes: block after block of a million of them is refused by the
    /// item budget, not walked for minutes.
    #[test]
    fn item_counts_are_bounded_across_blocks() {
        let text = r#"{"type":"array","items":"null"}"#;
        let s = crate::ParsedSchema::parse(crate::SchemaType::Avro, text, &[]).unwrap();
        let mut payload = Vec::new();
        for _ in 0..100_000 {
            // A block of 100,000 nulls: zig-zag 200,000 as a varint.
            payload.extend_from_slice(&[0xc0, 0x9a, 0x0c]);
        }
        payload.push(0);
        let started = std::time::Instant::now();
        let e = s.validate(&payload).unwrap_err();
        assert!(e.0.contains("10,000,000"), "{}", e.0);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let e = s.validate(&[0x80, 0x89, 0x7a, 0]).unwrap_err();
        assert!(e.0.contains("more items than the bytes left"), "{}", e.0);
        s.validate(&[4, 0]).unwrap();
    }

    /// Logical types the walk only skips are still checked by the decoder.
    #[test]
    fn skipped_logical_types_go_to_the_decoder() {
        let text = r#"{"type":"record","name":"R","fields":[{"name":"u","type":{"type":"string","logicalType":"uuid"}}]}"#;
        let s = crate::ParsedSchema::parse(crate::SchemaType::Avro, text, &[]).unwrap();
        let mut good = vec![72];
        good.extend_from_slice(b"123e4567-e89b-12d3-a456-426614174000");
        s.validate(&good).unwrap();
        let mut bad = vec![6];
        bad.extend_from_slice(b"xyz");
        assert!(s.validate(&bad).is_err());
    }
}
