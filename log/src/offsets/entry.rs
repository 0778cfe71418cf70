//! The commits-file entry: its 32-byte encoding and decoding, and replaying one
//! generation's entries up to the first torn or out-of-order one.

use std::path::Path;

use crate::io::{Io, read_full_at};

/// Size of one entry in a commits file.
pub(super) const ENTRY: usize = 32;
/// Key id of a generation's first entry, the marker.
pub(super) const MARKER_KEY: u32 = u32::MAX;

/// Bit of an entry's flags word (bytes 28..32, once reserved and zero, so outside the CRC):
/// the entry's negative offset is a committed value, not a tombstone. Older builds ignore
/// the word and so read such a commit as a tombstone, which means "no committed offset" just
/// as a committed -1 does; entries they wrote have no flag, so their tombstones stay
/// tombstones here.
const FLAG_NEGATIVE_VALUE: u32 = 1;

/// Encodes an entry; `None` is a tombstone.
pub(super) fn encode_entry(key: u32, partition: u32, offset: Option<i64>, seq: u64) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[0..4].copy_from_slice(&key.to_be_bytes());
    e[4..8].copy_from_slice(&partition.to_be_bytes());
    e[8..16].copy_from_slice(&offset.unwrap_or(-1).to_be_bytes());
    e[16..24].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&e[..24]);
    e[24..28].copy_from_slice(&crc.to_be_bytes());
    if offset.is_some_and(|o| o < 0) {
        e[28..32].copy_from_slice(&FLAG_NEGATIVE_VALUE.to_be_bytes());
    }
    e
}

/// Decodes an entry (`None` if its CRC fails); its offset is `None` for a tombstone.
#[allow(clippy::type_complexity)]
fn decode_entry(e: &[u8]) -> Option<(u32, u32, Option<i64>, u64)> {
    let u32_at = |i: usize| u32::from_be_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&e[i..i + 8]);
        u64::from_be_bytes(a)
    };
    let value = |off: i64| (off >= 0 || u32_at(28) & FLAG_NEGATIVE_VALUE != 0).then_some(off);
    (crc32c::crc32c(&e[..24]) == u32_at(24))
        .then(|| (u32_at(0), u32_at(4), value(u64_at(8) as i64), u64_at(16)))
}

/// What replaying one generation found.
pub(super) struct Replayed {
    /// (key, partition, offset or `None` for a tombstone).
    pub(super) entries: Vec<(u32, u32, Option<i64>)>,
    pub(super) last_seq: u64,
    /// Whether the generation holds every live entry its marker announced. A generation
    /// without a marker is complete if it holds any entry (files written before markers
    /// existed were only ever renamed in complete); an empty one is a prepared file never
    /// switched to, or one whose first page a crash lost.
    pub(super) complete: bool,
}

pub(super) fn replay_generation(
    path: &Path,
    io: &dyn Io,
    after_seq: u64,
) -> std::io::Result<Replayed> {
    let f = io.open(path, false)?;
    let len = usize::try_from(f.len()?).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; len - len % ENTRY];
    let n = read_full_at(&*f, &mut buf, 0)?;
    buf.truncate(n - n % ENTRY);
    let mut out = Replayed {
        entries: Vec::new(),
        last_seq: after_seq,
        complete: false,
    };
    let mut announced: Option<i64> = None;
    for (i, e) in buf.chunks_exact(ENTRY).enumerate() {
        let Some((key, part, off, s)) = decode_entry(e) else {
            break;
        };
        if s <= out.last_seq {
            break;
        }
        out.last_seq = s;
        if i == 0 && key == MARKER_KEY {
            announced = Some(off.unwrap_or(0));
            continue;
        }
        out.entries.push((key, part, off));
    }
    out.complete = match announced {
        Some(n) => out.entries.len() as i64 >= n,
        None => !out.entries.is_empty(),
    };
    Ok(out)
}
