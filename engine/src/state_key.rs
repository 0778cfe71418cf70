//! Keys of the ordered state maps (the write set here, the runtime's partition stores).
//!
//! A `BTreeMap<Vec<u8>, _>` compares keys with `memcmp` through a pointer: every comparison
//! of a lookup is a call and, in a map larger than the cache, a cache miss on the key's heap
//! block. [`StateKey`] keeps keys of up to 22 bytes inline (in the map's node, beside the
//! other keys) and compares short keys 8 bytes at a time, so a lookup reads only the nodes
//! on its path. Lookups take a borrowed [`KeyBytes`], which compares the same way; both
//! order keys exactly as byte strings.

use std::borrow::Borrow;
use std::cmp::Ordering;

/// Longest key kept inline: 22 bytes make a key 24 bytes (tag, length, bytes; or tag and a
/// boxed slice), a third less of a map node's cache lines than 32.
const INLINE: usize = 22;

/// Keys longer than this are compared with `memcmp` (`<[u8]>::cmp`).
const WORDWISE: usize = 32;

/// Byte-string order, word by word for short keys.
#[inline]
fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    if n > WORDWISE {
        return a.cmp(b);
    }
    let (mut a8, mut b8) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in a8.by_ref().zip(b8.by_ref()) {
        let x = u64::from_be_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(y.try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
    }
    // Fewer than 8 bytes left in the shorter key.
    let done = n / 8 * 8;
    for i in done..n {
        if a[i] != b[i] {
            return a[i].cmp(&b[i]);
        }
    }
    a.len().cmp(&b.len())
}

/// A borrowed state key: what lookups in a map of [`StateKey`]s take.
#[repr(transparent)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct KeyBytes([u8]);

impl KeyBytes {
    /// `bytes` as a key.
    #[inline]
    pub fn new(bytes: &[u8]) -> &KeyBytes {
        // SAFETY: `KeyBytes` is a `repr(transparent)` wrapper of `[u8]`, so the two have the
        // same layout and pointer metadata, and the lifetime is carried over.
        unsafe { &*(bytes as *const [u8] as *const KeyBytes) }
    }

    /// The key's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Ord for KeyBytes {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_bytes(&self.0, &other.0)
    }
}

impl PartialOrd for KeyBytes {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An owned state key, inline up to 22 bytes. Ordered as a byte string.
#[derive(Clone)]
pub struct StateKey(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl StateKey {
    /// A copy of `bytes` (allocates only if longer than 22 bytes).
    #[inline]
    pub fn new(bytes: &[u8]) -> StateKey {
        if bytes.len() <= INLINE {
            let mut inline = [0u8; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            StateKey(Repr::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            })
        } else {
            StateKey(Repr::Heap(bytes.into()))
        }
    }

    /// The key's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for StateKey {
    fn from(bytes: &[u8]) -> StateKey {
        StateKey::new(bytes)
    }
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_bytes().escape_ascii().to_string())
    }
}

impl Borrow<KeyBytes> for StateKey {
    #[inline]
    fn borrow(&self) -> &KeyBytes {
        KeyBytes::new(self.as_bytes())
    }
}

impl PartialEq for StateKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for StateKey {}

impl Ord for StateKey {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_bytes(self.as_bytes(), other.as_bytes())
    }
}

impl PartialOrd for StateKey {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_key_is_24_bytes() {
        assert_eq!(std::mem::size_of::<StateKey>(), 24);
    }

    #[test]
    fn keys_order_as_byte_strings() {
        let mut keys: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"ab".to_vec(),
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefgi".to_vec(),
            vec![0xff; 8],
            vec![0xff; 9],
            vec![b'k'; 22],
            vec![b'k'; 23],
            vec![b'k'; 24],
            vec![b'k'; 40],
            [vec![b'k'; 39], vec![b'l']].concat(),
            vec![0u8; 7],
        ];
        for i in 0..300u32 {
            keys.push(format!("user-{:05}", i * 7919 % 1000).into_bytes());
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(cmp_bytes(a, b), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(StateKey::new(a).cmp(&StateKey::new(b)), a.cmp(b));
                assert_eq!(StateKey::new(a) == StateKey::new(b), a == b);
            }
            assert_eq!(StateKey::new(a).as_bytes(), &a[..]);
        }
        let map: BTreeMap<StateKey, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (StateKey::new(k), i))
            .collect();
        let sorted: BTreeMap<&[u8], usize> =
            keys.iter().enumerate().map(|(i, k)| (&k[..], i)).collect();
        assert!(
            map.keys()
                .map(StateKey::as_bytes)
                .eq(sorted.keys().copied())
        );
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(map.get(KeyBytes::new(k)), sorted.get(&k[..]), "{i}");
        }
    }
}
