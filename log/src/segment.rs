//! One segment: a `.log` file of v2 batches plus its sparse `.index` and `.timeindex`.
//!
//! A segment is shared between the partition's writer and any number of readers. Readers
//! only look at bytes below `published`, which the writer advances after a batch is fully
//! written (and, under flush `always`, fsynced), so they never see a torn batch.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::batch::{self, HEADER_LEN, LOG_OVERHEAD, RecordBatch};
use crate::index::{OffsetIndex, TimeIndex};
use crate::io::{FileHandle, Io, read_full_at};

/// Read size when walking a segment sequentially.
const WALK_CHUNK: usize = 1 << 20;

/// File name stem of a segment: its base offset on 20 digits.
pub fn file_stem(base: i64) -> String {
    format!("{base:020}")
}

/// Parses `<base:020>.log` into the base offset.
pub fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The two indexes plus the writer's bookkeeping for when the next entry is due.
#[derive(Debug)]
pub struct Indexes {
    /// Offset index.
    pub offsets: OffsetIndex,
    /// Time index.
    pub times: TimeIndex,
    /// Position of the last indexed batch (0 when none).
    pub last_pos: u64,
}

impl Indexes {
    /// Records a batch at `pos`, whose predecessors in the segment have the largest timestamp
    /// `max_ts_before`; adds entries once `interval` bytes passed since the last.
    pub fn note_batch(&mut self, pos: u64, rel: u32, max_ts_before: Option<i64>, interval: u64) {
        if pos > 0 && pos - self.last_pos >= interval && pos <= u64::from(u32::MAX) {
            self.offsets.push(rel, pos as u32);
            if let Some(t) = max_ts_before {
                self.times.push(t, rel);
            }
            self.last_pos = pos;
        }
    }
    /// Re-derives where the next entry is due from the last offset-index entry.
    pub fn reset_last_pos(&mut self) {
        self.last_pos = self
            .offsets
            .len()
            .checked_sub(1)
            .map_or(0, |i| u64::from(self.offsets.entry(i).1));
    }
    /// Drops every entry (before a rebuild).
    pub fn clear(&mut self) {
        self.offsets.clear();
        self.times.clear();
        self.last_pos = 0;
    }
}

/// A batch seen while walking a segment.
#[derive(Debug, Clone, Copy)]
pub struct Walked {
    /// Byte position.
    pub pos: u64,
    /// Base offset.
    pub base: i64,
    /// Last offset.
    pub last: i64,
    /// Max timestamp.
    pub max_ts: i64,
}

/// Where a walk stopped: `pos` is the first byte not accepted; `error` says why if it stopped
/// before the end.
#[derive(Debug)]
pub struct WalkEnd {
    /// First byte not accepted.
    pub pos: u64,
    /// Reason for stopping early.
    pub error: Option<String>,
}

/// One segment.
#[derive(Debug)]
pub struct Segment {
    /// Offset of the first record.
    pub base_offset: i64,
    /// The `.log` file path.
    pub path: PathBuf,
    /// The `.log` file.
    pub file: Arc<dyn FileHandle>,
    indexes: RwLock<Indexes>,
    /// Bytes readers may read.
    pub published: AtomicU64,
    /// Bytes written (the segment size).
    pub written: AtomicU64,
    /// Offset after the last written batch.
    pub end_offset: AtomicI64,
    /// Bytes from 0 whose CRCs were checked in this process.
    pub verified: AtomicU64,
    /// Largest batch timestamp seen, valid only once `max_ts_known` is set. A flag rather
    /// than a sentinel value: a producer may send any i64 as a timestamp, `i64::MIN` included.
    max_ts: AtomicI64,
    max_ts_known: AtomicBool,
    /// When the segment's age starts, for rolling by `segment_ms`: its creation time, or for a
    /// reopened active segment the timestamp of its first batch (see `recovery`).
    pub created_ms: AtomicI64,
    /// Whether the segment was sealed (fsynced, indexes trimmed).
    pub sealed: AtomicBool,
}

fn index_paths(dir: &Path, base: i64) -> (PathBuf, PathBuf, PathBuf) {
    let stem = file_stem(base);
    (
        dir.join(format!("{stem}.log")),
        dir.join(format!("{stem}.index")),
        dir.join(format!("{stem}.timeindex")),
    )
}

impl Segment {
    /// Opens or creates the segment with base offset `base` in `dir`. `prealloc` index entries
    /// are reserved for an active segment; `None` opens it sealed.
    pub fn open(
        io: &dyn Io,
        dir: &Path,
        base: i64,
        prealloc: Option<usize>,
        now_ms: i64,
    ) -> io::Result<Segment> {
        let (log, ix, tix) = index_paths(dir, base);
        let file = io.open(&log, true)?;
        let size = file.len()?;
        let mut indexes = Indexes {
            offsets: OffsetIndex::open(io, &ix, prealloc)?,
            times: TimeIndex::open(io, &tix, prealloc)?,
            last_pos: 0,
        };
        indexes.offsets.retain_below(size);
        indexes.reset_last_pos();
        Ok(Segment {
            base_offset: base,
            path: log,
            file,
            indexes: RwLock::new(indexes),
            published: AtomicU64::new(size),
            written: AtomicU64::new(size),
            end_offset: AtomicI64::new(base),
            verified: AtomicU64::new(0),
            max_ts: AtomicI64::new(i64::MIN),
            max_ts_known: AtomicBool::new(false),
            created_ms: AtomicI64::new(now_ms),
            sealed: AtomicBool::new(prealloc.is_none()),
        })
    }

    /// Read access to the indexes.
    pub fn indexes(&self) -> RwLockReadGuard<'_, Indexes> {
        self.indexes.read().unwrap_or_else(|e| e.into_inner())
    }
    /// Write access to the indexes.
    pub fn indexes_mut(&self) -> RwLockWriteGuard<'_, Indexes> {
        self.indexes.write().unwrap_or_else(|e| e.into_inner())
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }
    /// Relative offset of `offset` in this segment, saturated to u32.
    pub fn rel(&self, offset: i64) -> u32 {
        u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX)
    }
    /// Notes a batch's max timestamp (writer and recovery side).
    pub fn note_max_ts(&self, ts: Option<i64>) {
        if let Some(ts) = ts {
            // Value first, then the flag: a reader that sees the flag sees a value at least
            // as large as this one.
            self.max_ts.fetch_max(ts, Ordering::AcqRel);
            self.max_ts_known.store(true, Ordering::Release);
        }
    }
    /// The cached max timestamp; `None` if not known yet (or the segment is empty).
    pub fn cached_max_ts(&self) -> Option<i64> {
        self.max_ts_known
            .load(Ordering::Acquire)
            .then(|| self.max_ts.load(Ordering::Acquire))
    }

    /// Largest timestamp in the segment (`None` if it is empty), computed from the time
    /// index's last entry plus a walk of the batch headers after it (a sealed segment's last
    /// entry covers everything). Fails if a header on the way is damaged.
    pub fn max_timestamp(&self) -> io::Result<Option<i64>> {
        if let Some(t) = self.cached_max_ts() {
            return Ok(Some(t));
        }
        let end_rel = self.end_offset.load(Ordering::Acquire) - self.base_offset;
        let (mut max, pos) = {
            let ix = self.indexes();
            match ix.times.last() {
                // The final entry of a sealed segment covers every batch.
                Some((t, rel)) if i64::from(rel) == end_rel => {
                    drop(ix);
                    self.note_max_ts(Some(t));
                    return Ok(Some(t));
                }
                Some((t, rel)) => (Some(t), u64::from(ix.offsets.lookup(rel).1)),
                None => (None, 0),
            }
        };
        let end = self.walk(pos, self.size(), false, |b| {
            max = Some(max.map_or(b.max_ts, |m: i64| m.max(b.max_ts)));
            Ok(())
        })?;
        if let Some(reason) = end.error {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} at byte {}: {reason}", self.path.display(), end.pos),
            ));
        }
        self.note_max_ts(max);
        Ok(max)
    }

    /// Reads the fixed header of the batch at `pos`, if a whole header lies below `end`.
    pub fn read_header(&self, pos: u64, end: u64) -> io::Result<Option<[u8; HEADER_LEN]>> {
        if pos + HEADER_LEN as u64 > end {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        let n = read_full_at(&*self.file, &mut h, pos)?;
        Ok((n == HEADER_LEN).then_some(h))
    }

    /// Walks the batches in `[from, end)`. With `verify`, each batch's CRC and record count are
    /// checked. `f` may stop the walk with a reason. Never reads past `end`.
    pub fn walk(
        &self,
        from: u64,
        end: u64,
        verify: bool,
        mut f: impl FnMut(&Walked) -> Result<(), String>,
    ) -> io::Result<WalkEnd> {
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_start = from;
        let mut pos = from;
        // Ensures buf holds [pos, pos + need) if the file has it; returns what is available.
        let fill =
            |buf: &mut Vec<u8>, buf_start: &mut u64, pos: u64, need: usize| -> io::Result<usize> {
                let have_end = *buf_start + buf.len() as u64;
                if pos >= *buf_start && pos + need as u64 <= have_end {
                    return Ok(need);
                }
                let want = (need.max(WALK_CHUNK) as u64).min(end.saturating_sub(pos)) as usize;
                buf.resize(want, 0);
                let n = read_full_at(&*self.file, buf, pos)?;
                buf.truncate(n);
                *buf_start = pos;
                Ok(n.min(need))
            };
        while pos < end {
            let off = |p: u64, s: u64| (p - s) as usize;
            if fill(&mut buf, &mut buf_start, pos, LOG_OVERHEAD)? < LOG_OVERHEAD {
                return Ok(WalkEnd {
                    pos,
                    error: Some("torn batch header".into()),
                });
            }
            let size = match batch::batch_size(&buf[off(pos, buf_start)..]) {
                Ok(s) => s,
                Err(e) => {
                    return Ok(WalkEnd {
                        pos,
                        error: Some(e.to_string()),
                    });
                }
            };
            if pos + size as u64 > end {
                return Ok(WalkEnd {
                    pos,
                    error: Some(format!(
                        "torn batch: {size} bytes announced, {} left",
                        end - pos
                    )),
                });
            }
            let need = if verify { size } else { HEADER_LEN };
            if fill(&mut buf, &mut buf_start, pos, need)? < need {
                return Ok(WalkEnd {
                    pos,
                    error: Some("file shorter than its batches".into()),
                });
            }
            let start = off(pos, buf_start);
            let view = &buf[start..(start + need)];
            let parsed = if verify {
                RecordBatch::parse(view).and_then(|(b, _)| {
                    b.validate()
                        .map(|()| (b.base_offset(), b.last_offset(), b.max_timestamp()))
                })
            } else {
                // Header-only: the CRC is checked later, when a reader first serves the batch.
                check_header(view)
            };
            let b = match parsed {
                Ok(b) => b,
                Err(e) => {
                    return Ok(WalkEnd {
                        pos,
                        error: Some(e.to_string()),
                    });
                }
            };
            let w = Walked {
                pos,
                base: b.0,
                last: b.1,
                max_ts: b.2,
            };
            if let Err(reason) = f(&w) {
                return Ok(WalkEnd {
                    pos,
                    error: Some(reason),
                });
            }
            pos += size as u64;
        }
        Ok(WalkEnd { pos, error: None })
    }

    /// fsyncs the log and trims the indexes, recording the final time-index entry so the
    /// segment's max timestamp is known without a scan. Idempotent.
    ///
    /// The final entry is the on-disk proof that the segment was sealed, and recovery trusts
    /// a sealed segment without reading it, so it is written only after the `.log` fsync
    /// succeeded, and it must not be dropped: room is made for it, and entries that would make
    /// `TimeIndex::push` refuse it (left by an index built with other settings) are cut first.
    pub fn seal(&self) -> io::Result<()> {
        self.file.sync_data()?;
        let end_rel = self.rel(self.end_offset.load(Ordering::Acquire));
        let max = self.cached_max_ts();
        let mut ix = self.indexes_mut();
        if let Some(max) = max {
            ix.times.retain_below(end_rel, Some(max));
            ix.times.reserve_one()?;
            ix.times.push(max, end_rel);
            if ix.times.last() != Some((max, end_rel)) {
                return Err(io::Error::other(format!(
                    "{}: the final time-index entry could not be written",
                    self.path.display()
                )));
            }
        }
        ix.offsets.trim()?;
        ix.times.trim()?;
        self.sealed.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether the time index ends with the final entry a seal writes for a segment ending
    /// at `end_offset`.
    pub fn has_seal_entry(&self, end_offset: i64) -> bool {
        self.indexes()
            .times
            .last()
            .is_some_and(|(_, rel)| i64::from(rel) == end_offset - self.base_offset)
    }

    /// Paths of the three files.
    pub fn paths(&self, dir: &Path) -> [PathBuf; 3] {
        Self::file_paths(dir, self.base_offset)
    }

    /// Paths of the three files of the segment with base offset `base` in `dir`.
    pub fn file_paths(dir: &Path, base: i64) -> [PathBuf; 3] {
        let (a, b, c) = index_paths(dir, base);
        [a, b, c]
    }
}

/// Header-only validation: (base offset, last offset, max timestamp).
fn check_header(h: &[u8]) -> Result<(i64, i64, i64), crate::error::BatchError> {
    let magic = h[16] as i8;
    if magic != 2 {
        return Err(crate::error::BatchError::BadMagic(magic));
    }
    let i64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&h[at..at + 8]);
        i64::from_be_bytes(a)
    };
    let delta = i32::from_be_bytes([h[23], h[24], h[25], h[26]]);
    let count = i32::from_be_bytes([h[57], h[58], h[59], h[60]]);
    batch::check_record_count(count, delta)?;
    let base = i64_at(0);
    Ok((base, base.wrapping_add(i64::from(delta)), i64_at(35)))
}
