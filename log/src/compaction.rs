//! Compaction by key (Kafka's `cleanup.policy=compact`): rewriting sealed segments so that
//! only the latest record of each key survives.
//!
//! The rules (see `docs/log-format.md`, "Compaction"):
//!
//! - Only sealed segments wholly below the last stable offset are rewritten; the active
//!   segment (Kafka's dirty head) and open transactions are never touched.
//! - The latest offset of each key is taken over the whole partition below the last stable
//!   offset, the active segment included; control batches, records of aborted transactions
//!   and compressed batches do not count.
//! - A record survives if it is the latest of its key, has a null key (written before the
//!   topic was compacted), sits in a batch newer than `min_compaction_lag_ms`, or is in a
//!   compressed batch (the log cannot decompress; such batches are kept whole). A tombstone
//!   (null value) that is the latest of its key survives until `delete_retention_ms` after
//!   the first pass that saw its segment sealed (that time is kept in `cleaner-first-seen`). Records of aborted transactions go.
//! - Offsets never change. A batch that keeps some records keeps its header (base offset,
//!   lastOffsetDelta, producer fields, attributes, firstTimestamp) and loses the others, as
//!   Kafka's cleaner does; maxTimestamp, recordsCount, length and CRC are recomputed. A run
//!   of batches that lose every record becomes one empty batch covering the same offsets,
//!   with no producer and timestamp -1, so batches stay contiguous and readers, indexes and
//!   recovery need no notion of gaps. Control batches are kept as they are.
//! - The rewrite: the cleaned segment is written to `<base>.log.cleaned` and fsynced; the
//!   old indexes are removed (directory fsync), the cleaned file renamed over the `.log`
//!   (directory fsync), new indexes built and sealed, and the new segment swapped into the
//!   segment list. A crash leaves the old or the new `.log`; a segment found without its
//!   seal entry has its indexes rebuilt at open, and `.cleaned` leftovers are removed.
//!   Readers that hold the old segment keep reading the unlinked file through its handle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::batch::{self, CRC_START, Compression, HEADER_LEN, RecordBatch};
use crate::checkpoint::Point;
use crate::error::{StorageError, io_at};
use crate::io::{FileHandle, Io, read_full_at, write_all_at};
use crate::partition::{Partition, lock};
use crate::producers::AbortedTxn;
use crate::segment::Segment;

/// Suffix of a cleaned segment being written; removed at open if a crash left one.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Whether the pass looked at the partition at all (it skips when no segment was sealed
    /// since the last pass and no tombstone or lagging record became due).
    pub ran: bool,
    /// Sealed segments examined.
    pub segments_examined: usize,
    /// Segments rewritten.
    pub segments_rewritten: usize,
    /// Records removed.
    pub records_removed: u64,
    /// Size of the rewritten segments before.
    pub bytes_before: u64,
    /// Size of the rewritten segments after.
    pub bytes_after: u64,
    /// Offset after the last segment examined: records below it were compacted, those at or
    /// after it were not looked at (Kafka's first dirty offset). The highest over partitions
    /// in a [`Log`](crate::Log)-wide report.
    pub cleaned_up_to: i64,
}

impl CompactionReport {
    pub(crate) fn add(&mut self, o: &CompactionReport) {
        self.ran |= o.ran;
        self.segments_examined += o.segments_examined;
        self.segments_rewritten += o.segments_rewritten;
        self.records_removed += o.records_removed;
        self.bytes_before += o.bytes_before;
        self.bytes_after += o.bytes_after;
        self.cleaned_up_to = self.cleaned_up_to.max(o.cleaned_up_to);
    }
}

/// Per-partition cleaner bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct CleanerState {
    /// End offset of the sealed segments the last pass examined.
    last_end: Option<i64>,
    /// Earliest time a kept tombstone or lagging record becomes removable.
    next_due_ms: Option<i64>,
    /// When a pass first saw each segment (by base offset) sealed: the start of its
    /// tombstones' `delete_retention_ms`. Persisted in [`FIRST_SEEN_FILE`] after each pass
    /// that changed it; a crash before that only makes tombstones live longer.
    first_seen_ms: HashMap<i64, i64>,
    /// Whether `first_seen_ms` was read from its file.
    loaded: bool,
}

/// Per-partition file of the segments' "first seen" times: a line `rill-first-seen 1`, then
/// one line `<base offset> <ms>` per segment.
pub(crate) const FIRST_SEEN_FILE: &str = "cleaner-first-seen";

fn decode_first_seen(text: &str) -> Option<HashMap<i64, i64>> {
    let mut lines = text.lines();
    if lines.next()? != "rill-first-seen 1" {
        return None;
    }
    lines
        .map(|l| {
            let (b, t) = l.split_once(' ')?;
            Some((b.parse().ok()?, t.parse().ok()?))
        })
        .collect()
}

fn encode_first_seen(m: &HashMap<i64, i64>) -> Vec<u8> {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_unstable();
    let mut s = String::from("rill-first-seen 1\n");
    for (b, t) in v {
        s.push_str(&format!("{b} {t}\n"));
    }
    s.into_bytes()
}

/// The latest offset of each key below the last stable offset.
type KeyMap = HashMap<Vec<u8>, i64>;

impl Partition {
    /// Compacts the partition as of `now_ms` if its topic's cleanup policy compacts (see the
    /// module docs for the rules). Passes are serialized with each other and with retention.
    pub fn compact(&self, now_ms: i64) -> Result<CompactionReport, StorageError> {
        let mut report = CompactionReport::default();
        if !self.config.cleanup_policy.compacts() || self.is_failed() {
            return Ok(report);
        }
        // The flusher seals rolled segments; do it now rather than wait for it, so this pass
        // can clean them.
        self.seal_rolled()?;
        let _pass = lock(&self.retention);
        let _no_seals = self.lock_maint();
        let owed = self.seal_owed();
        let segs = self.segs().clone();
        let lso = self.last_stable_offset();
        let candidates: Vec<Arc<Segment>> = segs[..segs.len().saturating_sub(1)]
            .iter()
            .take_while(|s| {
                s.sealed.load(Ordering::Acquire)
                    && !owed.iter().any(|o| Arc::ptr_eq(o, s))
                    && s.end_offset.load(Ordering::Acquire) <= lso
            })
            .cloned()
            .collect();
        let Some(end) = candidates
            .last()
            .map(|s| s.end_offset.load(Ordering::Acquire))
        else {
            return Ok(report);
        };
        {
            let mut st = lock(&self.cleaner);
            if !st.loaded {
                st.loaded = true;
                // A missing or unreadable file only restarts the tombstones' clocks.
                if let Ok(text) = std::fs::read_to_string(self.dir.join(FIRST_SEEN_FILE)) {
                    st.first_seen_ms = decode_first_seen(&text).unwrap_or_default();
                }
            }
            let new_segments = st.last_end.is_none_or(|e| end > e);
            let due = st.next_due_ms.is_some_and(|t| now_ms >= t);
            if !new_segments && !due {
                return Ok(report);
            }
        }
        report.ran = true;
        report.cleaned_up_to = end;
        let aborted = self.aborted_transactions(self.log_start_offset(), lso);
        let keys = self.key_map(lso, &aborted)?;
        let mut next_due: Option<i64> = None;
        for seg in &candidates {
            let seen = *lock(&self.cleaner)
                .first_seen_ms
                .entry(seg.base_offset)
                .or_insert(now_ms);
            let rules = Rules {
                keys: &keys,
                aborted: &aborted,
                now_ms,
                lag_ms: i64::try_from(self.config.min_compaction_lag_ms).unwrap_or(i64::MAX),
                tombstone_due_ms: seen.saturating_add(
                    i64::try_from(self.config.delete_retention_ms).unwrap_or(i64::MAX),
                ),
            };
            report.segments_examined += 1;
            let mut output = Output::new(&*self.ctx.io, cleaned_path(&seg.path));
            let cleaned = match self.clean_segment(seg, &rules, &mut output) {
                Ok(c) => c,
                Err(e) => {
                    output.discard();
                    return Err(e);
                }
            };
            if let Some(t) = cleaned.next_due_ms {
                next_due = Some(next_due.map_or(t, |n| n.min(t)));
            }
            if cleaned.removed == 0 {
                output.discard();
                continue;
            }
            report.segments_rewritten += 1;
            report.records_removed += cleaned.removed;
            report.bytes_before += seg.size();
            report.bytes_after += output.len();
            self.swap_in(seg, output)?;
        }
        let mut st = lock(&self.cleaner);
        st.last_end = Some(end);
        st.next_due_ms = next_due;
        let live: Vec<i64> = self.segs().iter().map(|s| s.base_offset).collect();
        st.first_seen_ms.retain(|b, _| live.contains(b));
        let bytes = encode_first_seen(&st.first_seen_ms);
        drop(st);
        let path = self.dir.join(FIRST_SEEN_FILE);
        let unchanged = std::fs::read(&path).is_ok_and(|old| old == bytes);
        if !unchanged {
            // Renamed into place but not fsynced: losing it in a crash only restarts the
            // clocks (tombstones kept longer), and a pass costs no fsync when it removes
            // nothing.
            let tmp = path.with_extension("tmp");
            let io = &*self.ctx.io;
            io.open(&tmp, true)
                .and_then(|f| {
                    f.set_len(0)?;
                    write_all_at(&*f, &bytes, 0)
                })
                .and_then(|()| io.rename(&tmp, &path))
                .map_err(io_at(&path))?;
        }
        Ok(report)
    }

    /// The latest offset of every key below `lso`, skipping control batches, aborted
    /// records and compressed batches.
    fn key_map(&self, lso: i64, aborted: &[AbortedTxn]) -> Result<KeyMap, StorageError> {
        let mut keys = KeyMap::new();
        let mut buf = Vec::new();
        let mut at = self.log_start_offset();
        while at < lso {
            let r = self
                .read_into_until(at, 1 << 20, lso, &mut buf)
                .map_err(|e| StorageError::Io {
                    path: self.dir.clone(),
                    source: std::io::Error::other(format!("compaction: {e}")),
                })?;
            if r.len == 0 || r.next_offset <= at {
                break;
            }
            for b in batch::batches(&buf[..r.len]) {
                let Ok(b) = b else { break };
                if b.is_control()
                    || b.compression() != Compression::None
                    || aborted.iter().any(|a| a.covers(&b))
                {
                    continue;
                }
                for rec in b.records() {
                    let Ok(rec) = rec else { break };
                    if let Some(k) = rec.key
                        && rec.offset < lso
                    {
                        match keys.get_mut(k) {
                            Some(o) => *o = (*o).max(rec.offset),
                            None => {
                                keys.insert(k.to_vec(), rec.offset);
                            }
                        }
                    }
                }
            }
            at = r.next_offset;
        }
        Ok(keys)
    }

    /// The cleaned bytes of one sealed segment.
    fn clean_segment(
        &self,
        seg: &Segment,
        rules: &Rules<'_>,
        out_file: &mut Output<'_>,
    ) -> Result<Cleaned, StorageError> {
        let size = seg.size();
        let mut positions = Vec::new();
        let walked = seg
            .walk(0, size, false, |w| {
                positions.push(w.pos);
                Ok(())
            })
            .map_err(io_at(&seg.path))?;
        if let Some(reason) = walked.error {
            return Err(io_at(&seg.path)(std::io::Error::other(format!(
                "compaction stopped at byte {}: {reason}",
                walked.pos
            ))));
        }
        positions.push(walked.pos);
        let mut out = Cleaned::default();
        let mut filler: Option<(i64, i64)> = None;
        let mut buf = Vec::new();
        for w in positions.windows(2) {
            let (pos, next) = (w[0], w[1]);
            buf.resize((next - pos) as usize, 0);
            read_full_at(&*seg.file, &mut buf, pos).map_err(io_at(&seg.path))?;
            let (b, _) = RecordBatch::parse(&buf).map_err(|e| {
                io_at(&seg.path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                ))
            })?;
            b.validate().map_err(|e| {
                io_at(&seg.path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("compaction: batch at byte {pos}: {e}"),
                ))
            })?;
            match rules.filter(&b, &mut out) {
                Kept::All => {
                    flush_filler(&mut filler, &mut out_file.buf);
                    out_file.buf.extend_from_slice(b.as_bytes());
                }
                Kept::None => {
                    filler = Some(match filler {
                        Some((first, _)) => (first, b.last_offset()),
                        None => (b.base_offset(), b.last_offset()),
                    });
                }
                Kept::Some { records, max_ts } => {
                    flush_filler(&mut filler, &mut out_file.buf);
                    rebuild(&b, &records, max_ts, &mut out_file.buf);
                }
            }
            out_file.maybe_spill().map_err(io_at(&out_file.path))?;
        }
        flush_filler(&mut filler, &mut out_file.buf);
        Ok(out)
    }

    /// Replaces `old` on disk and in the segment list with the cleaned segment in `output`.
    fn swap_in(&self, old: &Arc<Segment>, mut output: Output<'_>) -> Result<(), StorageError> {
        let io = &*self.ctx.io;
        let [log, ix, tix] = old.paths(&self.dir);
        let tmp = output.path.clone();
        output.finish().map_err(io_at(&tmp))?;
        // The old indexes go first, durably: a crash from here on finds a `.log` (old or
        // new) without its seal entry, whose indexes recovery rebuilds from the batches. New
        // indexes beside the old `.log`, or old ones beside the new, can never be seen.
        for p in [&ix, &tix] {
            match io.remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(p)(e)),
            }
        }
        io.sync_dir(&self.dir).map_err(io_at(&self.dir))?;
        io.rename(&tmp, &log).map_err(io_at(&log))?;
        io.sync_dir(&self.dir).map_err(io_at(&self.dir))?;
        let seg = Segment::open(
            io,
            &self.dir,
            old.base_offset,
            Some(self.prealloc()),
            old.created_ms.load(Ordering::Acquire),
        )
        .map_err(io_at(&log))?;
        let end = old.end_offset.load(Ordering::Acquire);
        seg.end_offset.store(end, Ordering::Release);
        let scan = crate::recovery::scan(
            &seg,
            Point::segment_start(seg.base_offset),
            self.ctx.index_interval,
            false,
        )
        .map_err(io_at(&log))?;
        if scan.error.is_some() || scan.next != end {
            return Err(io_at(&log)(std::io::Error::other(format!(
                "cleaned segment ends at offset {} ({:?}), {end} expected",
                scan.next, scan.error
            ))));
        }
        // Every batch was CRC-checked when read or computed when written.
        seg.verified.store(seg.size(), Ordering::Release);
        seg.seal().map_err(io_at(&log))?;
        io.sync_dir(&self.dir).map_err(io_at(&self.dir))?;
        let seg = Arc::new(seg);
        let mut list = self.segments.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = list.iter_mut().find(|s| Arc::ptr_eq(s, old)) {
            *slot = seg;
        }
        Ok(())
    }
}

/// Bytes of a cleaned segment buffered before they are written to its `.cleaned` file.
const SPILL_BYTES: usize = 4 << 20;

/// `<base>.log.cleaned` beside `<base>.log`.
fn cleaned_path(log: &Path) -> PathBuf {
    let name = log.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    log.with_file_name(format!("{name}{CLEANED_SUFFIX}"))
}

/// A cleaned segment being written: buffered, and spilled to its `.cleaned` file whenever
/// the buffer passes [`SPILL_BYTES`], so memory stays bounded whatever the segment size.
/// A segment with nothing to remove and under that size never touches the disk.
struct Output<'a> {
    io: &'a dyn Io,
    path: PathBuf,
    file: Option<Arc<dyn FileHandle>>,
    buf: Vec<u8>,
    written: u64,
}

impl<'a> Output<'a> {
    fn new(io: &'a dyn Io, path: PathBuf) -> Self {
        Output {
            io,
            path,
            file: None,
            buf: Vec::new(),
            written: 0,
        }
    }

    fn len(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    fn maybe_spill(&mut self) -> std::io::Result<()> {
        if self.buf.len() >= SPILL_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> std::io::Result<()> {
        let f = match &self.file {
            Some(f) => f.clone(),
            None => {
                let f = self.io.open(&self.path, true)?;
                f.set_len(0)?;
                self.file = Some(f.clone());
                f
            }
        };
        write_all_at(&*f, &self.buf, self.written)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered and fsyncs the file.
    fn finish(&mut self) -> std::io::Result<()> {
        self.spill()?;
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Removes the file, if one was started (a leftover is removed at open anyway).
    fn discard(self) {
        if self.file.is_some() {
            let _ = self.io.remove_file(&self.path);
        }
    }
}

/// What a pass keeps, for one segment.
struct Rules<'a> {
    keys: &'a KeyMap,
    aborted: &'a [AbortedTxn],
    now_ms: i64,
    lag_ms: i64,
    /// When the segment's tombstones may go.
    tombstone_due_ms: i64,
}

/// One segment's cleaned bytes.
#[derive(Default)]
struct Cleaned {
    removed: u64,
    next_due_ms: Option<i64>,
}

impl Cleaned {
    fn due_at(&mut self, t: i64) {
        self.next_due_ms = Some(self.next_due_ms.map_or(t, |n| n.min(t)));
    }
}

/// Which records of a batch survive.
enum Kept<'a> {
    All,
    None,
    Some { records: Vec<&'a [u8]>, max_ts: i64 },
}

impl Rules<'_> {
    fn filter<'b>(&self, b: &RecordBatch<'b>, out: &mut Cleaned) -> Kept<'b> {
        if b.is_control() || b.compression() != Compression::None {
            return Kept::All;
        }
        let count = u64::try_from(b.record_count()).unwrap_or(0);
        if self.aborted.iter().any(|a| a.covers(b)) {
            out.removed += count;
            return Kept::None;
        }
        if count == 0 {
            return Kept::None;
        }
        let lag_end = b.max_timestamp().saturating_add(self.lag_ms);
        if self.lag_ms > 0 && lag_end > self.now_ms {
            out.due_at(lag_end);
            return Kept::All;
        }
        let mut records = Vec::new();
        let mut max_ts = i64::MIN;
        for r in b.records_with_bytes() {
            let Ok((rec, bytes)) = r else {
                // Unreadable records are left alone rather than lost.
                return Kept::All;
            };
            let keep = match rec.key {
                None => true,
                Some(k) => {
                    let latest = self.keys.get(k).is_none_or(|&o| o <= rec.offset);
                    if latest && rec.value.is_none() {
                        if self.now_ms < self.tombstone_due_ms {
                            out.due_at(self.tombstone_due_ms);
                            true
                        } else {
                            false
                        }
                    } else {
                        latest
                    }
                }
            };
            if keep {
                records.push(bytes);
                max_ts = max_ts.max(rec.timestamp_ms);
            }
        }
        let removed = count - records.len() as u64;
        out.removed += removed;
        match (removed, records.len()) {
            (0, _) => Kept::All,
            (_, 0) => Kept::None,
            _ => Kept::Some { records, max_ts },
        }
    }
}

/// Writes `b` with only `records` (the raw bytes of some of its records): same header but
/// for maxTimestamp (the kept records' largest, unless log-append time), recordsCount,
/// length and CRC.
fn rebuild(b: &RecordBatch<'_>, records: &[&[u8]], max_ts: i64, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&b.as_bytes()[..HEADER_LEN]);
    for r in records {
        out.extend_from_slice(r);
    }
    let batch = &mut out[at..];
    let len = i32::try_from(batch.len() - batch::LOG_OVERHEAD).unwrap_or(i32::MAX);
    batch[8..12].copy_from_slice(&len.to_be_bytes());
    if b.attributes() & batch::TIMESTAMP_TYPE_LOG_APPEND == 0 {
        batch[35..43].copy_from_slice(&max_ts.to_be_bytes());
    }
    let n = i32::try_from(records.len()).unwrap_or(i32::MAX);
    batch[57..61].copy_from_slice(&n.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Writes the pending run of emptied batches as one empty batch over `[first, last]`.
fn flush_filler(run: &mut Option<(i64, i64)>, out: &mut Vec<u8>) {
    let Some((first, last)) = run.take() else {
        return;
    };
    let at = out.len();
    out.resize(at + HEADER_LEN, 0);
    let h = &mut out[at..];
    h[0..8].copy_from_slice(&first.to_be_bytes());
    h[8..12].copy_from_slice(&((HEADER_LEN - batch::LOG_OVERHEAD) as i32).to_be_bytes());
    h[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    h[16] = 2;
    // attributes 0: uncompressed, create time, not transactional, not control.
    let delta = i32::try_from(last - first).unwrap_or(i32::MAX);
    h[23..27].copy_from_slice(&delta.to_be_bytes());
    h[27..35].copy_from_slice(&(-1i64).to_be_bytes());
    h[35..43].copy_from_slice(&(-1i64).to_be_bytes());
    h[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    h[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    h[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    h[57..61].copy_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&h[CRC_START..]);
    h[17..21].copy_from_slice(&crc.to_be_bytes());
}
