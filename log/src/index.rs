//! Sparse offset and time indexes over memory-mapped files.
//!
//! The offset index maps a relative offset to the byte position of the batch starting there
//! (8-byte entries: relative offset u32 BE, position u32 BE). The time index maps a timestamp
//! to a relative offset (12-byte entries: timestamp i64 BE, relative offset u32 BE), where an
//! entry `(t, r)` means "every record before relative offset `r` has a timestamp `<= t`, and
//! `t` is the largest of them". Both get one entry per ~4 KiB appended.
//!
//! Entries are never written with relative offset 0 (the first batch of a segment starts at
//! position 0 and needs no entry), so a zero entry marks the end of the valid prefix of a
//! preallocated file. The files carry no checksum: on open we keep the longest prefix whose
//! entries strictly increase, and recovery rebuilds them from the segment when in doubt.

#![allow(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{MmapMut, MmapOptions};

use crate::io::{FileHandle, Io};

/// Size of one offset-index entry.
pub const OFFSET_ENTRY: usize = 8;
/// Size of one time-index entry.
pub const TIME_ENTRY: usize = 12;

/// One index file: a mapping of `cap` entries, of which the first `len` are valid.
///
/// Invariant: `len <= cap` and, when `cap > 0`, `map` covers exactly `cap` entries. Every
/// resize creates the new mapping before dropping the old one, so a failed resize leaves a
/// usable index instead of one whose entries cannot be read.
#[derive(Debug)]
struct IndexFile {
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    map: Option<MmapMut>,
    entry: usize,
    len: usize,
    cap: usize,
}

/// Maps the first `bytes` bytes of `file`, which must be at least that long.
fn map_file(file: &dyn FileHandle, bytes: usize) -> io::Result<Option<MmapMut>> {
    if bytes == 0 {
        return Ok(None);
    }
    let f = file.std_file().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "this Io cannot memory-map index files",
        )
    })?;
    // SAFETY: the index files are private to this process (one `Log` per data dir, held by
    // an exclusive flock) and are only modified through this mapping. The file is never
    // shrunk below a live mapping: `trim` maps the smaller size first and drops the larger
    // mapping before calling `set_len`.
    unsafe { MmapOptions::new().len(bytes).map_mut(f) }.map(Some)
}

impl IndexFile {
    /// Opens (creating) the file through `io`. With `prealloc`, the file is grown to hold that
    /// many entries so the active segment can append without remapping.
    fn open(
        io: &dyn Io,
        path: &Path,
        entry: usize,
        prealloc: Option<usize>,
        valid: impl Fn(&[u8], Option<&[u8]>) -> bool,
    ) -> io::Result<Self> {
        let file = io.open(path, true)?;
        let size = file.len()?;
        let on_disk = usize::try_from(size).unwrap_or(usize::MAX) / entry;
        let cap = prealloc.map_or(on_disk, |p| p.max(on_disk));
        if (cap * entry) as u64 != size {
            file.set_len((cap * entry) as u64)?;
        }
        let map = map_file(&*file, cap * entry)?;
        let mut ix = IndexFile {
            path: path.to_path_buf(),
            file,
            map,
            entry,
            len: 0,
            cap,
        };
        let mut prev: Option<usize> = None;
        for i in 0..on_disk.min(cap) {
            if !valid(ix.get(i), prev.map(|p| ix.get(p))) {
                break;
            }
            prev = Some(i);
            ix.len = i + 1;
        }
        Ok(ix)
    }

    /// Entry `i`, or an all-zero entry if `i` is not mapped (never the case for `i < len`).
    fn get(&self, i: usize) -> &[u8] {
        const ZERO: [u8; 16] = [0; 16];
        match &self.map {
            Some(m) if (i + 1) * self.entry <= m.len() => &m[i * self.entry..(i + 1) * self.entry],
            _ => &ZERO[..self.entry],
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        // A full index only makes lookups scan further; it never loses data.
        if self.len >= self.cap {
            return;
        }
        let (i, e) = (self.len, self.entry);
        if let Some(m) = &mut self.map {
            m[i * e..(i + 1) * e].copy_from_slice(bytes);
            self.len += 1;
        }
    }

    /// Makes room for `extra` more entries, growing the file if needed.
    fn reserve(&mut self, extra: usize) -> io::Result<()> {
        let want = self.len + extra;
        if want <= self.cap {
            return Ok(());
        }
        // Growing never invalidates the old mapping, so it stays in use until the new one
        // exists.
        self.file.set_len((want * self.entry) as u64)?;
        if let Some(m) = &self.map {
            m.flush()?;
        }
        let map = map_file(&*self.file, want * self.entry)?;
        self.map = map;
        self.cap = want;
        Ok(())
    }

    /// Forgets entries from `n` on, zeroing them so a reopen does not resurrect them.
    fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        let e = self.entry;
        if let Some(m) = &mut self.map {
            m[n * e..self.len * e].fill(0);
        }
        self.len = n;
    }

    /// Writes the mapping back, shrinks the file to its valid entries and fsyncs it (done at
    /// seal and close).
    fn trim(&mut self) -> io::Result<()> {
        if let Some(m) = &self.map {
            m.flush()?;
        }
        if self.len < self.cap {
            // Map the smaller size while the file is still long, then drop the old mapping,
            // then shrink: if any step fails the index keeps a mapping covering its entries.
            let map = map_file(&*self.file, self.len * self.entry)?;
            self.map = map;
            self.cap = self.len;
            self.file.set_len((self.len * self.entry) as u64)?;
        }
        self.file.sync_data()
    }

    fn flush(&self) -> io::Result<()> {
        match &self.map {
            Some(m) => m.flush_async(),
            None => Ok(()),
        }
    }

    fn sync(&self) -> io::Result<()> {
        if let Some(m) = &self.map {
            m.flush()?;
        }
        self.file.sync_data()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The sparse offset index of one segment.
#[derive(Debug)]
pub struct OffsetIndex(IndexFile);

impl OffsetIndex {
    /// Opens `path` through `io`; `prealloc` entries for an active segment.
    pub fn open(io: &dyn Io, path: &Path, prealloc: Option<usize>) -> io::Result<Self> {
        IndexFile::open(io, path, OFFSET_ENTRY, prealloc, |cur, prev| {
            let (rel, pos) = (u32_at(cur, 0), u32_at(cur, 4));
            match prev {
                None => rel > 0 && pos > 0,
                Some(p) => rel > u32_at(p, 0) && pos > u32_at(p, 4),
            }
        })
        .map(OffsetIndex)
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len
    }
    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }
    /// Entry `i` as (relative offset, position).
    pub fn entry(&self, i: usize) -> (u32, u32) {
        let e = self.0.get(i);
        (u32_at(e, 0), u32_at(e, 4))
    }
    /// The last entry whose relative offset is `<= rel`, or `(0, 0)` (the segment start).
    pub fn lookup(&self, rel: u32) -> (u32, u32) {
        lookup_last_le(self.len(), rel, |i| self.entry(i).0).map_or((0, 0), |i| self.entry(i))
    }
    /// Adds an entry; callers keep relative offsets and positions increasing.
    pub fn push(&mut self, rel: u32, pos: u32) {
        let mut b = [0u8; OFFSET_ENTRY];
        b[..4].copy_from_slice(&rel.to_be_bytes());
        b[4..].copy_from_slice(&pos.to_be_bytes());
        self.0.push(&b);
    }
    /// Number of entries whose position is below `pos` (positions increase, so they are a
    /// prefix).
    fn count_below_pos(&self, pos: u64) -> usize {
        partition_point(self.len(), |i| u64::from(self.entry(i).1) < pos)
    }
    /// The last entry whose position is below `pos`, or `(0, 0)` (the segment start).
    pub fn last_below_pos(&self, pos: u64) -> (u32, u32) {
        self.count_below_pos(pos)
            .checked_sub(1)
            .map_or((0, 0), |i| self.entry(i))
    }
    /// Drops entries whose position is at or beyond `size` (after a truncation).
    pub fn retain_below(&mut self, size: u64) {
        let keep = self.count_below_pos(size);
        self.0.truncate(keep);
    }
    /// Drops every entry.
    pub fn clear(&mut self) {
        self.0.truncate(0);
    }
    /// Shrinks the file to its entries and fsyncs it.
    pub fn trim(&mut self) -> io::Result<()> {
        self.0.trim()
    }
    /// Starts writing the mapping back.
    pub fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
    /// Writes the mapping back and fsyncs the file.
    pub fn sync(&self) -> io::Result<()> {
        self.0.sync()
    }
    /// The file path.
    pub fn path(&self) -> &Path {
        &self.0.path
    }
}

/// The sparse time index of one segment.
#[derive(Debug)]
pub struct TimeIndex(IndexFile);

impl TimeIndex {
    /// Opens `path` through `io`; `prealloc` entries for an active segment.
    pub fn open(io: &dyn Io, path: &Path, prealloc: Option<usize>) -> io::Result<Self> {
        IndexFile::open(io, path, TIME_ENTRY, prealloc, |cur, prev| {
            let (ts, rel) = (i64_at(cur, 0), u32_at(cur, 8));
            match prev {
                None => rel > 0,
                Some(p) => rel > u32_at(p, 8) && ts >= i64_at(p, 0),
            }
        })
        .map(TimeIndex)
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len
    }
    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }
    /// Entry `i` as (max timestamp before, relative offset).
    pub fn entry(&self, i: usize) -> (i64, u32) {
        let e = self.0.get(i);
        (i64_at(e, 0), u32_at(e, 8))
    }
    /// The last entry, if any.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }
    /// A relative offset before which no record has a timestamp `>= ts`: scanning for the
    /// first such record may start there.
    pub fn lookup(&self, ts: i64) -> u32 {
        // Entries' timestamps never decrease, so the ones `< ts` form a prefix.
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid).0 < ts {
                lo = mid + 1
            } else {
                hi = mid
            }
        }
        if lo == 0 { 0 } else { self.entry(lo - 1).1 }
    }
    /// Adds an entry unless it would not increase the relative offset.
    pub fn push(&mut self, max_ts_before: i64, rel: u32) {
        if let Some((t, r)) = self.last()
            && (rel <= r || max_ts_before < t)
        {
            return;
        }
        if rel == 0 {
            return;
        }
        let mut b = [0u8; TIME_ENTRY];
        b[..8].copy_from_slice(&max_ts_before.to_be_bytes());
        b[8..].copy_from_slice(&rel.to_be_bytes());
        self.0.push(&b);
    }
    /// Keeps the longest prefix of entries with a relative offset below `rel` and a
    /// timestamp of at most `max_ts` (`None`: no entry qualifies).
    pub fn retain_below(&mut self, rel: u32, max_ts: Option<i64>) {
        // Relative offsets increase and timestamps never decrease, so the entries to keep
        // are a prefix.
        let keep = partition_point(self.len(), |i| {
            let (t, r) = self.entry(i);
            r < rel && max_ts.is_some_and(|m| t <= m)
        });
        self.0.truncate(keep);
    }
    /// Makes room for one more entry, growing the file if it is full, so the final entry a
    /// seal writes is never dropped.
    pub fn reserve_one(&mut self) -> io::Result<()> {
        self.0.reserve(1)
    }
    /// Drops every entry.
    pub fn clear(&mut self) {
        self.0.truncate(0);
    }
    /// Shrinks the file to its entries and fsyncs it.
    pub fn trim(&mut self) -> io::Result<()> {
        self.0.trim()
    }
    /// Starts writing the mapping back.
    pub fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
    /// Writes the mapping back and fsyncs the file.
    pub fn sync(&self) -> io::Result<()> {
        self.0.sync()
    }
}

/// Binary search: the number of leading indexes `i < n` for which `pred` holds (it must hold
/// for a prefix and fail after it).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) { lo = mid + 1 } else { hi = mid }
    }
    lo
}

/// Binary search: the last index `i < n` with `key(i) <= target`, keys increasing.
fn lookup_last_le(n: usize, target: u32, key: impl Fn(usize) -> u32) -> Option<usize> {
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if key(mid) <= target {
            lo = mid + 1
        } else {
            hi = mid
        }
    }
    lo.checked_sub(1)
}

/// Pure lookup over raw offset-index bytes, for fuzzing: returns the position to start
/// scanning from for `rel`, never panicking whatever the bytes.
pub fn lookup_raw(bytes: &[u8], rel: u32) -> (u32, u32) {
    let n = bytes.len() / OFFSET_ENTRY;
    let entry = |i: usize| {
        let e = &bytes[i * OFFSET_ENTRY..(i + 1) * OFFSET_ENTRY];
        (u32_at(e, 0), u32_at(e, 4))
    };
    // Keep the valid (strictly increasing) prefix, as `OffsetIndex::open` does.
    let mut valid = 0;
    while valid < n {
        let (r, p) = entry(valid);
        let ok = match valid.checked_sub(1).map(entry) {
            None => r > 0 && p > 0,
            Some((pr, pp)) => r > pr && p > pp,
        };
        if !ok {
            break;
        }
        valid += 1;
    }
    lookup_last_le(valid, rel, |i| entry(i).0).map_or((0, 0), entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.index");
        let io = crate::io::RealIo;
        let mut ix = OffsetIndex::open(&io, &p, Some(100)).unwrap();
        for i in 1..=10u32 {
            ix.push(i * 10, i * 4096);
        }
        assert_eq!(ix.lookup(0), (0, 0));
        assert_eq!(ix.lookup(9), (0, 0));
        assert_eq!(ix.lookup(10), (10, 4096));
        assert_eq!(ix.lookup(55), (50, 5 * 4096));
        assert_eq!(ix.lookup(1000), (100, 10 * 4096));
        ix.flush().unwrap();
        drop(ix);
        // Reopen without trimming: the zeroed tail ends the valid prefix.
        let ix = OffsetIndex::open(&io, &p, Some(100)).unwrap();
        assert_eq!(ix.len(), 10);
        let mut ix = OffsetIndex::open(&io, &p, None).unwrap();
        ix.trim().unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 80);
    }

    #[test]
    fn time_index_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = TimeIndex::open(
            &crate::io::RealIo,
            &dir.path().join("0.timeindex"),
            Some(10),
        )
        .unwrap();
        ix.push(100, 5);
        ix.push(200, 9);
        ix.push(150, 12); // ignored: timestamps never go back
        ix.push(300, 15);
        assert_eq!(ix.lookup(50), 0);
        assert_eq!(ix.lookup(101), 5);
        assert_eq!(ix.lookup(250), 9);
        assert_eq!(ix.lookup(1000), 15);
    }
}
