//! One partition: its segment list, appends with group commit, reads and the high watermark.
//!
//! Concurrency: one writer at a time (the `writer` mutex), any number of readers. The writer
//! writes a batch, then *publishes* it: first the segment's `published` byte count, then the
//! partition's high watermark, then it wakes listeners. Readers load the high watermark first
//! and never read past `published`, so they see whole batches only. Under flush `always`
//! publication waits for the group-commit fsync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use bytes::Bytes;
use event_listener::{Event, EventListener};

use crate::batch::{self, Record, RecordBatch};
use crate::config::{FlushPolicy, TopicConfig};
use crate::error::{AppendError, BatchError};
use crate::io::{Io, write_all_at};
use crate::segment::Segment;
use crate::sync::GroupCommit;

mod read;

/// What an append was assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Wall-clock time of the append, in ms since the epoch.
    pub log_append_time_ms: i64,
}

/// Whole batches read from a partition.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole, CRC-checked v2 batches. The first may start before the requested offset.
    pub bytes: Bytes,
    /// High watermark when the read started.
    pub high_watermark: i64,
    /// Log start offset when the read started.
    pub log_start_offset: i64,
    /// Offset after the last batch returned (the requested offset if none was).
    pub next_offset: i64,
}

/// Settings every partition of a log shares.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub io: Arc<dyn Io>,
    pub max_batch_bytes: usize,
    pub index_interval: u64,
}

/// Writer-side state, guarded by `Partition::writer`.
#[derive(Debug)]
pub(crate) struct Writer {
    pub active: Arc<Segment>,
    pub next_offset: i64,
    pub size: u64,
}

/// A batch inside a caller's buffer, validated and ready to be written.
#[derive(Debug, Clone, Copy)]
struct Pending {
    at: usize,
    delta: i32,
    max_ts: i64,
}

/// One partition of a topic. `Send + Sync`; share it behind `Arc`.
#[derive(Debug)]
pub struct Partition {
    topic: String,
    id: u32,
    pub(crate) dir: PathBuf,
    pub(crate) ctx: Ctx,
    pub(crate) config: TopicConfig,
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    pub(crate) writer: Mutex<Writer>,
    hw: AtomicI64,
    pub(crate) log_start: AtomicI64,
    sync: GroupCommit,
    pub(crate) dirty: AtomicBool,
    pub(crate) last_sync_ms: AtomicI64,
    failed: AtomicBool,
    closed: AtomicBool,
    event: Event,
    /// Segments rolled under `never`/`interval` whose seal (fsync, index trim) the background
    /// flusher still owes. Sealing inline would stall the appender behind an fsync of a whole
    /// segment, which is the cost `never` exists to avoid.
    pending_seal: Mutex<Vec<Arc<Segment>>>,
}

thread_local! {
    /// Per-thread encoding buffer: reusing it avoids faulting in fresh pages on every append,
    /// which costs more than encoding itself for large batches.
    static ENCODE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Partition {
    /// Assembles a recovered partition (see `recovery`).
    pub(crate) fn assemble(
        topic: &str,
        id: u32,
        dir: PathBuf,
        ctx: Ctx,
        config: TopicConfig,
        segments: Vec<Arc<Segment>>,
        writer: Writer,
    ) -> Partition {
        let start = segments
            .first()
            .map_or(writer.next_offset, |s| s.base_offset);
        let hw = writer.next_offset;
        Partition {
            topic: topic.to_string(),
            id,
            dir,
            ctx,
            config,
            segments: RwLock::new(segments),
            writer: Mutex::new(writer),
            hw: AtomicI64::new(hw),
            log_start: AtomicI64::new(start),
            sync: GroupCommit::new(hw),
            dirty: AtomicBool::new(false),
            last_sync_ms: AtomicI64::new(now_ms()),
            failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            event: Event::new(),
            pending_seal: Mutex::new(Vec::new()),
        }
    }

    /// Name of the topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// Partition number.
    pub fn id(&self) -> u32 {
        self.id
    }
    /// The next offset readers may see (under `always`, only fsynced data counts).
    pub fn high_watermark(&self) -> i64 {
        self.hw.load(Ordering::Acquire)
    }
    /// The first offset still stored.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }
    /// Bytes stored across all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segs().iter().map(|s| s.size()).sum()
    }
    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segs().len()
    }

    /// A listener notified whenever the high watermark advances.
    ///
    /// To wait without missing a wake-up: create the listener, *then* re-check
    /// [`high_watermark`](Self::high_watermark), and only wait if it has not moved:
    ///
    /// ```no_run
    /// use event_listener::Listener as _; // for the blocking `wait`
    /// # fn f(p: &rill_log::Partition, next: i64) {
    /// loop {
    ///     if p.high_watermark() > next { break; }
    ///     let l = p.listen();
    ///     if p.high_watermark() > next { break; }
    ///     l.wait(); // or `.await` in async code
    /// }
    /// # }
    /// ```
    pub fn listen(&self) -> EventListener {
        self.event.listen()
    }

    pub(crate) fn segs(&self) -> RwLockReadGuard<'_, Vec<Arc<Segment>>> {
        self.segments.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encodes `records` as one uncompressed v2 batch and appends it.
    pub fn append(&self, records: &[Record<'_>]) -> Result<AppendInfo, AppendError> {
        if records.is_empty() {
            return Err(AppendError::Empty);
        }
        let now = now_ms();
        let mut buf = batch::encode(records, now);
        let (b, _) = RecordBatch::parse(&buf)?;
        let p = Pending {
            at: 0,
            delta: b.last_offset_delta(),
            max_ts: b.max_timestamp(),
        };
        self.write(&mut buf, &[p], now)
    }

    /// Appends one raw v2 batch as a producer sent it (any codec, stored as is).
    ///
    /// Checks the length, magic, CRC and record count (and, for uncompressed batches, every
    /// record), then assigns the base offset by overwriting the first 8 bytes of `batch`,
    /// which the CRC does not cover. `batch` must hold exactly one batch; use
    /// [`append_batches`](Self::append_batches) for several.
    pub fn append_batch(&self, batch: &mut [u8]) -> Result<AppendInfo, AppendError> {
        let (_, n) = RecordBatch::parse(batch)?;
        if n != batch.len() {
            return Err(BatchError::BadRecord("bytes after the batch").into());
        }
        self.append_batches(batch)
    }

    /// Appends several concatenated raw v2 batches in one write (and one fsync under
    /// `always`). All are validated before any is written; offsets are assigned in order.
    pub fn append_batches(&self, buf: &mut [u8]) -> Result<AppendInfo, AppendError> {
        if buf.is_empty() {
            return Err(AppendError::Empty);
        }
        let mut pending = Vec::with_capacity(1);
        let mut at = 0;
        for b in batch::batches(buf) {
            let b = b?;
            b.validate()?;
            if let batch::Compression::Unknown(_) = b.compression() {
                return Err(BatchError::BadRecord("unknown compression codec").into());
            }
            if b.compression() == batch::Compression::None {
                for r in b.records() {
                    r?;
                }
            }
            let len = b.as_bytes().len();
            pending.push(Pending {
                at,
                delta: b.last_offset_delta(),
                max_ts: b.max_timestamp(),
            });
            at += len;
        }
        self.write(buf, &pending, now_ms())
    }

    fn write(
        &self,
        buf: &mut [u8],
        batches: &[Pending],
        now: i64,
    ) -> Result<AppendInfo, AppendError> {
        if buf.len() > self.ctx.max_batch_bytes {
            return Err(AppendError::TooLarge {
                size: buf.len(),
                max: self.ctx.max_batch_bytes,
            });
        }
        let records: i64 = batches.iter().map(|p| i64::from(p.delta) + 1).sum();
        let mut w = self.lock_writer();
        if self.closed.load(Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(AppendError::Failed);
        }
        if self.roll_due(&w, buf.len() as u64, records, now) {
            self.roll(&mut w, now)
                .map_err(|e| self.fail(AppendError::Io(e)))?;
        }
        let base = w.next_offset;
        let mut next = base;
        for p in batches {
            batch::set_base_offset(&mut buf[p.at..], next);
            next += i64::from(p.delta) + 1;
        }
        let seg = w.active.clone();
        let pos = w.size;
        if let Err(e) = write_all_at(&*seg.file, buf, pos) {
            // Cut back whatever part of the batch reached the file so the next append starts
            // on a batch boundary. If even that fails the tail is unknown: refuse writes until
            // recovery has validated it.
            if seg.file.set_len(pos).is_err() {
                self.failed.store(true, Ordering::Release);
            }
            return Err(AppendError::Io(e));
        }
        {
            let mut ix = seg.indexes_mut();
            let mut before = seg.cached_max_ts();
            let mut o = base;
            for p in batches {
                ix.note_batch(
                    pos + p.at as u64,
                    seg.rel(o),
                    before,
                    self.ctx.index_interval,
                );
                before = before.max(p.max_ts);
                o += i64::from(p.delta) + 1;
            }
        }
        for p in batches {
            seg.note_max_ts(p.max_ts);
        }
        w.size = pos + buf.len() as u64;
        w.next_offset = next;
        seg.written.store(w.size, Ordering::Release);
        seg.end_offset.store(next, Ordering::Release);
        let info = AppendInfo {
            base_offset: base,
            last_offset: next - 1,
            log_append_time_ms: now,
        };
        if self.config.flush != FlushPolicy::Always {
            self.publish(&seg, w.size, next);
            self.dirty.store(true, Ordering::Release);
            return Ok(info);
        }
        drop(w);
        self.sync
            .wait(next, || self.sync_active())
            .map_err(|e| self.fail(AppendError::Io(e)))?;
        Ok(info)
    }

    fn fail(&self, e: AppendError) -> AppendError {
        self.failed.store(true, Ordering::Release);
        e
    }

    /// The group-commit leader's work: fsync what is written now, then publish it.
    fn sync_active(&self) -> std::io::Result<i64> {
        let (seg, size, next) = {
            let w = self.lock_writer();
            (w.active.clone(), w.size, w.next_offset)
        };
        seg.file.sync_data()?;
        self.publish(&seg, size, next);
        Ok(next)
    }

    fn publish(&self, seg: &Segment, size: u64, next: i64) {
        // Segment bytes first, then the high watermark: a reader that sees the new high
        // watermark also sees the bytes under it.
        seg.published.fetch_max(size, Ordering::AcqRel);
        self.hw.fetch_max(next, Ordering::AcqRel);
        self.event.notify(usize::MAX);
    }

    fn roll_due(&self, w: &Writer, len: u64, records: i64, now: i64) -> bool {
        if w.size == 0 {
            return false;
        }
        let rel_after = w.next_offset - w.active.base_offset + records;
        w.size + len > self.config.segment_bytes
            || w.size + len > u64::from(u32::MAX)
            || rel_after > i64::from(u32::MAX)
            || now.saturating_sub(w.active.created_ms)
                >= i64::try_from(self.config.segment_ms).unwrap_or(i64::MAX)
    }

    /// Seals the active segment (fsync, trim indexes) and starts a new one at `next_offset`.
    ///
    /// Under `always` the seal happens here: the data is already durable, so the fsync is
    /// cheap, and acknowledged records in the new segment must never sit behind an unsynced
    /// one. Under `never`/`interval` the old segment is queued for the background flusher.
    fn roll(&self, w: &mut Writer, now: i64) -> std::io::Result<()> {
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
        if always {
            self.ctx.io.sync_dir(&self.dir)?;
        } else {
            self.pending_seal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(w.active.clone());
        }
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(seg.clone());
        w.active = seg;
        w.size = 0;
        Ok(())
    }

    /// Seals the segments rolled since the last call (background flusher, flush, close).
    pub(crate) fn seal_pending(&self) -> std::io::Result<()> {
        let pending =
            std::mem::take(&mut *self.pending_seal.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return Ok(());
        }
        let sealed = pending
            .iter()
            .try_for_each(|s| s.seal())
            .and_then(|()| self.ctx.io.sync_dir(&self.dir));
        if sealed.is_err() {
            // Try again next time; sealing is idempotent.
            let mut q = self.pending_seal.lock().unwrap_or_else(|e| e.into_inner());
            let newer = std::mem::replace(&mut *q, pending);
            q.extend(newer);
        }
        sealed
    }

    pub(crate) fn prealloc(&self) -> usize {
        prealloc_entries(&self.config, self.ctx.index_interval)
    }

    /// fsyncs the active segment if it has unsynced data (used by `IntervalMs` and `flush`).
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        self.seal_pending()?;
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let seg = self.lock_writer().active.clone();
        self.last_sync_ms.store(now_ms(), Ordering::Release);
        let r = seg.file.sync_data();
        if r.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        r
    }

    /// Flushes and trims the active segment's indexes; appends fail afterwards.
    pub(crate) fn close(&self) -> std::io::Result<()> {
        self.seal_pending()?;
        let w = self.lock_writer();
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.dirty.store(false, Ordering::Release);
        w.active.file.sync_data()?;
        let mut ix = w.active.indexes_mut();
        ix.offsets.trim()?;
        ix.times.trim()?;
        Ok(())
    }
}

/// Index entries reserved for an active segment: one per interval, plus slack.
pub(crate) fn prealloc_entries(cfg: &TopicConfig, interval: u64) -> usize {
    usize::try_from(cfg.segment_bytes / interval.max(1)).unwrap_or(1 << 20) + 2
}

/// Path of a partition directory.
pub(crate) fn partition_dir(topic_dir: &Path, id: u32) -> PathBuf {
    topic_dir.join(id.to_string())
}
