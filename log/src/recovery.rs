//! Opening a partition: what to trust, what to scan, what to cut.
//!
//! The rules, per segment in base-offset order (see `docs/log-format.md`, "Recovery"):
//!
//! - A **sealed** segment (its time index ends with the final entry `seal` writes after the
//!   fsync) is trusted without reading it.
//! - Everything before the partition's **recovery checkpoint** is durable and was valid when
//!   the checkpoint was taken. The checkpoint's position is checked by walking the batch
//!   headers from the last offset-index entry before it; an unsealed segment before it only
//!   lost its indexes, which are rebuilt from the headers.
//! - Everything after the checkpoint (or everything unsealed, without one) is CRC-scanned and
//!   cut at the first invalid byte.
//! - Nothing that may hold acknowledged data is ever deleted to "fix" damage found in the
//!   middle of the log: the damage is reported, left in place, and reads that reach it fail
//!   with `ReadError::Corrupt`. Later segments are dropped only when the damage can only be a
//!   write torn by an OS crash: after the checkpoint, under `never`/`interval`, with no sealed
//!   segment after it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::checkpoint::Point;
use crate::compaction::CLEANED_SUFFIX;
use crate::config::{FlushPolicy, TopicConfig};
use crate::index::TimeIndex;
use crate::partition::{Ctx, Partition, Recovered, Writer, now_ms, prealloc_entries};
use crate::producers::ProducerState;
use crate::segment::{Segment, Walked, parse_log_name};

/// What recovery did to a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryAction {
    /// The segment was cut at `position`, removing this many bytes of torn or invalid tail
    /// (or the whole segment file was removed, when `position` is 0).
    Truncated {
        /// Bytes removed.
        bytes_removed: u64,
    },
    /// The segment's indexes were missing or incomplete and were rebuilt.
    IndexRebuilt,
    /// Damage was found where cutting it off could lose durable data: the segment is kept as
    /// it is, and reads that reach the damage fail with `ReadError::Corrupt`.
    Reported,
    /// The partition's recovery checkpoint did not match its files, so the partition was
    /// recovered as if it had none (unsealed segments scanned from their start).
    CheckpointIgnored,
    /// A file left by an interrupted compaction (`.cleaned`) was removed; the segment it
    /// would have replaced is whole.
    LeftoverRemoved,
}

/// One finding of [`Log::open`](crate::Log::open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryEvent {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Segment `.log` file.
    pub segment: PathBuf,
    /// Byte position of the first invalid byte (or 0 for an index rebuild).
    pub position: u64,
    /// What was wrong.
    pub reason: String,
    /// What was done.
    pub action: RecoveryAction,
}

impl std::fmt::Display for RecoveryEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.action {
            RecoveryAction::Truncated { bytes_removed } => {
                format!("truncated {bytes_removed} bytes at byte {}", self.position)
            }
            RecoveryAction::IndexRebuilt => "rebuilt the indexes".to_string(),
            RecoveryAction::Reported => format!(
                "left damage at byte {} in place (reads of it fail)",
                self.position
            ),
            RecoveryAction::CheckpointIgnored => "ignored the recovery checkpoint".to_string(),
            RecoveryAction::LeftoverRemoved => "removed the leftover file".to_string(),
        };
        write!(
            f,
            "{}/{}: {} of {}: {}",
            self.topic,
            self.partition,
            what,
            self.segment.display(),
            self.reason
        )
    }
}

/// What was found of the recovery checkpoint file at open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointStatus {
    /// There was none (a new data dir, or one written before checkpoints existed).
    #[default]
    Missing,
    /// It was read and used.
    Loaded,
    /// It was damaged or of an unknown version, and ignored.
    Invalid(String),
}

/// Totals of one [`Log::open`](crate::Log::open): how much recovery had to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryStats {
    /// Bytes whose batches were fully validated (size, CRC-32C, offsets): what a crash costs.
    pub bytes_scanned: u64,
    /// Bytes whose batch headers alone were walked (checkpoint checks, index rebuilds).
    pub bytes_walked: u64,
    /// Partitions opened.
    pub partitions: usize,
    /// Partitions whose recovery started from a matching checkpoint point.
    pub partitions_from_checkpoint: usize,
    /// The checkpoint file.
    pub checkpoint: CheckpointStatus,
}

/// Position of a segment relative to the partition's checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Entirely before the checkpoint: durable.
    Before,
    /// Holds the checkpoint's position.
    At,
    /// After it, or there is no checkpoint.
    After,
}

/// A partition opened by recovery, with what recovery found.
#[derive(Debug)]
pub(crate) struct Opened {
    pub partition: Partition,
    pub events: Vec<RecoveryEvent>,
    pub bytes_scanned: u64,
    pub bytes_walked: u64,
    pub from_checkpoint: bool,
    /// The checkpoint on disk no longer describes this partition (it was ignored, or
    /// recovery cut below it), so it must be rewritten before anything is appended.
    pub rewrite_checkpoint: bool,
    /// The partition directory was created, so its parent must be fsynced.
    pub created_dir: bool,
}

/// One partition to open.
#[derive(Debug)]
pub(crate) struct Job {
    pub topic: String,
    pub id: u32,
    pub dir: PathBuf,
    pub config: TopicConfig,
    pub checkpoint: Option<Point>,
    /// The partition's producer state as of an offset, from `<data>/producer-state`.
    pub producers: Option<(ProducerState, i64)>,
}

/// Opens every job, on up to `threads` threads (recovery is CPU-bound CRC work on data in the
/// page cache, or I/O-bound after a machine crash; either way partitions are independent).
/// Results come back in job order.
pub(crate) fn open_all(
    jobs: Vec<Job>,
    ctx: &Ctx,
    threads: usize,
) -> Vec<(PathBuf, std::io::Result<Opened>)> {
    let n = jobs.len();
    let results: Vec<Mutex<Option<std::io::Result<Opened>>>> =
        (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { break };
            let r = open_partition(job, ctx.clone());
            *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
    };
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }
    jobs.into_iter()
        .zip(results)
        .map(|(job, r)| {
            let r = r
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(std::io::Error::other("partition was not opened")));
            (job.dir, r)
        })
        .collect()
}

/// Collects events and counters while one partition is opened.
struct Findings<'a> {
    job: &'a Job,
    events: Vec<RecoveryEvent>,
    scanned: u64,
    walked: u64,
    rewrite: bool,
}

impl Findings<'_> {
    fn event(&mut self, segment: &Path, position: u64, reason: String, action: RecoveryAction) {
        if matches!(
            action,
            RecoveryAction::Reported | RecoveryAction::Truncated { .. }
        ) {
            tracing::warn!(topic = %self.job.topic, partition = self.job.id, segment = %segment.display(), position, %reason, ?action, "recovery");
        }
        self.events.push(RecoveryEvent {
            topic: self.job.topic.clone(),
            partition: self.job.id,
            segment: segment.into(),
            position,
            reason,
            action,
        });
    }
}

/// Opens (creating if needed) one partition.
fn open_partition(job: &Job, ctx: Ctx) -> std::io::Result<Opened> {
    let dir = &job.dir;
    let created_dir = std::fs::symlink_metadata(dir).is_err();
    ctx.io.create_dir_all(dir)?;
    let mut bases: Vec<i64> = Vec::new();
    let mut f_leftovers = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(CLEANED_SUFFIX) || name.ends_with(".deleted") {
            // A compaction's cleaned segment that a crash kept from being renamed into place
            // (`compaction.rs`): the segment it was cleaning is still whole.
            let path = dir.join(name);
            io_remove_leftover(&ctx, &path)?;
            f_leftovers.push(path);
            continue;
        }
        if let Some(b) = parse_log_name(name) {
            bases.push(b);
        }
    }
    bases.sort_unstable();
    // A new partition's files are not durable until its directory is fsynced, which the
    // partition does before its first fsync.
    let mut dir_synced = !created_dir;
    if bases.is_empty() {
        bases.push(0);
        dir_synced = false;
    }
    let interval = ctx.index_interval;
    let now = now_ms();
    let prealloc = prealloc_entries(&job.config, interval);
    let io = &*ctx.io;
    let mut f = Findings {
        job,
        events: Vec::new(),
        scanned: 0,
        walked: 0,
        rewrite: false,
    };
    for path in f_leftovers {
        f.event(
            &path,
            0,
            "leftover of an interrupted compaction".into(),
            RecoveryAction::LeftoverRemoved,
        );
    }
    let mut cp = job.checkpoint;
    let cp_idx = match cp {
        None => None,
        Some(p) => match bases.binary_search(&p.base) {
            Ok(i) => Some(i),
            // Retention deleted the checkpoint's segment (it was sealed, so durable): every
            // remaining segment lies after it, which is what "no checkpoint" means.
            Err(0) => {
                cp = None;
                None
            }
            Err(_) => {
                let seg = Segment::file_paths(dir, p.base)[0].clone();
                f.event(
                    &seg,
                    p.pos,
                    "the checkpoint names a segment that does not exist".into(),
                    RecoveryAction::CheckpointIgnored,
                );
                f.rewrite = true;
                cp = None;
                None
            }
        },
    };
    // Whether the checkpoint is used: cleared when its position does not match the files.
    let mut cp_ok = cp.is_some();
    let always = job.config.flush == FlushPolicy::Always;
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    let mut i = 0;
    while i + 1 < bases.len() {
        let (base, end) = (bases[i], bases[i + 1]);
        let phase = phase(cp_idx, i);
        let seg = Segment::open(io, dir, base, None, now)?;
        seg.end_offset.store(end, Ordering::Release);
        if seg.has_seal_entry(end) {
            segments.push(Arc::new(seg));
            i += 1;
            continue;
        }
        drop(seg);
        let seg = Segment::open(io, dir, base, Some(prealloc), now)?;
        seg.end_offset.store(end, Ordering::Release);
        if phase == Phase::Before {
            // Durable, per the checkpoint: only the index (or its final entry) was lost.
            let size = seg.size();
            let s = scan(&seg, Point::segment_start(base), interval, false)?;
            f.walked += s.stop;
            if s.error.is_none() && s.next == end {
                seg.seal()?;
                f.event(
                    &seg.path,
                    0,
                    "index missing or incomplete; rebuilt from the batch headers".into(),
                    RecoveryAction::IndexRebuilt,
                );
            } else {
                let reason = s.error.unwrap_or_else(|| {
                    format!(
                        "batches end at offset {} (byte {size}), {end} expected",
                        s.next
                    )
                });
                f.event(&seg.path, s.stop, reason, RecoveryAction::Reported);
            }
            segments.push(Arc::new(seg));
            i += 1;
            continue;
        }
        let start = match (phase, cp) {
            (Phase::At, Some(p)) => {
                let (start, ok) = check_checkpoint(&seg, p, interval, &mut f)?;
                cp_ok &= ok;
                start
            }
            _ => Point::segment_start(base),
        };
        let s = scan(&seg, start, interval, true)?;
        f.scanned += s.stop - start.pos;
        if s.next == end {
            if let Some(reason) = s.error {
                // Every offset is there; what follows the last batch is garbage.
                cut(&seg, s.stop)?;
                f.event(
                    &seg.path,
                    s.stop,
                    reason,
                    RecoveryAction::Truncated {
                        bytes_removed: seg.size() - s.stop,
                    },
                );
                seg.written.store(s.stop, Ordering::Release);
                seg.published.store(s.stop, Ordering::Release);
            } else {
                f.event(
                    &seg.path,
                    start.pos,
                    format!(
                        "segment was rolled but not sealed; validated from byte {}",
                        start.pos
                    ),
                    RecoveryAction::IndexRebuilt,
                );
            }
            if start.pos == 0 {
                seg.verified.store(s.stop, Ordering::Release);
            }
            seg.seal()?;
            segments.push(Arc::new(seg));
            i += 1;
            continue;
        }
        let reason = s.error.unwrap_or_else(|| {
            format!(
                "batches end at offset {} (byte {}), {end} expected",
                s.next, s.stop
            )
        });
        let later_sealed = later_segments_sealed(&ctx, dir, &bases[i + 1..])?;
        if always || later_sealed {
            // Under `always` every rolled segment was fsynced before the next one was created,
            // and a sealed later segment was fsynced too: the damage is not a torn write, and
            // cutting here would delete acknowledged records after it.
            let why = if always {
                "middle segment of an `always` topic"
            } else {
                "a later segment is sealed"
            };
            f.event(
                &seg.path,
                s.stop,
                format!("{reason} ({why}: kept)"),
                RecoveryAction::Reported,
            );
            segments.push(Arc::new(seg));
            i += 1;
            continue;
        }
        // Torn by an OS crash under `never`/`interval` before the seal this segment was owed:
        // what follows was never fsynced either. Keep the log contiguous, as Kafka does: this
        // segment becomes the last one (the active branch below cuts it) and the later ones go.
        for &later in &bases[i + 1..] {
            for path in Segment::file_paths(dir, later) {
                let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
                match ctx.io.remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                if path.extension().is_some_and(|x| x == "log") {
                    f.event(
                        &path,
                        0,
                        format!(
                            "follows a torn unsealed segment ending at offset {}",
                            s.next
                        ),
                        RecoveryAction::Truncated {
                            bytes_removed: bytes,
                        },
                    );
                }
            }
        }
        ctx.io.sync_dir(dir)?;
        bases.truncate(i + 1);
    }
    let base = bases[bases.len() - 1];
    let active = Segment::open(io, dir, base, Some(prealloc), now)?;
    let start = match (phase(cp_idx, bases.len() - 1), cp) {
        (Phase::At, Some(p)) => {
            let (start, ok) = check_checkpoint(&active, p, interval, &mut f)?;
            cp_ok &= ok;
            start
        }
        _ => Point::segment_start(base),
    };
    let s = scan(&active, start, interval, true)?;
    f.scanned += s.stop - start.pos;
    let file_len = active.file.len()?;
    if let Some(reason) = s.error {
        cut(&active, s.stop)?;
        f.event(
            &active.path,
            s.stop,
            reason,
            RecoveryAction::Truncated {
                bytes_removed: file_len - s.stop,
            },
        );
    }
    if start.pos == 0 {
        active.verified.store(s.stop, Ordering::Release);
    }
    active.written.store(s.stop, Ordering::Release);
    active.published.store(s.stop, Ordering::Release);
    active.end_offset.store(s.next, Ordering::Release);
    active
        .created_ms
        .store(age_start(&active, now)?, Ordering::Release);
    let active = Arc::new(active);
    segments.push(active.clone());

    // The durable prefix: the checkpoint's point if it was used, else the log's start; then
    // past every segment that is sealed (fsynced) after it.
    let mut durable = match cp {
        Some(p) if cp_ok => p,
        _ => Point::segment_start(segments[0].base_offset),
    };
    if let Some(mut k) = segments.iter().position(|s| s.base_offset == durable.base) {
        while k + 1 < segments.len() && segments[k].sealed.load(Ordering::Acquire) {
            durable = Point::segment_start(segments[k + 1].base_offset);
            k += 1;
        }
    }
    let lag = segments
        .iter()
        .filter(|s| s.base_offset >= durable.base)
        .map(|s| s.size())
        .sum::<u64>()
        .saturating_sub(durable.pos);
    let writer = Writer {
        active,
        next_offset: s.next,
        size: s.stop,
    };
    let partition = Partition::assemble(
        &job.topic,
        job.id,
        dir.clone(),
        ctx,
        job.config.clone(),
        segments,
        writer,
        Recovered {
            durable,
            lag,
            dir_synced,
        },
    );
    partition.restore_producers(job.producers.clone());
    Ok(Opened {
        partition,
        events: f.events,
        bytes_scanned: f.scanned,
        bytes_walked: f.walked,
        from_checkpoint: cp_ok,
        rewrite_checkpoint: f.rewrite,
        created_dir,
    })
}

fn phase(cp_idx: Option<usize>, i: usize) -> Phase {
    match cp_idx {
        Some(c) if i < c => Phase::Before,
        Some(c) if i == c => Phase::At,
        _ => Phase::After,
    }
}

/// Whether any of the non-last segments among `bases` (the last is the active one, never
/// sealed) carries the seal entry.
fn later_segments_sealed(ctx: &Ctx, dir: &Path, bases: &[i64]) -> std::io::Result<bool> {
    for w in bases.windows(2) {
        let [_, _, tix] = Segment::file_paths(dir, w[0]);
        if !tix.exists() {
            continue;
        }
        let times = TimeIndex::open(&*ctx.io, &tix, None)?;
        if times
            .last()
            .is_some_and(|(_, rel)| i64::from(rel) == w[1] - w[0])
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks that `seg` holds whole batches up to the checkpoint's position, ending at its next
/// offset, by walking headers from the last offset-index entry below it (or, if the index
/// misleads, from the segment start). Returns where the CRC scan starts, the checkpoint's
/// point or the segment start, and whether the checkpoint matched.
fn check_checkpoint(
    seg: &Segment,
    cp: Point,
    interval: u64,
    f: &mut Findings<'_>,
) -> std::io::Result<(Point, bool)> {
    let size = seg.file.len()?;
    let mismatch = |reason: String, f: &mut Findings<'_>| {
        f.event(&seg.path, cp.pos, reason, RecoveryAction::CheckpointIgnored);
        f.rewrite = true;
        Point::segment_start(seg.base_offset)
    };
    if cp.pos > size || cp.next - seg.base_offset > i64::from(u32::MAX) {
        return Ok((
            mismatch(
                format!(
                    "checkpoint at byte {} (offset {}) but the segment holds {size} bytes",
                    cp.pos, cp.next
                ),
                f,
            ),
            false,
        ));
    }
    let (rel, pos) = seg.indexes().offsets.last_below_pos(cp.pos);
    let walk = |from: u64, first: i64, f: &mut Findings<'_>| -> std::io::Result<Option<String>> {
        let mut expected = first;
        let end = seg.walk(from, cp.pos, false, |b: &Walked| {
            if b.base != expected {
                return Err(format!(
                    "batch base offset {} where {expected} was expected",
                    b.base
                ));
            }
            expected = b.last + 1;
            Ok(())
        })?;
        f.walked += end.pos - from;
        Ok(match end.error {
            Some(e) => Some(format!("at byte {}: {e}", end.pos)),
            None if expected != cp.next => Some(format!(
                "batches before byte {} end at offset {expected}, checkpoint says {}",
                cp.pos, cp.next
            )),
            None => None,
        })
    };
    let mut problem = walk(u64::from(pos), seg.base_offset + i64::from(rel), f)?;
    if problem.is_some() && pos != 0 {
        // The index below the checkpoint misled us; it is derived data, so drop it and
        // check from the segment start (the scan rebuilds it from there).
        seg.indexes_mut().clear();
        problem = walk(0, seg.base_offset, f)?;
        if problem.is_none() {
            return Ok((rebuild_below(seg, cp, interval, f), true));
        }
    }
    Ok(match problem {
        Some(reason) => (
            mismatch(format!("checkpoint does not match: {reason}"), f),
            false,
        ),
        None => (cp, true),
    })
}

/// After the index below a valid checkpoint turned out wrong: rebuild it with a header walk
/// up to the checkpoint, and start the CRC scan at the checkpoint.
fn rebuild_below(seg: &Segment, cp: Point, interval: u64, f: &mut Findings<'_>) -> Point {
    let mut ix = seg.indexes_mut();
    ix.clear();
    let mut max_ts = None;
    let r = seg.walk(0, cp.pos, false, |b| {
        ix.note_batch(b.pos, seg.rel(b.base), max_ts, interval);
        max_ts = Some(max_ts.map_or(b.max_ts, |m: i64| m.max(b.max_ts)));
        Ok(())
    });
    drop(ix);
    if let Ok(end) = r {
        f.walked += end.pos;
    }
    Point { max_ts, ..cp }
}

/// Result of walking a segment from a known-good point.
#[derive(Debug)]
pub(crate) struct Scan {
    /// First byte not accepted.
    pub stop: u64,
    /// Offset after the last accepted batch.
    pub next: i64,
    /// Why the walk stopped before the end of the file.
    pub error: Option<String>,
}

/// Walks `seg` from `from` to the end of its file, rebuilding its indexes from there; with
/// `verify`, every batch is fully validated (CRC-32C included), otherwise only its header.
/// Index entries below `from` are kept, as far as they are consistent with it.
pub(crate) fn scan(
    seg: &Segment,
    from: Point,
    interval: u64,
    verify: bool,
) -> std::io::Result<Scan> {
    let size = seg.file.len()?;
    let mut ix = seg.indexes_mut();
    if from.pos == 0 {
        ix.clear();
    } else {
        ix.offsets.retain_below(from.pos);
        ix.times.retain_below(seg.rel(from.next), from.max_ts);
        ix.reset_last_pos();
    }
    let mut expected = from.next;
    let mut max_ts = from.max_ts;
    let end = seg.walk(from.pos, size, verify, |b: &Walked| {
        if b.base != expected {
            return Err(format!(
                "offset gap: batch base offset {} where {expected} was expected",
                b.base
            ));
        }
        if b.last < b.base || b.last - seg.base_offset >= i64::from(u32::MAX) {
            return Err(format!(
                "batch ends at offset {}, beyond what a segment can index",
                b.last
            ));
        }
        ix.note_batch(b.pos, seg.rel(b.base), max_ts, interval);
        max_ts = Some(max_ts.map_or(b.max_ts, |m| m.max(b.max_ts)));
        expected = b.last + 1;
        Ok(())
    })?;
    drop(ix);
    seg.note_max_ts(max_ts);
    Ok(Scan {
        stop: end.pos,
        next: expected,
        error: end.error,
    })
}

/// Cuts `seg` at `pos` and makes the cut (and the index entries dropped with it) durable
/// before anything is appended after it, so stale bytes or entries cannot reappear.
fn cut(seg: &Segment, pos: u64) -> std::io::Result<()> {
    seg.file.set_len(pos)?;
    seg.file.sync_data()?;
    let ix = seg.indexes();
    ix.offsets.sync()?;
    ix.times.sync()
}

/// When the active segment's age starts, for rolling by `segment_ms` across restarts: the
/// max timestamp of its first batch, as Kafka uses, but never later than now (a producer's
/// clock may run ahead). An empty segment starts now.
fn age_start(seg: &Segment, now: i64) -> std::io::Result<i64> {
    let size = seg.size();
    Ok(match seg.read_header(0, size)? {
        Some(h) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&h[35..43]);
            i64::from_be_bytes(a).min(now)
        }
        None => now,
    })
}

/// Removes a leftover file, durably.
fn io_remove_leftover(ctx: &Ctx, path: &Path) -> std::io::Result<()> {
    match ctx.io.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match path.parent() {
        Some(dir) => ctx.io.sync_dir(dir),
        None => Ok(()),
    }
}
