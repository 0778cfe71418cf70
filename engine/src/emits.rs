//! The records one invocation emitted, stored back to back in one buffer.
//!
//! An emit used to be four heap allocations (topic, key, value, headers) made inside the
//! guest's call to the host; with a quarter of the records emitting, that was a large share
//! of the host's per-record cost. Now an emit is one copy of its bytes onto the end of one
//! buffer per invocation, and the topic name is interned: a handler writes to one or
//! two topics, not one per record.

use std::ops::Range;

/// A record the handler emitted, owned (see [`Emits::to_vec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit {
    /// Output topic.
    pub topic: String,
    /// Key; `None` is null.
    pub key: Option<Vec<u8>>,
    /// Value; `None` is null.
    pub value: Option<Vec<u8>>,
    /// Headers in order; `None` values are null.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record the handler emitted, borrowed from [`Emits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmitRef<'a> {
    /// Output topic.
    pub topic: &'a str,
    /// Index of `topic` in [`Emits::topics`]: emits to one topic share it.
    pub topic_index: usize,
    /// Key; `None` is null.
    pub key: Option<&'a [u8]>,
    /// Value; `None` is null.
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u32,
}

impl<'a> EmitRef<'a> {
    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }

    /// The headers in order (`None` values are null).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        // The ABI encoding: a u32 count, then the headers.
        let mut rest = self.headers.get(4..).unwrap_or_default();
        // Validated when emitted (see `validate_headers`), so decoding cannot fail here.
        (0..self.header_count).map_while(move |_| {
            let kl = take_u32(&mut rest)? as usize;
            let k = std::str::from_utf8(take(&mut rest, kl)?).ok()?;
            let v = match take_u32(&mut rest)? as i32 {
                -1 => None,
                n => Some(take(&mut rest, n as usize)?),
            };
            Some((k, v))
        })
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Emit {
        Emit {
            topic: self.topic.to_owned(),
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self
                .headers()
                .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    topic: usize,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers: Range<usize>,
    header_count: u32,
}

/// Everything one invocation emitted, in order.
#[derive(Debug, Clone, Default)]
pub struct Emits {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    topics: Vec<String>,
}

impl Emits {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any record has headers.
    pub fn has_headers(&self) -> bool {
        self.entries.iter().any(|e| e.header_count > 0)
    }

    /// The distinct topics written to, in order of first use.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The `i`-th record.
    pub fn get(&self, i: usize) -> Option<EmitRef<'_>> {
        self.entries.get(i).map(|e| self.view(e))
    }

    /// The records in emit order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EmitRef<'_>> + '_ {
        self.entries.iter().map(|e| self.view(e))
    }

    /// Owned copies of every record (for tests and tools; the host uses [`Emits::iter`]).
    pub fn to_vec(&self) -> Vec<Emit> {
        self.iter().map(|e| e.to_owned()).collect()
    }

    fn view(&self, e: &Entry) -> EmitRef<'_> {
        let slice = |r: &Range<usize>| &self.bytes[r.clone()];
        EmitRef {
            topic: &self.topics[e.topic],
            topic_index: e.topic,
            key: e.key.as_ref().map(slice),
            value: e.value.as_ref().map(slice),
            headers: slice(&e.headers),
            header_count: e.header_count,
        }
    }

    /// Appends a record. `headers` must have passed [`validate_headers`], which returned
    /// `header_count`.
    pub(crate) fn push(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[u8],
        header_count: u32,
    ) {
        let topic = match self.topics.iter().rposition(|t| t == topic) {
            Some(i) => i,
            None => {
                self.topics.push(topic.to_owned());
                self.topics.len() - 1
            }
        };
        let mut copy = |b: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(b);
            start..self.bytes.len()
        };
        let key = key.map(&mut copy);
        let value = value.map(&mut copy);
        let headers = copy(headers);
        self.entries.push(Entry {
            topic,
            key,
            value,
            headers,
            header_count,
        });
    }

    /// Keeps the first `n` records.
    pub(crate) fn truncate(&mut self, n: usize) {
        if n >= self.entries.len() {
            return;
        }
        self.entries.truncate(n);
        let end = self.entries.last().map_or(0, |e| e.headers.end);
        self.bytes.truncate(end);
        // Topics are numbered in order of first use, so those the kept records use are a
        // prefix; a topic only the dropped ones named must not be created by the append.
        let used = self.entries.iter().map(|e| e.topic + 1).max().unwrap_or(0);
        self.topics.truncate(used);
    }

    /// Drops every record.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
        self.topics.clear();
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = b.split_at_checked(n)?;
    *b = tail;
    Some(head)
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?))
}

/// Checks the ABI's header encoding (docs/abi.md) without allocating: the number of headers,
/// or `None` if malformed (a key that is not UTF-8 included).
pub(crate) fn validate_headers(mut b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return Some(0);
    }
    let n = take_u32(&mut b)?;
    for _ in 0..n {
        let kl = take_u32(&mut b)? as usize;
        std::str::from_utf8(take(&mut b, kl)?).ok()?;
        match take_u32(&mut b)? as i32 {
            -1 => {}
            l if l < 0 => return None,
            l => {
                take(&mut b, l as usize)?;
            }
        }
    }
    b.is_empty().then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(h: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut out = (h.len() as u32).to_le_bytes().to_vec();
        for (k, v) in h {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k.as_bytes());
            match v {
                Some(v) => {
                    out.extend_from_slice(&(v.len() as i32).to_le_bytes());
                    out.extend_from_slice(v);
                }
                None => out.extend_from_slice(&(-1i32).to_le_bytes()),
            }
        }
        out
    }

    #[test]
    fn records_round_trip_and_topics_are_interned() {
        let mut e = Emits::default();
        let h = headers(&[("a", Some(b"1")), ("b", None)]);
        let n = validate_headers(&h).expect("valid");
        e.push("out", Some(b"k"), None, &h, n);
        e.push("other", None, Some(b"v"), &[], 0);
        e.push("out", Some(b""), Some(b"w"), &[], 0);
        assert_eq!(e.topics(), ["out", "other"]);
        let v = e.to_vec();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(v[0].value, None);
        assert_eq!(
            v[0].headers,
            [
                ("a".to_owned(), Some(b"1".to_vec())),
                ("b".to_owned(), None)
            ]
        );
        assert_eq!((v[1].topic.as_str(), v[1].key.is_none()), ("other", true));
        assert_eq!(e.get(2).map(|r| r.topic_index), Some(0));
        e.truncate(1);
        assert_eq!(e.len(), 1);
        assert_eq!(e.to_vec()[0], v[0]);
        e.clear();
        assert!(e.is_empty());
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = headers(&[("k", Some(b"v"))]);
        assert_eq!(validate_headers(&good), Some(1));
        assert_eq!(validate_headers(&good[..good.len() - 1]), None);
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(validate_headers(&trailing), None);
        let bad_utf8 = headers(&[("\u{0}", None)]);
        let mut b = bad_utf8.clone();
        b[8] = 0xff;
        assert_eq!(validate_headers(&b), None);
        let mut negative = headers(&[("k", None)]);
        let at = negative.len() - 4;
        negative[at..].copy_from_slice(&(-2i32).to_le_bytes());
        assert_eq!(validate_headers(&negative), None);
    }

    #[test]
    fn truncate_forgets_topics_only_dropped_records_used() {
        let mut e = Emits::default();
        e.push("out", None, Some(b"a"), &[], 0);
        e.push("out", None, Some(b"b"), &[], 0);
        e.push("failing-only", None, Some(b"c"), &[], 0);
        e.truncate(2);
        assert_eq!(e.len(), 2);
        assert_eq!(e.topics(), ["out"]);
        assert_eq!(e.to_vec()[1].value.as_deref(), Some(&b"b"[..]));
        e.truncate(0);
        assert!(e.is_empty());
        assert!(e.topics().is_empty());
    }
}
