//! Keyed state for handlers: the host half of `state_get`, `state_put` and `state_scan`
//! (`docs/abi.md`, "State").
//!
//! The engine owns no storage. An instance is given a read-only [`StateView`] of its
//! partition's committed state (the runtime's store); what the guest writes during an
//! invocation goes to a write set ([`StateWrites`]) that reads see first, so a handler reads
//! its own writes. The write set is returned in the [`crate::Invocation`]; the caller makes
//! it durable together with the offset, then applies it to the store. A failed invocation's
//! writes are discarded with its emits.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::ops::Bound;
use std::sync::Arc;

use wasmtime::Caller;

use crate::host::{Abort, HostState, abort, guest_slice, guest_slice_mut, memory};
use crate::state_key::{KeyBytes, StateKey};

/// Longest key a guest may use, in bytes.
pub const MAX_STATE_KEY: usize = 32 << 10;

/// `state_*` return code: the key is empty or longer than [`MAX_STATE_KEY`].
const STATE_ERR_KEY: i32 = -3;

/// A read-only view of one partition's committed state.
pub trait StateView: Send + Sync {
    /// Calls `f` with the value of `key`, or `None` if it has none.
    fn get(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>));
    /// Calls `f` with the entries whose keys are in `[from, to)` (`to = None`: no upper
    /// bound), in key order, until `f` returns false.
    fn scan(&self, from: &[u8], to: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool);
}

/// The state an instance reads, shared with its owner.
#[derive(Clone)]
pub struct StateHandle(pub Arc<dyn StateView>);

impl std::fmt::Debug for StateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateHandle")
    }
}

/// One invocation's state changes: the last value written per key (`None`: deleted), in
/// key order.
///
/// Values live back to back in one buffer (a put allocates nothing once the buffer and the
/// map's nodes have grown; a value rewritten no longer than before is overwritten in place).
/// The buffer holds at most what the puts wrote, which the emit byte limit bounds.
///
/// A bitmap of the written keys' hashes answers most reads of keys not written (the usual
/// read-modify-write reads a key before its first put) without searching the map.
#[derive(Debug, Clone)]
pub struct StateWrites {
    /// Key → where its value is in `values` (`None`: deleted).
    map: BTreeMap<StateKey, Option<(usize, usize)>>,
    values: Vec<u8>,
    /// Bit `hash(key) % 4096` is set for every key in `map`.
    written: [u64; 64],
}

impl Default for StateWrites {
    fn default() -> Self {
        StateWrites {
            map: BTreeMap::new(),
            values: Vec::new(),
            written: [0; 64],
        }
    }
}

/// The bit of `key` in [`StateWrites::written`]: (word, mask).
#[inline]
fn key_bit(key: &[u8]) -> (usize, u64) {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = key.len() as u64;
    let mut words = key.chunks_exact(8);
    for w in words.by_ref() {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    let bit = (h >> 52) as usize;
    (bit / 64, 1 << (bit % 64))
}

impl PartialEq for StateWrites {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for StateWrites {}

impl StateWrites {
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Keys written.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    fn value(&self, at: Option<(usize, usize)>) -> Option<&[u8]> {
        at.map(|(start, len)| &self.values[start..start + len])
    }

    /// Every change, in key order: the key and its new value (`None`: deleted).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        self.map.iter().map(|(k, v)| (k.as_bytes(), self.value(*v)))
    }

    /// Records a change. One search of the map.
    pub fn put(&mut self, key: &[u8], value: Option<&[u8]>) {
        fn push(values: &mut Vec<u8>, v: &[u8]) -> (usize, usize) {
            values.extend_from_slice(v);
            (values.len() - v.len(), v.len())
        }
        let (word, mask) = key_bit(key);
        self.written[word] |= mask;
        let values = &mut self.values;
        match self.map.entry(StateKey::new(key)) {
            Entry::Occupied(mut e) => match (e.get_mut(), value) {
                (Some((start, len)), Some(v)) if v.len() <= *len => {
                    values[*start..*start + v.len()].copy_from_slice(v);
                    *len = v.len();
                }
                (slot, v) => *slot = v.map(|v| push(values, v)),
            },
            Entry::Vacant(e) => {
                e.insert(value.map(|v| push(values, v)));
            }
        }
    }

    /// The change to `key`, if there is one: `Some(None)` is a delete.
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let (word, mask) = key_bit(key);
        if self.written[word] & mask == 0 {
            return None;
        }
        self.map.get(KeyBytes::new(key)).map(|v| self.value(*v))
    }

    /// Forgets every change.
    pub fn clear(&mut self) {
        self.map.clear();
        self.values.clear();
        self.written = [0; 64];
    }

    fn range<'a>(
        &'a self,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let upper = to.map_or(Bound::Unbounded, |t| Bound::Excluded(KeyBytes::new(t)));
        self.map
            .range::<KeyBytes, _>((Bound::Included(KeyBytes::new(from)), upper))
            .map(|(k, v)| (k.as_bytes(), self.value(*v)))
    }
}

fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_STATE_KEY
}

/// `state_get(key_ptr, key_len, out_ptr, out_cap) -> i32`: the value's length (its first
/// `out_cap` bytes copied out), `-1` if the key has no value, `-3` for an invalid key.
pub(crate) fn state_get(
    mut caller: Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    out_ptr: i32,
    out_cap: i32,
) -> wasmtime::Result<i32> {
    let mem = memory(&caller);
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let result = (|| {
        // A copy, since the output may overlap it; inline (no allocation) for short keys.
        let key = guest_slice(data, key_ptr, key_len, "state_get key")?;
        if !valid_key(key) {
            return Ok(STATE_ERR_KEY);
        }
        let key = StateKey::new(key);
        let key = key.as_bytes();
        let mut found: Result<i32, Abort> = Ok(-1);
        let mut copy = |value: Option<&[u8]>| {
            let Some(v) = value else { return };
            let n = v.len().min(out_cap.max(0) as usize);
            found = guest_slice_mut(data, out_ptr, n as i32, "state_get output").map(|dst| {
                dst.copy_from_slice(&v[..n]);
                v.len().min(i32::MAX as usize) as i32
            });
        };
        match state.scratch.state.get(key) {
            Some(v) => copy(v),
            None => {
                if let Some(view) = &state.state {
                    view.0.get(key, &mut copy);
                }
            }
        }
        found
    })();
    result.map_err(|a| abort(&mut caller, a))
}

/// `state_put(key_ptr, key_len, value_ptr, value_len) -> i32`: `0`, or `-3` for an invalid
/// key. A `value_len` of `-1` deletes the key. Counts against the emit limits, since every
/// change becomes a changelog record.
pub(crate) fn state_put(
    mut caller: Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> wasmtime::Result<i32> {
    let mem = memory(&caller);
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let data: &[u8] = data;
    let result = (|| {
        let key = guest_slice(data, key_ptr, key_len, "state_put key")?;
        let value = (value_len != -1)
            .then(|| guest_slice(data, value_ptr, value_len, "state_put value"))
            .transpose()?;
        if !valid_key(key) {
            return Ok(STATE_ERR_KEY);
        }
        let size = (key.len() + value.map_or(0, <[u8]>::len)) as u64;
        let s = &mut state.scratch;
        if s.emit_bytes + size > state.limits.max_emit_bytes
            || s.emits.len() + s.state.len() >= state.limits.max_emits as usize
        {
            return Err(Abort::EmitLimit);
        }
        s.emit_bytes += size;
        s.state.put(key, value);
        Ok(0)
    })();
    result.map_err(|a| abort(&mut caller, a))
}

/// Bytes one entry takes in a `state_scan` output.
fn entry_size(key: &[u8], value: &[u8]) -> usize {
    8 + key.len() + value.len()
}

/// `state_scan(from_ptr, from_len, to_ptr, to_len, out_ptr, out_cap) -> i32`: writes the
/// entries with keys in `[from, to)` (`to_len = -1`: no upper bound), in key order, as
/// `key_len: u32 LE, key, value_len: u32 LE, value`, as many whole entries as fit, and
/// returns the bytes written (`0`: no entry left). If the next entry alone does not fit,
/// returns minus its size (at most `-9`).
pub(crate) fn state_scan(
    mut caller: Caller<'_, HostState>,
    from_ptr: i32,
    from_len: i32,
    to_ptr: i32,
    to_len: i32,
    out_ptr: i32,
    out_cap: i32,
) -> wasmtime::Result<i32> {
    let mem = memory(&caller);
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let result = (|| {
        let from = guest_slice(data, from_ptr, from_len, "state_scan from")?.to_vec();
        let to = (to_len != -1)
            .then(|| guest_slice(data, to_ptr, to_len, "state_scan to").map(<[u8]>::to_vec))
            .transpose()?;
        let cap = out_cap.max(0) as usize;
        let out = guest_slice_mut(data, out_ptr, cap as i32, "state_scan output")?;
        Ok(scan_into(
            state.state.as_ref(),
            &state.scratch.state,
            &from,
            to.as_deref(),
            out,
        ))
    })();
    result.map_err(|a| abort(&mut caller, a))
}

/// The merge of the committed view and the write set over `[from, to)`, written into `out`
/// (see [`state_scan`]).
fn scan_into(
    view: Option<&StateHandle>,
    writes: &StateWrites,
    from: &[u8],
    to: Option<&[u8]>,
    out: &mut [u8],
) -> i32 {
    let mut written = 0usize;
    let mut cursor = from.to_vec();
    loop {
        // A page of the committed view, about as large as the output (at least one entry).
        let mut page: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut page_bytes = 0usize;
        let mut truncated = false;
        if let Some(v) = view {
            v.0.scan(&cursor, to, &mut |k, val| {
                if !page.is_empty() && page_bytes + entry_size(k, val) > out.len() {
                    truncated = true;
                    return false;
                }
                page_bytes += entry_size(k, val);
                page.push((k.to_vec(), val.to_vec()));
                true
            });
        }
        // Merge with the writes up to the page's last key (or `to`, if the page is whole).
        let upper: Option<Vec<u8>> = if truncated {
            page.last().map(|(k, _)| {
                let mut next = k.clone();
                next.push(0);
                next
            })
        } else {
            to.map(<[u8]>::to_vec)
        };
        let mut mine = writes.range(&cursor, upper.as_deref()).peekable();
        let mut theirs = page.iter().peekable();
        loop {
            let (key, value) = match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some((mk, mv)), Some((tk, _))) if *mk <= tk.as_slice() => {
                    let same = *mk == tk.as_slice();
                    let (k, v) = (*mk, *mv);
                    mine.next();
                    if same {
                        theirs.next();
                    }
                    (k, v)
                }
                (Some(_), None) => {
                    let (k, v) = mine.next().expect("peeked");
                    (k, v)
                }
                (_, Some(_)) => {
                    let (k, v) = theirs.next().expect("peeked");
                    (k.as_slice(), Some(v.as_slice()))
                }
            };
            let Some(value) = value else { continue };
            let size = entry_size(key, value);
            if written + size > out.len() {
                if written == 0 {
                    return -(size.min(i32::MAX as usize) as i32);
                }
                return written as i32;
            }
            let dst = &mut out[written..written + size];
            dst[..4].copy_from_slice(&(key.len() as u32).to_le_bytes());
            dst[4..4 + key.len()].copy_from_slice(key);
            let v = 4 + key.len();
            dst[v..v + 4].copy_from_slice(&(value.len() as u32).to_le_bytes());
            dst[v + 4..].copy_from_slice(value);
            written += size;
        }
        // Everything up to `upper` is written; a page cut short has more after it.
        match upper {
            Some(u) if truncated && written < out.len() => cursor = u,
            _ => return written as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Map(BTreeMap<Vec<u8>, Vec<u8>>);

    impl StateView for Map {
        fn get(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) {
            f(self.0.get(key).map(Vec::as_slice))
        }
        fn scan(&self, from: &[u8], to: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
            for (k, v) in self
                .0
                .range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
            {
                if to.is_some_and(|t| k.as_slice() >= t) || !f(k, v) {
                    return;
                }
            }
        }
    }

    fn decode(mut out: &[u8]) -> Vec<(String, String)> {
        let mut v = Vec::new();
        while !out.is_empty() {
            let kl = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
            let k = String::from_utf8(out[4..4 + kl].to_vec()).unwrap();
            out = &out[4 + kl..];
            let vl = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
            let val = String::from_utf8(out[4..4 + vl].to_vec()).unwrap();
            out = &out[4 + vl..];
            v.push((k, val));
        }
        v
    }

    /// Scans everything from `from`, page by page, as the SDK does.
    fn scan_all(
        view: &StateHandle,
        writes: &StateWrites,
        cap: usize,
        to: Option<&[u8]>,
    ) -> Vec<(String, String)> {
        let mut all = Vec::new();
        let mut from = b"a".to_vec();
        let mut out = vec![0u8; cap];
        loop {
            let n = scan_into(Some(view), writes, &from, to, &mut out);
            assert!(n >= 0, "cap {cap} too small: {n}");
            if n == 0 {
                return all;
            }
            let page = decode(&out[..n as usize]);
            from = page.last().unwrap().0.clone().into_bytes();
            from.push(0);
            all.extend(page);
        }
    }

    #[test]
    fn writes_read_back_their_last_value_and_nothing_else() {
        let mut w = StateWrites::default();
        let key = |i: u32| format!("key-{i}-{}", "x".repeat(i as usize % 40)).into_bytes();
        for i in 0..5000u32 {
            w.put(&key(i), Some(&i.to_le_bytes()));
        }
        for i in (0..5000u32).step_by(3) {
            w.put(&key(i), Some(&[i as u8]));
        }
        for i in (0..5000u32).step_by(5) {
            w.put(&key(i), Some(&[7u8; 30]));
        }
        for i in (0..5000u32).step_by(7) {
            w.put(&key(i), None);
        }
        for i in 0..5000u32 {
            let expected: Option<Vec<u8>> = if i % 7 == 0 {
                None
            } else if i % 5 == 0 {
                Some(vec![7u8; 30])
            } else if i % 3 == 0 {
                Some(vec![i as u8])
            } else {
                Some(i.to_le_bytes().to_vec())
            };
            assert_eq!(
                w.get(&key(i)).map(|v| v.map(<[u8]>::to_vec)),
                Some(expected)
            );
            assert_eq!(w.get(&key(i + 5000)), None);
        }
        assert_eq!(w.len(), 5000);
        let keys: Vec<&[u8]> = w.iter().map(|(k, _)| k).collect();
        assert!(keys.windows(2).all(|p| p[0] < p[1]), "in key order");
        let copy = w.clone();
        assert_eq!(copy, w);
        w.clear();
        assert!(w.is_empty() && w.get(&key(1)).is_none());
    }

    #[test]
    fn scan_merges_writes_over_the_committed_view_in_pages() {
        let committed: BTreeMap<Vec<u8>, Vec<u8>> = (0..50)
            .map(|i| {
                (
                    format!("k{i:02}").into_bytes(),
                    format!("v{i}").into_bytes(),
                )
            })
            .collect();
        let view = StateHandle(Arc::new(Map(committed.clone())));
        let mut writes = StateWrites::default();
        writes.put(b"k05", None);
        writes.put(b"k10", Some(b"new"));
        writes.put(b"k10a", Some(b"added"));
        for i in 20..40 {
            writes.put(format!("k{i:02}").as_bytes(), None);
        }
        let mut expected: BTreeMap<String, String> = committed
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k.clone()).unwrap(),
                    String::from_utf8(v.clone()).unwrap(),
                )
            })
            .collect();
        expected.remove("k05");
        expected.insert("k10".into(), "new".into());
        expected.insert("k10a".into(), "added".into());
        for i in 20..40 {
            expected.remove(&format!("k{i:02}"));
        }
        let expected: Vec<_> = expected.into_iter().collect();
        for cap in [17, 40, 100, 1000, 1 << 16] {
            assert_eq!(scan_all(&view, &writes, cap, None), expected, "cap {cap}");
        }
        let bounded: Vec<_> = expected
            .iter()
            .filter(|(k, _)| k.as_str() < "k11")
            .cloned()
            .collect();
        assert_eq!(scan_all(&view, &writes, 40, Some(b"k11")), bounded);
    }

    #[test]
    fn scan_reports_the_size_an_entry_needs() {
        let view = StateHandle(Arc::new(Map(BTreeMap::from([(
            b"key".to_vec(),
            vec![7u8; 100],
        )]))));
        let mut out = vec![0u8; 50];
        assert_eq!(
            scan_into(Some(&view), &StateWrites::default(), b"", None, &mut out),
            -(8 + 3 + 100)
        );
    }
}
