//! Whether every document valid under a writer JSON Schema is valid under a reader one,
//! checked structurally, in the spirit of Confluent's JSON Schema compatibility rules.
//!
//! The check is sound rather than complete: a keyword it does not understand, present in
//! the reader and not identical in the writer, is reported as "cannot verify" instead of
//! being accepted. Dropping a constraint (a keyword the writer has and the reader lacks)
//! only widens what the reader accepts, so it is always fine.
//!
//! Rules, reader R and writer W at the same place in the document:
//! - `type`: R's set must contain W's (`integer` is contained in `number`); a schema
//!   without `type` allows every type; W's `enum`/`const` narrow W's types to its values'.
//! - `enum`/`const`: every value W allows must be one R allows.
//! - `properties`: compared by name, recursively. A property W has and R lacks must be
//!   allowed by R's `additionalProperties` (absent means any). A property R has and W
//!   lacks is fine when W is closed (`additionalProperties: false`); otherwise W may hold
//!   anything its `additionalProperties` allows there, and R's property must accept that
//!   (so adding a property to an open writer is incompatible, as Confluent says).
//! - `additionalProperties`: what W allows beyond its properties R must allow.
//! - `required`: R's must be a subset of W's.
//! - bounds (`minimum`, `maximum`, their exclusive forms in draft 4 and later styles,
//!   `minLength`, `maxLength`, `minItems`, `maxItems`, `minProperties`, `maxProperties`):
//!   R's must be no narrower than W's. `multipleOf`, `pattern`, `format`, `uniqueItems`:
//!   R's must equal W's or be absent.
//! - `items` (a single schema): recursively. `anyOf`/`oneOf` on their own: every W branch
//!   must be read by some R branch (`oneOf`'s exclusivity is not checked).
//! - `$ref`: to `#/...` in the same document, and to a dependency by its reference name
//!   (with an optional `#/...` fragment).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use serde_json::{Map, Value};

use super::keywords::{
    ANNOTATIONS, EMPTY, HANDLED, TRUE, TYPES, accepts_anything, bound, declared_types, is_open,
    listed_values, number, object_form, show, type_allows, type_of,
};

/// One schema version: its root document and its dependencies by reference name.
#[derive(Clone, Copy)]
pub(super) struct Side<'a> {
    pub(super) root: &'a Value,
    pub(super) dependencies: &'a HashMap<String, Value>,
}

const TOO_LARGE: &str = "cannot verify: the schemas are too large to compare";

/// How many schema pairs the checker compares before giving up.
const MAX_STEPS: usize = 100_000;

/// How deep the checker follows schemas before giving up (recursive `$ref`s).
const MAX_DEPTH: usize = 64;

pub(super) fn check(writer: Side<'_>, reader: Side<'_>) -> Vec<String> {
    let mut checker = Checker {
        writer,
        reader,
        in_progress: HashSet::new(),
        steps: Rc::new(Cell::new(0)),
        problems: Vec::new(),
    };
    checker.node(
        Node {
            value: writer.root,
            doc: writer.root,
        },
        Node {
            value: reader.root,
            doc: reader.root,
        },
        "",
        0,
    );
    if checker.steps.get() > MAX_STEPS {
        // Trials of union branches failed for that reason too; say so once.
        checker.problems.push(say("", TOO_LARGE));
    }
    let mut seen = HashSet::new();
    checker.problems.retain(|p| seen.insert(p.clone()));
    checker.problems
}

/// A schema and the document its local `$ref`s resolve in.
#[derive(Clone, Copy)]
struct Node<'a> {
    value: &'a Value,
    doc: &'a Value,
}

impl<'a> Node<'a> {
    /// A schema inside this one's document.
    fn at(self, value: &'a Value) -> Node<'a> {
        Node {
            value,
            doc: self.doc,
        }
    }
}

const REMOVED_CLOSED: &str = "the writer has this property and the reader's content model is closed (additionalProperties false)";
const ADDED_OPEN: &str = "the reader adds this property, and the writer's open content model \
     (additionalProperties not false) may already hold it with other values";

struct Checker<'a> {
    writer: Side<'a>,
    reader: Side<'a>,
    /// `$ref` pairs (writer, reader) under check, so recursive schemas terminate.
    in_progress: HashSet<(String, String)>,
    /// Schema pairs compared so far, shared with the trial checks of `anyOf` branches, so
    /// that nested unions cannot make the check take exponential time.
    steps: Rc<Cell<usize>>,
    problems: Vec<String>,
}

fn say(path: &str, problem: impl std::fmt::Display) -> String {
    if path.is_empty() {
        format!("the schema: {problem}")
    } else {
        format!("property '{path}': {problem}")
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Resolves `$ref` chains; `Err` says why a reference does not resolve.
fn resolve<'a>(mut node: Node<'a>, side: Side<'a>) -> Result<(Node<'a>, Option<String>), String> {
    let mut first_ref = None;
    for _ in 0..MAX_DEPTH {
        let Some(reference) = node.value.get("$ref").and_then(Value::as_str) else {
            return Ok((node, first_ref));
        };
        let (base, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let doc = if base.is_empty() {
            node.doc
        } else {
            side.dependencies
                .get(base)
                .or_else(|| {
                    side.dependencies
                        .iter()
                        .find(|(name, _)| {
                            name.trim_start_matches("./") == base.trim_start_matches("./")
                        })
                        .map(|(_, v)| v)
                })
                .ok_or_else(|| {
                    format!("reference '{reference}' is not among the schema's references")
                })?
        };
        let target = doc
            .pointer(fragment)
            .ok_or_else(|| format!("reference '{reference}' points at nothing"))?;
        if let Some(obj) = node.value.as_object()
            && obj
                .keys()
                .any(|k| k != "$ref" && !ANNOTATIONS.contains(&k.as_str()))
        {
            return Err(format!(
                "cannot verify '$ref' with sibling keywords ('{reference}')"
            ));
        }
        first_ref.get_or_insert_with(|| format!("{:p}#{reference}", doc as *const Value));
        node = Node { value: target, doc };
    }
    Err("cannot verify: references nest too deeply".into())
}

impl<'a> Checker<'a> {
    fn node(&mut self, w: Node<'a>, r: Node<'a>, path: &str, depth: usize) {
        self.steps.set(self.steps.get() + 1);
        if self.steps.get() > MAX_STEPS {
            // Reported at every pair from here on, so that no trial of a union branch
            // passes for want of a problem.
            self.problems.push(say("", TOO_LARGE));
            return;
        }
        let (w, w_ref) = match resolve(w, self.writer) {
            Ok(x) => x,
            Err(e) => return self.problems.push(say(path, format!("writer: {e}"))),
        };
        let (r, r_ref) = match resolve(r, self.reader) {
            Ok(x) => x,
            Err(e) => return self.problems.push(say(path, format!("reader: {e}"))),
        };
        if w_ref.is_some() || r_ref.is_some() {
            let key = (w_ref.unwrap_or_default(), r_ref.unwrap_or_default());
            if !self.in_progress.insert(key.clone()) {
                return;
            }
            self.schema(w, r, path, depth);
            self.in_progress.remove(&key);
        } else {
            self.schema(w, r, path, depth);
        }
    }

    fn schema(&mut self, w: Node<'a>, r: Node<'a>, path: &str, depth: usize) {
        if matches!(w.value, Value::Bool(false)) || accepts_anything(r.value) {
            return;
        }
        let (Some(ws), Some(rs)) = (object_form(w.value), object_form(r.value)) else {
            // The reader is `false` (or not a schema) and the writer allows something.
            return self
                .problems
                .push(say(path, "the reader accepts nothing the writer writes"));
        };
        // Keywords the checker does not compare: verified only when identical.
        for (k, rv) in rs.iter() {
            let k = k.as_str();
            if ANNOTATIONS.contains(&k) || HANDLED.contains(&k) {
                continue;
            }
            if ws.get(k) != Some(rv) {
                self.problems.push(say(
                    path,
                    format!(
                        "cannot verify keyword '{k}' (the reader has it, the writer not identical)"
                    ),
                ));
            }
        }
        if ws.contains_key("anyOf")
            || ws.contains_key("oneOf")
            || rs.contains_key("anyOf")
            || rs.contains_key("oneOf")
        {
            return self.union(w, r, ws, rs, path, depth);
        }
        self.types_and_values(ws, rs, path);
        self.numbers(ws, rs, path);
        for (min, max) in [
            ("minLength", "maxLength"),
            ("minItems", "maxItems"),
            ("minProperties", "maxProperties"),
        ] {
            if let Some(rmin) = number(rs.get(min))
                && number(ws.get(min)).is_none_or(|wmin| wmin < rmin)
            {
                self.problems.push(say(
                    path,
                    format!(
                        "the reader's {min} {rmin} is narrower than the writer's {}",
                        show(ws.get(min))
                    ),
                ));
            }
            if let Some(rmax) = number(rs.get(max))
                && number(ws.get(max)).is_none_or(|wmax| wmax > rmax)
            {
                self.problems.push(say(
                    path,
                    format!(
                        "the reader's {max} {rmax} is narrower than the writer's {}",
                        show(ws.get(max))
                    ),
                ));
            }
        }
        for k in ["multipleOf", "pattern", "format"] {
            if let Some(rv) = rs.get(k)
                && ws.get(k) != Some(rv)
            {
                self.problems.push(say(
                    path,
                    format!(
                        "the reader's {k} {rv} differs from the writer's {}",
                        show(ws.get(k))
                    ),
                ));
            }
        }
        if rs.get("uniqueItems") == Some(&Value::Bool(true))
            && ws.get("uniqueItems") != Some(&Value::Bool(true))
        {
            self.problems.push(say(
                path,
                "the reader requires unique items and the writer does not",
            ));
        }
        self.items(w, r, ws, rs, path, depth);
        self.object(w, r, ws, rs, path, depth);
    }

    fn types_and_values(&mut self, ws: &Map<String, Value>, rs: &Map<String, Value>, path: &str) {
        let w_types = declared_types(ws);
        let r_types = declared_types(rs);
        let r_values = listed_values(rs);
        if let Some(w_values) = listed_values(ws) {
            // The writer writes only these values (those its `type` also allows).
            for v in w_values
                .into_iter()
                .filter(|v| type_allows(&w_types, type_of(v)))
            {
                if !type_allows(&r_types, type_of(v)) {
                    self.problems.push(say(
                        path,
                        format!("the writer's value {v} is not of the reader's type"),
                    ));
                } else if let Some(rv) = &r_values
                    && !rv.contains(&v)
                {
                    self.problems.push(say(
                        path,
                        format!("the writer's value {v} is not in the reader's enum"),
                    ));
                }
            }
            return;
        }
        if r_values.is_some() {
            self.problems.push(say(
                path,
                "the reader lists the values it allows (enum or const) and the writer does not",
            ));
        }
        let w_all: Vec<&str> = match &w_types {
            None => TYPES.to_vec(),
            Some(set) => {
                let mut v: Vec<&str> = set.iter().copied().collect();
                v.sort_unstable();
                v
            }
        };
        for t in w_all {
            // A reader that allows integers but not numbers reads a writer's numbers only
            // if they are integers, which the writer does not promise.
            if !type_allows(&r_types, t) {
                self.problems.push(say(
                    path,
                    format!("the writer allows type {t}, which the reader does not"),
                ));
            }
        }
    }

    fn numbers(&mut self, ws: &Map<String, Value>, rs: &Map<String, Value>, path: &str) {
        if let Some((rv, rex)) = bound(rs, "minimum", "exclusiveMinimum") {
            let ok = bound(ws, "minimum", "exclusiveMinimum")
                .is_some_and(|(wv, wex)| wv > rv || (wv == rv && (!rex || wex)));
            if !ok {
                self.problems.push(say(
                    path,
                    format!("the reader's lower bound {rv} is narrower than the writer's"),
                ));
            }
        }
        if let Some((rv, rex)) = bound(rs, "maximum", "exclusiveMaximum") {
            let ok = bound(ws, "maximum", "exclusiveMaximum")
                .is_some_and(|(wv, wex)| wv < rv || (wv == rv && (!rex || wex)));
            if !ok {
                self.problems.push(say(
                    path,
                    format!("the reader's upper bound {rv} is narrower than the writer's"),
                ));
            }
        }
    }

    fn items(
        &mut self,
        w: Node<'a>,
        r: Node<'a>,
        ws: &'a Map<String, Value>,
        rs: &'a Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let Some(ri) = rs.get("items") else { return };
        if !type_allows(&declared_types(ws), "array") {
            return;
        }
        match (ws.get("items"), ri) {
            (_, Value::Array(_)) | (Some(Value::Array(_)), _) => {
                if ws.get("items") != Some(ri) {
                    self.problems
                        .push(say(path, "cannot verify tuple 'items' that differ"));
                }
            }
            (wi, _) => {
                let wi = Node {
                    value: wi.unwrap_or(&TRUE),
                    doc: w.doc,
                };
                self.node(
                    wi,
                    Node {
                        value: ri,
                        doc: r.doc,
                    },
                    &format!("{path}[]"),
                    depth + 1,
                );
            }
        }
    }

    fn object(
        &mut self,
        w: Node<'a>,
        r: Node<'a>,
        ws: &'a Map<String, Value>,
        rs: &'a Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        if !type_allows(&declared_types(ws), "object") || listed_values(ws).is_some() {
            return;
        }
        for k in [
            "patternProperties",
            "dependencies",
            "dependentRequired",
            "dependentSchemas",
            "propertyNames",
            "unevaluatedProperties",
        ] {
            if ws.get(k) != rs.get(k) {
                // A reader's unhandled keyword is reported above; a writer's one changes
                // which properties `additionalProperties` covers.
                if !rs.contains_key(k) {
                    self.problems.push(say(
                        path,
                        format!("cannot verify: the writer has keyword '{k}'"),
                    ));
                }
                return;
            }
        }
        let w_props = ws
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY);
        let r_props = rs
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY);
        let w_extra = ws.get("additionalProperties").unwrap_or(&TRUE);
        let r_extra = rs.get("additionalProperties").unwrap_or(&TRUE);
        for (name, wp) in w_props {
            let here = join(path, name);
            match r_props.get(name) {
                Some(rp) => self.node(w.at(wp), r.at(rp), &here, depth + 1),
                None if !is_open(Some(r_extra)) => self.problems.push(say(&here, REMOVED_CLOSED)),
                None => self.node(w.at(wp), r.at(r_extra), &here, depth + 1),
            }
        }
        for (name, rp) in r_props {
            if w_props.contains_key(name) || !is_open(Some(w_extra)) {
                continue;
            }
            let here = join(path, name);
            let before = self.problems.len();
            self.node(
                Node {
                    value: w_extra,
                    doc: w.doc,
                },
                Node {
                    value: rp,
                    doc: r.doc,
                },
                &here,
                depth + 1,
            );
            if self.problems.len() > before {
                self.problems.insert(before, say(&here, ADDED_OPEN));
            }
        }
        if is_open(Some(w_extra)) {
            self.node(
                Node {
                    value: w_extra,
                    doc: w.doc,
                },
                Node {
                    value: r_extra,
                    doc: r.doc,
                },
                &join(path, "*"),
                depth + 1,
            );
        }
        let w_required: HashSet<&str> = ws
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(r_required) = rs.get("required").and_then(Value::as_array) {
            for name in r_required.iter().filter_map(Value::as_str) {
                if !w_required.contains(name) {
                    self.problems.push(say(
                        &join(path, name),
                        "the reader requires this property and the writer does not",
                    ));
                }
            }
        }
    }

    fn union(
        &mut self,
        w: Node<'a>,
        r: Node<'a>,
        ws: &'a Map<String, Value>,
        rs: &'a Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let branches = |s: &'a Map<String, Value>| -> Option<&'a Vec<Value>> {
            s.get("anyOf")
                .or_else(|| s.get("oneOf"))
                .and_then(Value::as_array)
        };
        let only_union = |s: &Map<String, Value>| {
            s.keys()
                .all(|k| k == "anyOf" || k == "oneOf" || ANNOTATIONS.contains(&k.as_str()))
        };
        // The same union on both sides reads itself, unless references inside it may
        // point at different dependencies.
        if ws == rs && !Value::Object(ws.clone()).to_string().contains("\"$ref\"") {
            return;
        }
        let has_union = |s: &Map<String, Value>| s.contains_key("anyOf") || s.contains_key("oneOf");
        let unclear = |s: &Map<String, Value>| {
            has_union(s) && (!only_union(s) || (s.contains_key("anyOf") && s.contains_key("oneOf")))
        };
        if unclear(ws) || unclear(rs) {
            return self.problems.push(say(
                path,
                "cannot verify anyOf/oneOf combined with other keywords",
            ));
        }
        let w_branches: Vec<&'a Value> = match branches(ws) {
            Some(b) => b.iter().collect(),
            None => vec![w.value],
        };
        let r_branches: Vec<&'a Value> = match branches(rs) {
            Some(b) => b.iter().collect(),
            None => vec![r.value],
        };
        for (i, wb) in w_branches.into_iter().enumerate() {
            let readable = r_branches.iter().any(|rb| {
                let mut scratch = Checker {
                    writer: self.writer,
                    reader: self.reader,
                    in_progress: self.in_progress.clone(),
                    steps: Rc::clone(&self.steps),
                    problems: Vec::new(),
                };
                scratch.node(
                    Node {
                        value: wb,
                        doc: w.doc,
                    },
                    Node {
                        value: rb,
                        doc: r.doc,
                    },
                    path,
                    depth + 1,
                );
                scratch.problems.is_empty()
            });
            if !readable {
                self.problems.push(say(
                    path,
                    format!("the writer's branch {i} matches no branch of the reader"),
                ));
            }
        }
    }
}
