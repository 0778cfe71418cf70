//! Opening a partition: tail validation and truncation, index rebuild.
//!
//! Sealed segments were fsynced (with their indexes trimmed) when they were sealed, so they
//! are trusted; only their indexes are checked, and rebuilt from the batch headers if the
//! final time-index entry written at seal is missing. The active (last) segment is trusted
//! after a clean shutdown; otherwise it is walked from its start, checking size, magic, CRC,
//! record count and offset continuity, and cut at the first invalid byte.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::TopicConfig;
use crate::partition::{Ctx, Partition, Writer, now_ms, prealloc_entries};
use crate::segment::{Segment, Walked, parse_log_name};

/// What recovery did to a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryAction {
    /// The segment was cut at `position`, removing this many bytes of torn or invalid tail.
    Truncated {
        /// Bytes removed.
        bytes_removed: u64,
    },
    /// The segment's indexes were missing or incomplete and were rebuilt.
    IndexRebuilt,
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

/// Opens (creating if needed) the partition stored in `dir`.
pub(crate) fn open_partition(
    topic: &str,
    id: u32,
    dir: PathBuf,
    ctx: Ctx,
    config: TopicConfig,
    clean: bool,
    events: &mut Vec<RecoveryEvent>,
) -> std::io::Result<Partition> {
    ctx.io.create_dir_all(&dir)?;
    let mut bases: Vec<i64> = Vec::new();
    for e in std::fs::read_dir(&dir)? {
        if let Some(b) = e?.file_name().to_str().and_then(parse_log_name) {
            bases.push(b);
        }
    }
    bases.sort_unstable();
    if bases.is_empty() {
        bases.push(0);
    }
    let now = now_ms();
    let prealloc = prealloc_entries(&config, ctx.index_interval);
    let mut event = |segment: &Path, position: u64, reason: String, action: RecoveryAction| {
        events.push(RecoveryEvent {
            topic: topic.into(),
            partition: id,
            segment: segment.into(),
            position,
            reason,
            action,
        });
    };
    let mut segments = Vec::with_capacity(bases.len());
    let mut i = 0;
    while i + 1 < bases.len() {
        let (base, end) = (bases[i], bases[i + 1]);
        let mut seg = Segment::open(&*ctx.io, &dir, base, None, now)?;
        seg.end_offset.store(end, Ordering::Release);
        // The final time-index entry is written by `seal`, after the fsync: its presence
        // proves the segment was sealed.
        let sealed = seg
            .indexes()
            .times
            .last()
            .is_some_and(|(_, rel)| i64::from(rel) == end - base);
        if !sealed {
            drop(seg);
            seg = Segment::open(&*ctx.io, &dir, base, Some(prealloc), now)?;
            seg.end_offset.store(end, Ordering::Release);
            if clean {
                // After a clean close every segment was sealed; only the index was lost.
                rebuild_indexes(&seg, ctx.index_interval)?;
                event(
                    &seg.path,
                    0,
                    "index missing or incomplete".into(),
                    RecoveryAction::IndexRebuilt,
                );
            } else {
                // Rolled but not yet sealed when the process died: validate it like a tail.
                let (size, next, cut) = scan_active(&seg, ctx.index_interval)?;
                if cut.is_some() || next != end {
                    // A hole: keep the log contiguous by making this the last segment.
                    for &later in &bases[i + 1..] {
                        for path in Segment::file_paths(&dir, later) {
                            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
                            match ctx.io.remove_file(&path) {
                                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                    return Err(e);
                                }
                                _ => {}
                            }
                            if path.extension().is_some_and(|x| x == "log") {
                                let reason = format!(
                                    "follows a torn unsealed segment ending at offset {next}"
                                );
                                event(
                                    &path,
                                    0,
                                    reason,
                                    RecoveryAction::Truncated {
                                        bytes_removed: bytes,
                                    },
                                );
                            }
                        }
                    }
                    ctx.io.sync_dir(&dir)?;
                    bases.truncate(i + 1);
                    break;
                }
                seg.written.store(size, Ordering::Release);
                seg.published.store(size, Ordering::Release);
                seg.verified.store(size, Ordering::Release);
                event(
                    &seg.path,
                    0,
                    "segment was rolled but not sealed; validated".into(),
                    RecoveryAction::IndexRebuilt,
                );
            }
            seg.seal()?;
        }
        segments.push(Arc::new(seg));
        i += 1;
    }
    let last = bases.len() - 1;
    let active = Segment::open(&*ctx.io, &dir, bases[last], Some(prealloc), now)?;
    let trusted = if clean { trusted_tail(&active)? } else { None };
    let (size, next) = match trusted {
        Some(t) => t,
        None => {
            let (size, next, cut) = scan_active(&active, ctx.index_interval)?;
            if let Some((pos, removed, reason)) = cut {
                active.file.set_len(pos)?;
                active.file.sync_data()?;
                event(
                    &active.path,
                    pos,
                    reason,
                    RecoveryAction::Truncated {
                        bytes_removed: removed,
                    },
                );
            }
            active.verified.store(size, Ordering::Release);
            (size, next)
        }
    };
    active.written.store(size, Ordering::Release);
    active.published.store(size, Ordering::Release);
    active.end_offset.store(next, Ordering::Release);
    // The writer keeps the active segment's max timestamp current from here on.
    active.max_timestamp()?;
    let active = Arc::new(active);
    segments.push(active.clone());
    let writer = Writer {
        active,
        next_offset: next,
        size,
    };
    Ok(Partition::assemble(
        topic, id, dir, ctx, config, segments, writer,
    ))
}

/// After a clean shutdown: finds the end offset by walking headers from the last index
/// entry. `None` if anything looks wrong, which sends the segment through a full scan.
fn trusted_tail(seg: &Segment) -> std::io::Result<Option<(u64, i64)>> {
    let size = seg.size();
    let pos = u64::from(seg.indexes().offsets.lookup(u32::MAX).1);
    let mut next = None;
    let end = seg.walk(pos, size, false, |b| {
        next = Some(b.last + 1);
        Ok(())
    })?;
    if end.error.is_some() {
        return Ok(None);
    }
    Ok(Some((size, next.unwrap_or(seg.base_offset))))
}

/// Walks the whole active segment with full validation, rebuilding its indexes. Returns
/// (valid size, next offset, truncation (position, bytes removed, reason) if any).
#[allow(clippy::type_complexity)]
fn scan_active(
    seg: &Segment,
    interval: u64,
) -> std::io::Result<(u64, i64, Option<(u64, u64, String)>)> {
    let size = seg.file.len()?;
    let mut ix = seg.indexes_mut();
    ix.clear();
    let mut expected = seg.base_offset;
    let mut max_ts = i64::MIN;
    let end = seg.walk(0, size, true, |b: &Walked| {
        if b.base != expected {
            return Err(format!(
                "offset gap: batch base offset {} where {expected} was expected",
                b.base
            ));
        }
        ix.note_batch(b.pos, seg.rel(b.base), max_ts, interval);
        max_ts = max_ts.max(b.max_ts);
        expected = b.last + 1;
        Ok(())
    })?;
    drop(ix);
    seg.note_max_ts(max_ts);
    let cut = end.error.map(|reason| (end.pos, size - end.pos, reason));
    Ok((end.pos, expected, cut))
}

/// Rebuilds a sealed segment's indexes from its batch headers (CRCs are checked on read).
fn rebuild_indexes(seg: &Segment, interval: u64) -> std::io::Result<()> {
    let mut ix = seg.indexes_mut();
    ix.clear();
    let mut max_ts = i64::MIN;
    seg.walk(0, seg.size(), false, |b| {
        ix.note_batch(b.pos, seg.rel(b.base), max_ts, interval);
        max_ts = max_ts.max(b.max_ts);
        Ok(())
    })?;
    drop(ix);
    seg.note_max_ts(max_ts);
    Ok(())
}
