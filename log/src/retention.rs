//! Deleting whole sealed segments by age and by total size.
//!
//! Only a prefix of sealed segments is ever deleted, oldest first, so the log stays one
//! contiguous range of offsets. The active segment is never deleted. Only topics whose
//! cleanup policy deletes (`delete`, `compact,delete`) lose segments here; compaction by key
//! (`compaction.rs`) is the other cleaner, serialized with this one per partition.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{StorageError, io_at};
use crate::partition::Partition;

/// What one retention pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes freed.
    pub bytes_deleted: u64,
}

impl RetentionReport {
    pub(crate) fn add(&mut self, other: RetentionReport) {
        self.segments_deleted += other.segments_deleted;
        self.bytes_deleted += other.bytes_deleted;
    }
}

impl Partition {
    /// Deletes the oldest sealed segments that break the topic's retention at `now_ms`.
    ///
    /// Passes are serialized per partition, and the doomed prefix is checked again under the
    /// segment-list write lock, so concurrent calls never delete more than they decided to.
    /// A segment rolled under `never`/`interval` whose seal the flusher still owes is kept
    /// until it is sealed (sealing is held off meanwhile). A damaged segment recovery kept
    /// unsealed is not owed a seal and can go like any other.
    pub(crate) fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, StorageError> {
        let (retention_ms, retention_bytes) =
            (self.config.retention_ms, self.config.retention_bytes);
        // With `compact` alone, retention settings are ignored, as in Kafka.
        if !self.config.cleanup_policy.deletes()
            || (retention_ms.is_none() && retention_bytes.is_none())
        {
            return Ok(RetentionReport::default());
        }
        let _pass = self.retention.lock().unwrap_or_else(|e| e.into_inner());
        let _no_seals = self.lock_maint();
        let owed = self.seal_owed();
        let segs = self.segs().clone();
        let candidates = &segs[..segs.len().saturating_sub(1)];
        let mut total: u64 = segs.iter().map(|s| s.size()).sum();
        let mut doomed = 0;
        for s in candidates {
            if owed.iter().any(|o| Arc::ptr_eq(o, s)) {
                break;
            }
            let too_old = match retention_ms {
                // A sealed segment's final time-index entry gives its max timestamp. One whose
                // timestamp cannot be read (damage) is kept by age; size can still remove it.
                Some(ms) => match s.max_timestamp() {
                    Ok(max) => max.is_some_and(|max| {
                        max < now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
                    }),
                    Err(e) => {
                        tracing::warn!(segment = %s.path.display(), error = %e, "retention: max timestamp unknown");
                        false
                    }
                },
                None => false,
            };
            let too_big =
                retention_bytes.is_some_and(|limit| total.saturating_sub(s.size()) >= limit);
            if !(too_old || too_big) {
                break;
            }
            total -= s.size();
            doomed += 1;
        }
        if doomed == 0 {
            return Ok(RetentionReport::default());
        }
        let removed: Vec<_> = {
            let mut list = self.segments.write().unwrap_or_else(|e| e.into_inner());
            // Only this pass removes segments (under `retention`), and appends only add at
            // the end, so the prefix is unchanged; check anyway rather than trust it, and
            // never remove the last (active) segment.
            let same = list.len() > doomed
                && list
                    .iter()
                    .zip(&segs[..doomed])
                    .all(|(a, b)| Arc::ptr_eq(a, b));
            if !same {
                return Ok(RetentionReport::default());
            }
            let removed: Vec<_> = list.drain(..doomed).collect();
            // Readers check the log start first; move it before the files go.
            if let Some(first) = list.first() {
                self.log_start.store(first.base_offset, Ordering::Release);
                self.clamp_durable(first.base_offset);
            }
            removed
        };
        let mut report = RetentionReport::default();
        for s in &removed {
            report.segments_deleted += 1;
            report.bytes_deleted += s.size();
            // Readers holding the segment keep reading the unlinked file through their handle.
            for p in s.paths(&self.dir) {
                match self.ctx.io.remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_at(&p)(e)),
                }
            }
        }
        self.ctx.io.sync_dir(&self.dir).map_err(io_at(&self.dir))?;
        Ok(report)
    }
}
