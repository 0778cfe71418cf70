//! A partition's durability: the group-commit fsync, the durable point the recovery
//! checkpoint describes, rolling and sealing segments, and `flush` and `close`.

use std::sync::Arc;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

use super::{Durable, Partition, Snapshot, Writer, lock, now_ms, prealloc_entries};
use crate::checkpoint::Point;
use crate::config::FlushPolicy;
use crate::error::StorageError;
use crate::segment::Segment;

impl Partition {
    fn snapshot(&self, w: &Writer) -> Snapshot {
        Snapshot {
            seg: w.active.clone(),
            size: w.size,
            next: w.next_offset,
            max_ts: w.active.cached_max_ts(),
            total: self.appended.load(Ordering::Acquire),
            all_sealed: lock(&self.pending_seal).is_empty(),
        }
    }

    /// fsyncs the partition directory once after segment files were created in it, before
    /// any fsync whose result a checkpoint may describe.
    fn ensure_dir_synced(&self) -> std::io::Result<()> {
        if !self.dir_synced.load(Ordering::Acquire) {
            self.ctx.io.sync_dir(&self.dir)?;
            self.dir_synced.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// The group-commit leader's work: fsync what is written now, then publish it.
    pub(super) fn sync_active(&self) -> std::io::Result<i64> {
        let snap = self.snapshot(&self.lock_writer());
        if self.is_failed() {
            // A roll (and its seal) failed since our write: what is durable is unknown.
            return Err(std::io::Error::other(
                "the partition failed during the append",
            ));
        }
        self.ensure_dir_synced()?;
        snap.seg.file.sync_data()?;
        self.publish(&snap.seg, snap.size, snap.next);
        // Under `always` every rolled segment was sealed before the next was created.
        self.advance_durable(&snap);
        Ok(snap.next)
    }

    /// Moves the durable point to the snapshot, which an fsync has just made durable.
    fn advance_durable(&self, snap: &Snapshot) {
        if !snap.all_sealed {
            return;
        }
        self.advance_durable_to(
            Point {
                base: snap.seg.base_offset,
                pos: snap.size,
                next: snap.next,
                max_ts: snap.max_ts,
            },
            snap.total,
        );
    }

    fn advance_durable_to(&self, point: Point, total: u64) {
        if self.is_failed() {
            // After a failed fsync nothing later is trusted, even if a later fsync succeeds.
            return;
        }
        let mut d = lock(&self.durable);
        if (point.base, point.pos) > (d.point.base, d.point.pos) {
            d.point = point;
            d.total = d.total.max(total);
            self.ctx.checkpoint_dirty.store(true, Ordering::Release);
        }
    }

    /// The durable point and its `total`, for the checkpoint writer.
    pub(crate) fn durable(&self) -> Durable {
        *lock(&self.durable)
    }

    /// Bytes a recovery would have to scan if the process crashed now and the newest
    /// checkpoint were the one on disk.
    pub(crate) fn unchecked_bytes(&self) -> u64 {
        self.appended
            .load(Ordering::Acquire)
            .saturating_sub(self.checkpointed.load(Ordering::Acquire))
    }

    /// Bytes appended but not yet known durable.
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        self.appended
            .load(Ordering::Acquire)
            .saturating_sub(lock(&self.durable).total)
    }

    /// Clamps the durable point after retention removed the segments before `first_base`.
    pub(crate) fn clamp_durable(&self, first_base: i64) {
        let mut d = lock(&self.durable);
        if d.point.base < first_base {
            d.point = Point::segment_start(first_base);
            self.ctx.checkpoint_dirty.store(true, Ordering::Release);
        }
    }

    pub(super) fn publish(&self, seg: &Segment, size: u64, next: i64) {
        // Segment bytes first, then the high watermark: a reader that sees the new high
        // watermark also sees the bytes under it.
        seg.published.fetch_max(size, Ordering::AcqRel);
        self.hw.fetch_max(next, Ordering::AcqRel);
        self.event.notify(usize::MAX);
    }

    pub(super) fn roll_due(&self, w: &Writer, len: u64, records: i64, now: i64) -> bool {
        if w.size == 0 {
            return false;
        }
        let rel_after = w.next_offset - w.active.base_offset + records;
        let created = w.active.created_ms.load(Ordering::Acquire);
        w.size + len > self.config.segment_bytes
            || w.size + len > u64::from(u32::MAX)
            || rel_after > i64::from(u32::MAX)
            || now.saturating_sub(created)
                >= i64::try_from(self.config.segment_ms).unwrap_or(i64::MAX)
    }

    /// Seals the active segment (fsync, trim indexes) and starts a new one at `next_offset`.
    ///
    /// Under `always` the seal happens here: the data is already durable, so the fsync is
    /// cheap, and acknowledged records in the new segment must never sit behind an unsynced
    /// one. Under `never`/`interval` the old segment is queued for the background flusher.
    pub(super) fn roll(&self, w: &mut Writer, now: i64) -> std::io::Result<()> {
        let always = self.config.flush == FlushPolicy::Always;
        if always {
            w.active.seal()?;
            self.sync.mark_durable(w.next_offset);
        }
        self.publish(&w.active, w.size, w.next_offset);
        let seg = Arc::new(Segment::open(
            &*self.ctx.io,
            &self.dir,
            w.next_offset,
            Some(self.prealloc()),
            now,
        )?);
        seg.end_offset.store(w.next_offset, Ordering::Release);
        let total = self.appended.load(Ordering::Acquire);
        if always {
            // The new segment's files must be durable before anything in them is acknowledged.
            self.ctx.io.sync_dir(&self.dir)?;
            self.dir_synced.store(true, Ordering::Release);
        } else {
            lock(&self.pending_seal).push((w.active.clone(), total));
        }
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(seg.clone());
        w.active = seg;
        w.size = 0;
        if always {
            self.advance_durable_to(Point::segment_start(w.next_offset), total);
        }
        Ok(())
    }

    /// Seals the segments rolled since the last call. Caller holds `maint`.
    ///
    /// A failed seal is never retried: after a failed fsync the kernel may have dropped the
    /// dirty pages and a retry would "succeed" over lost data (Linux's fsyncgate). The
    /// partition is marked failed instead, the segment stays unsealed on disk, and the next
    /// open validates it.
    fn seal_pending(&self) -> std::io::Result<()> {
        let pending = std::mem::take(&mut *lock(&self.pending_seal));
        let Some((last, total)) = pending.last().cloned() else {
            return Ok(());
        };
        if self.is_failed() {
            return Err(std::io::Error::other(
                "not sealing: the partition failed earlier",
            ));
        }
        let sealed = pending
            .iter()
            .try_for_each(|(s, _)| s.seal())
            .and_then(|()| self.ctx.io.sync_dir(&self.dir));
        if let Err(e) = sealed {
            self.failed.store(true, Ordering::Release);
            return Err(e);
        }
        self.dir_synced.store(true, Ordering::Release);
        // Segments are sealed in roll order and the durable point never passes an unsealed
        // one, so everything up to the end of the last sealed segment is now durable.
        self.advance_durable_to(
            Point::segment_start(last.end_offset.load(Ordering::Acquire)),
            total,
        );
        Ok(())
    }

    /// Holds off sealing and background fsyncs (retention, while it picks segments).
    pub(crate) fn lock_maint(&self) -> MutexGuard<'_, ()> {
        lock(&self.maint)
    }

    /// Segments rolled whose seal the flusher still owes.
    pub(crate) fn seal_owed(&self) -> Vec<Arc<Segment>> {
        lock(&self.pending_seal)
            .iter()
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Seals the segments rolled since the last call (the background flusher's job).
    pub(crate) fn seal_rolled(&self) -> Result<(), StorageError> {
        let _m = lock(&self.maint);
        self.seal_pending().map_err(|e| StorageError::Io {
            path: self.dir.clone(),
            source: e,
        })
    }

    pub(crate) fn prealloc(&self) -> usize {
        prealloc_entries(&self.config, self.ctx.index_interval)
    }

    /// fsyncs the active segment up to `snap` if it has unsynced data, and moves the durable
    /// point there. Caller holds `maint`.
    fn sync_tail(&self, snap: &Snapshot) -> std::io::Result<()> {
        if snap.total <= lock(&self.durable).total {
            return Ok(());
        }
        self.last_sync_ms.store(now_ms(), Ordering::Release);
        let synced = self
            .ensure_dir_synced()
            .and_then(|()| snap.seg.file.sync_data());
        if let Err(e) = synced {
            self.failed.store(true, Ordering::Release);
            return Err(e);
        }
        self.advance_durable(snap);
        Ok(())
    }

    /// Seals rolled segments and fsyncs the active one if it has unsynced data (the
    /// background flusher, `Log::flush`). A seal failure does not stop the fsync of the
    /// active segment: acknowledged `interval` data still gets to disk.
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        let _m = lock(&self.maint);
        let was_failed = self.is_failed();
        let sealed = self.seal_pending();
        if was_failed {
            return Err(self.failed_error());
        }
        // Even if the seal just failed (the partition is failed now), fsync the active
        // segment once: its acknowledged `interval` data deserves the chance. The durable
        // point does not move past a failure either way.
        let snap = self.snapshot(&self.lock_writer());
        let synced = self.sync_tail(&snap);
        sealed.and(synced).map_err(|e| match self.is_failed() {
            true => self.failed_error(),
            false => StorageError::Io {
                path: self.dir.clone(),
                source: e,
            },
        })
    }

    /// Seals, fsyncs and trims the active segment's indexes; appends fail afterwards.
    ///
    /// Everything happens under the writer lock after `closed` is set, so no append or roll
    /// can slip in between: when this returns `Ok`, every segment but the active one is
    /// sealed and the durable point is the end of the log. A failed partition is closed
    /// without any fsync and reports [`StorageError::PartitionFailed`].
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        let _m = lock(&self.maint);
        let w = self.lock_writer();
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let io_err = |e| StorageError::Io {
            path: self.dir.clone(),
            source: e,
        };
        let sealed = self.seal_pending();
        if self.is_failed() {
            return Err(self.failed_error());
        }
        sealed.map_err(io_err)?;
        self.sync_tail(&self.snapshot(&w)).map_err(io_err)?;
        let mut ix = w.active.indexes_mut();
        ix.offsets.trim().map_err(io_err)?;
        ix.times.trim().map_err(io_err)?;
        Ok(())
    }
}
