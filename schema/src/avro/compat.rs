//! The Avro specification's "Schema Resolution" rules, as a compatibility check: can a
//! reader schema read every datum a writer schema can write?
//!
//! Written by hand rather than delegated to `apache_avro::schema_compatibility`: that
//! checker (0.22) disagrees with the specification (and with Confluent's registry, which
//! follows the Java implementation) on two rules, marked `Hand rule` below, and its answers
//! need care on a third. The unit tests at the end hold the crate's checker against the
//! specification row by row:
//!
//! - it ignores the reader's aliases of a record, enum or fixed name (a rename with an
//!   alias is refused);
//! - it compares references (`Schema::Ref`) by name only, without resolving them against
//!   the dependencies, so a schema whose types come from references cannot be compared
//!   with one that inlines them;
//! - it answers `Ok(Partial)` for a writer union with a branch the reader cannot read and
//!   for an enum symbol the reader lacks without a default; only `Ok(Full)` means that
//!   every datum can be read, which a registry needs;
//! - and its messages do not say which field is at fault.

use std::collections::{HashMap, HashSet};

use apache_avro::Schema;
use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, Name, RecordSchema, UuidSchema,
};

/// Every named type a schema and its dependencies define, by full name.
pub(super) type Names<'a> = HashMap<String, &'a Schema>;

/// Collects the named types of `schema` into `names`.
pub(super) fn collect_names<'a>(schema: &'a Schema, names: &mut Names<'a>) {
    if let Some(name) = schema.name()
        && !matches!(schema, Schema::Ref { .. })
    {
        names.insert(name.fullname(None), schema);
    }
    match schema {
        Schema::Record(r) => r
            .fields
            .iter()
            .for_each(|f| collect_names(&f.schema, names)),
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

/// What a schema is on the wire, with logical types reduced to the type that carries them
/// (the specification resolves logical types by their underlying type), except decimals,
/// whose precision and scale are compared too.
enum Shape<'a> {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Decimal(&'a DecimalSchema),
    Fixed(&'a FixedSchema),
    Enum(&'a EnumSchema),
    Record(&'a RecordSchema),
    Array(&'a Schema),
    Map(&'a Schema),
    Union(&'a [Schema]),
    /// A reference no dependency defines (cannot happen for a parsed schema).
    Unknown(String),
}

impl Shape<'_> {
    fn describe(&self) -> String {
        match self {
            Shape::Null => "null".into(),
            Shape::Boolean => "boolean".into(),
            Shape::Int => "int".into(),
            Shape::Long => "long".into(),
            Shape::Float => "float".into(),
            Shape::Double => "double".into(),
            Shape::Bytes => "bytes".into(),
            Shape::String => "string".into(),
            Shape::Decimal(d) => format!("decimal({}, {})", d.precision, d.scale),
            Shape::Fixed(f) => format!("fixed {} (size {})", f.name.fullname(None), f.size),
            Shape::Enum(e) => format!("enum {}", e.name.fullname(None)),
            Shape::Record(r) => format!("record {}", r.name.fullname(None)),
            Shape::Array(_) => "array".into(),
            Shape::Map(_) => "map".into(),
            Shape::Union(_) => "union".into(),
            Shape::Unknown(n) => format!("unknown type {n}"),
        }
    }
}

/// Hand rule: a reference is resolved to the named type it refers to (the crate compares
/// references by name).
fn shape<'a>(schema: &'a Schema, names: &Names<'a>) -> Shape<'a> {
    match schema {
        Schema::Ref { name } => match names.get(&name.fullname(None)) {
            Some(s) if !matches!(s, Schema::Ref { .. }) => shape(s, names),
            _ => Shape::Unknown(name.fullname(None)),
        },
        Schema::Null => Shape::Null,
        Schema::Boolean => Shape::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Shape::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Shape::Long,
        Schema::Float => Shape::Float,
        Schema::Double => Shape::Double,
        Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => Shape::Bytes,
        Schema::String | Schema::Uuid(UuidSchema::String) => Shape::String,
        Schema::Decimal(d) => Shape::Decimal(d),
        Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => {
            Shape::Fixed(f)
        }
        Schema::Enum(e) => Shape::Enum(e),
        Schema::Record(r) => Shape::Record(r),
        Schema::Array(a) => Shape::Array(&a.items),
        Schema::Map(m) => Shape::Map(&m.types),
        Schema::Union(u) => Shape::Union(u.variants()),
    }
}

/// Where in the reader schema a problem is: the dotted field path and the record holding
/// the innermost field.
#[derive(Clone, Default)]
struct Location {
    path: String,
    record: Option<String>,
}

impl Location {
    fn field(&self, name: &str, record: &Name) -> Location {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        };
        Location {
            path,
            record: Some(record.name().to_string()),
        }
    }

    fn suffix(&self, s: &str) -> Location {
        Location {
            path: format!("{}{s}", self.path),
            record: self.record.clone(),
        }
    }

    fn say(&self, problem: impl std::fmt::Display) -> String {
        match &self.record {
            Some(record) => format!("field '{}' (record {record}): {problem}", self.path),
            None if self.path.is_empty() => format!("top level: {problem}"),
            None => format!("'{}': {problem}", self.path),
        }
    }
}

/// Checks the specification's resolution rules between a writer and a reader.
pub(super) struct Checker<'a> {
    pub(super) writer_names: Names<'a>,
    pub(super) reader_names: Names<'a>,
    /// Pairs of named types (writer, reader) already under check: a recursive type is
    /// compatible with itself if nothing else is wrong.
    in_progress: HashSet<(String, String)>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(writer_names: Names<'a>, reader_names: Names<'a>) -> Checker<'a> {
        Checker {
            writer_names,
            reader_names,
            in_progress: HashSet::new(),
        }
    }

    /// The problems reading `writer` data with `reader`; empty when it can.
    pub(super) fn check(&mut self, writer: &'a Schema, reader: &'a Schema) -> Vec<String> {
        let mut problems = Vec::new();
        self.resolve(writer, reader, &Location::default(), &mut problems);
        problems
    }

    fn compatible(&mut self, writer: &'a Schema, reader: &'a Schema, at: &Location) -> bool {
        let mut scratch = Vec::new();
        self.resolve(writer, reader, at, &mut scratch);
        scratch.is_empty()
    }

    fn resolve(
        &mut self,
        writer: &'a Schema,
        reader: &'a Schema,
        at: &Location,
        problems: &mut Vec<String>,
    ) {
        let w = shape(writer, &self.writer_names);
        let r = shape(reader, &self.reader_names);
        match (&w, &r) {
            // Spec: "if writer's is a union, but reader's is not: if the reader's schema
            // matches the selected writer's schema, it is recursively resolved against it;
            // if they do not match, an error is signalled." Any branch could be
            // selected, so every branch must resolve (the crate answers Partial).
            (Shape::Union(branches), _) => {
                for (i, branch) in branches.iter().enumerate() {
                    if let Shape::Union(_) = r {
                        if !self.reads_some_branch(branch, reader, at) {
                            problems.push(at.say(format!(
                                "the writer's union branch {i} ({}) matches no branch of the reader's union",
                                shape(branch, &self.writer_names).describe()
                            )));
                        }
                    } else {
                        let before = problems.len();
                        self.resolve(branch, reader, at, problems);
                        if problems.len() > before {
                            problems.insert(
                                before,
                                at.say(format!(
                                    "the writer's union branch {i} ({}) cannot be read as {}",
                                    shape(branch, &self.writer_names).describe(),
                                    r.describe()
                                )),
                            );
                        }
                    }
                }
            }
            // Spec: "if reader's is a union, but writer's is not: the first schema in the
            // reader's union that matches the writer's schema is recursively resolved
            // against it. If none match, an error is signalled."
            (_, Shape::Union(_)) => {
                if !self.reads_some_branch(writer, reader, at) {
                    problems.push(at.say(format!(
                        "the writer's {} matches no branch of the reader's union",
                        w.describe()
                    )));
                }
            }
            (Shape::Null, Shape::Null)
            | (Shape::Boolean, Shape::Boolean)
            // Spec: int is promotable to long, float, or double; long to float or double;
            // float to double; string to bytes; bytes to string.
            | (Shape::Int, Shape::Int | Shape::Long | Shape::Float | Shape::Double)
            | (Shape::Long, Shape::Long | Shape::Float | Shape::Double)
            | (Shape::Float, Shape::Float | Shape::Double)
            | (Shape::Double, Shape::Double)
            | (Shape::Bytes | Shape::String, Shape::Bytes | Shape::String) => {}
            (Shape::Decimal(wd), Shape::Decimal(rd)) => {
                if wd.precision != rd.precision || wd.scale != rd.scale {
                    problems.push(at.say(format!(
                        "the writer's {} cannot be read as {}",
                        w.describe(),
                        r.describe()
                    )));
                }
                self.resolve_decimal_inner(&wd.inner, &rd.inner, at, problems);
            }
            // A decimal is read by its underlying type when only one side is a decimal.
            (Shape::Decimal(wd), _) => match &wd.inner {
                InnerDecimalSchema::Bytes => {
                    if !matches!(r, Shape::Bytes | Shape::String) {
                        problems.push(mismatch(at, &w, &r));
                    }
                }
                InnerDecimalSchema::Fixed(wf) => match r {
                    Shape::Fixed(rf) => fixed(wf, rf, at, problems),
                    _ => problems.push(mismatch(at, &w, &r)),
                },
            },
            (_, Shape::Decimal(rd)) => match (&w, &rd.inner) {
                (Shape::Bytes | Shape::String, InnerDecimalSchema::Bytes) => {}
                (Shape::Fixed(wf), InnerDecimalSchema::Fixed(rf)) => {
                    fixed(wf, rf, at, problems)
                }
                _ => problems.push(mismatch(at, &w, &r)),
            },
            // Spec: fixed: "both schemas are fixed with the same (unqualified) name and size".
            (Shape::Fixed(wf), Shape::Fixed(rf)) => fixed(wf, rf, at, problems),
            // Spec: enums: "if the writer's symbol is not present in the reader's enum and
            // the reader has a default value, then that value is used, otherwise an error
            // is signalled." The crate answers Partial for missing symbols.
            (Shape::Enum(we), Shape::Enum(re)) => {
                if !names_match(&we.name, &re.name, re.aliases.as_deref()) {
                    problems.push(name_mismatch(at, "enum", &we.name, &re.name));
                    return;
                }
                if re.default.is_none() {
                    let missing: Vec<&str> = we
                        .symbols
                        .iter()
                        .filter(|s| !re.symbols.contains(s))
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        problems.push(at.say(format!(
                            "the reader's enum {} lacks the writer's symbols {} and has no default",
                            re.name.name(),
                            missing.join(", ")
                        )));
                    }
                }
            }
            // Spec: arrays: "this resolution algorithm is applied recursively to the
            // reader's and writer's array item schemas"; maps likewise for values.
            (Shape::Array(wi), Shape::Array(ri)) => {
                self.resolve(wi, ri, &at.suffix("[]"), problems)
            }
            (Shape::Map(wv), Shape::Map(rv)) => self.resolve(wv, rv, &at.suffix("{}"), problems),
            (Shape::Record(wr), Shape::Record(rr)) => self.record(wr, rr, at, problems),
            _ => problems.push(mismatch(at, &w, &r)),
        }
    }

    fn resolve_decimal_inner(
        &mut self,
        w: &InnerDecimalSchema,
        r: &InnerDecimalSchema,
        at: &Location,
        problems: &mut Vec<String>,
    ) {
        match (w, r) {
            (InnerDecimalSchema::Bytes, InnerDecimalSchema::Bytes) => {}
            (InnerDecimalSchema::Fixed(wf), InnerDecimalSchema::Fixed(rf)) => {
                fixed(wf, rf, at, problems)
            }
            _ => problems.push(at.say("a decimal changed between bytes and fixed")),
        }
    }

    /// Whether some branch of the reader's union reads `writer` (the spec takes the first
    /// that matches; Java's and Confluent's checkers, like this one, accept any).
    fn reads_some_branch(&mut self, writer: &'a Schema, reader: &'a Schema, at: &Location) -> bool {
        let Shape::Union(branches) = shape(reader, &self.reader_names) else {
            return self.compatible(writer, reader, at);
        };
        branches.iter().any(|b| self.compatible(writer, b, at))
    }

    // Spec: records: "both schemas are records with the same (unqualified) name"; "the
    // ordering of fields may be different: fields are matched by name"; "schemas for fields
    // with the same name in both records are resolved recursively"; "if the writer's
    // record contains a field with a name not present in the reader's record, the writer's
    // value for that field is ignored"; "if the reader's record schema has a field that
    // contains a default value, and writer's schema does not have a field with the same
    // name, then the reader should use the default value from its field"; "if the
    // reader's record schema has a field with no default value, and writer's schema does
    // not have a field with the same name, an error is signalled". Aliases: "a reader's
    // field aliases match writer field names"; a reader's type aliases match the writer's
    // type name (hand rule: the crate ignores type aliases).
    fn record(
        &mut self,
        w: &'a RecordSchema,
        r: &'a RecordSchema,
        at: &Location,
        problems: &mut Vec<String>,
    ) {
        if !names_match(&w.name, &r.name, r.aliases.as_deref()) {
            problems.push(name_mismatch(at, "record", &w.name, &r.name));
            return;
        }
        let key = (w.name.fullname(None), r.name.fullname(None));
        if !self.in_progress.insert(key.clone()) {
            return;
        }
        for rf in &r.fields {
            let here = at.field(&rf.name, &r.name);
            let found = std::iter::once(&rf.name)
                .chain(rf.aliases.iter())
                .find_map(|n| w.fields.iter().find(|wf| &wf.name == n));
            match found {
                Some(wf) => self.resolve(&wf.schema, &rf.schema, &here, problems),
                None if rf.default.is_none() => problems.push(here.say(
                    "the reader's field has no default and the writer has no field of that name or alias",
                )),
                None => {}
            }
        }
        self.in_progress.remove(&key);
    }
}

/// Spec: named types match on their unqualified names; the reader's aliases may name the
/// writer's type instead. Hand rule: the crate ignores the reader's type aliases.
fn names_match(w: &Name, r: &Name, reader_aliases: Option<&[apache_avro::schema::Alias]>) -> bool {
    w.name() == r.name()
        || reader_aliases
            .unwrap_or_default()
            .iter()
            .any(|a| a.fullname(r.namespace()) == w.fullname(None) || a.name() == w.name())
}

fn fixed(w: &FixedSchema, r: &FixedSchema, at: &Location, problems: &mut Vec<String>) {
    if !names_match(&w.name, &r.name, r.aliases.as_deref()) {
        problems.push(name_mismatch(at, "fixed", &w.name, &r.name));
    } else if w.size != r.size {
        problems.push(at.say(format!(
            "the writer's fixed {} has size {} and the reader's has size {}",
            w.name.name(),
            w.size,
            r.size
        )));
    }
}

fn name_mismatch(at: &Location, kind: &str, w: &Name, r: &Name) -> String {
    at.say(format!(
        "the writer's {kind} {} is not the reader's {kind} {} (nor one of its aliases)",
        w.fullname(None),
        r.fullname(None)
    ))
}

fn mismatch(at: &Location, w: &Shape<'_>, r: &Shape<'_>) -> String {
    at.say(format!(
        "the writer's {} cannot be read as {}",
        w.describe(),
        r.describe()
    ))
}

#[cfg(test)]
mod tests;
