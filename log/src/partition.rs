//! One partition: its segment list, appends with group commit, reads and the high watermark.
//!
//! Concurrency: one writer at a time (the `writer` mutex), any number of readers. The writer
//! writes a batch, then *publishes* it: first the segment's `published` byte count, then the
//! partition's high watermark, then it wakes listeners. Readers load the high watermark first
//! and never read past `published`, so they see whole batches only. Under flush `always`
//! publication waits for the group-commit fsync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use bytes::Bytes;
use event_listener::{Event, EventListener};

use crate::batch::{self, Record, RecordBatch};
use crate::checkpoint::Point;
use crate::compaction::CleanerState;
use crate::config::{FlushPolicy, TopicConfig};
use crate::error::{AppendError, BatchError, StorageError};
use crate::io::{Io, write_all_at};
use crate::producers::{BatchProducer, ProducerState};
use crate::segment::Segment;
use crate::sync::GroupCommit;

mod durable;
mod read;
mod txn;

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

/// What [`Partition::read_into`] put in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadInto {
    /// Bytes of whole, CRC-checked v2 batches at the start of the buffer (0 if none).
    pub len: usize,
    /// High watermark when the read started.
    pub high_watermark: i64,
    /// Log start offset when the read started.
    pub log_start_offset: i64,
    /// Offset after the last batch read (the requested offset if none was).
    pub next_offset: i64,
}

/// Where [`Partition::read_into`] puts the bytes it reads: the caller's memory (a Wasm
/// guest's input buffer, say), so a read needs no buffer of its own and no second copy.
pub trait ReadBuffer {
    /// A writable buffer of at least `len` bytes, or `None` if none can be had. A read asks
    /// once, or twice when the first batch turns out larger than the first request; the
    /// second buffer replaces the first (its contents need not be kept).
    fn buffer(&mut self, len: usize) -> Option<&mut [u8]>;
}

impl ReadBuffer for Vec<u8> {
    fn buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        self.clear();
        self.resize(len, 0);
        Some(&mut self[..])
    }
}

/// Settings every partition of a log shares.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub io: Arc<dyn Io>,
    pub max_batch_bytes: usize,
    pub index_interval: u64,
    /// Set whenever a partition's durable point moves, so the flusher knows the recovery
    /// checkpoint is out of date.
    pub checkpoint_dirty: Arc<AtomicBool>,
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
    /// The producer fields of an idempotent or transactional batch.
    producer: Option<BatchProducer>,
}

/// How far the partition is known durable, in two measures: a position in the segment files
/// (what the recovery checkpoint stores) and a count of appended bytes (to compare with
/// `Partition::appended`, so the flusher can tell how much a recovery would have to scan).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Durable {
    pub point: Point,
    pub total: u64,
}

/// What the writer had written at one instant, taken under the writer lock.
#[derive(Debug, Clone)]
struct Snapshot {
    seg: Arc<Segment>,
    size: u64,
    next: i64,
    max_ts: Option<i64>,
    total: u64,
    /// Whether every rolled segment was sealed: only then may the durable point move into
    /// the active segment.
    all_sealed: bool,
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
    pub(crate) last_sync_ms: AtomicI64,
    failed: AtomicBool,
    closed: AtomicBool,
    event: Event,
    /// Segments rolled under `never`/`interval` whose seal (fsync, index trim) the background
    /// flusher still owes, with the value of `appended` at their end. Sealing inline would
    /// stall the appender behind an fsync of a whole segment, which is the cost `never`
    /// exists to avoid.
    pending_seal: Mutex<Vec<(Arc<Segment>, u64)>>,
    /// Bytes appended since open, plus those recovery found after the durable point. Only
    /// grows; `Durable::total` and `checkpointed` are measured on the same scale.
    appended: AtomicU64,
    /// The prefix known durable: advanced only after a successful fsync (group commit, flush,
    /// seal), never after a failed one, and read by the checkpoint writer.
    durable: Mutex<Durable>,
    /// `Durable::total` as of the newest checkpoint file written.
    pub(crate) checkpointed: AtomicU64,
    /// Whether the partition directory was fsynced since segment files were created in it.
    /// New partitions defer it to their first fsync, so creating a topic of many partitions
    /// costs one directory fsync rather than one per partition.
    dir_synced: AtomicBool,
    /// Serializes sealing and background fsyncs (flusher, `flush`, `close`), so the durable
    /// point is never moved past a segment another thread is still sealing.
    maint: Mutex<()>,
    /// Serializes retention and compaction passes.
    pub(crate) retention: Mutex<()>,
    /// The compactor's bookkeeping (`compaction.rs`).
    pub(crate) cleaner: Mutex<CleanerState>,
    /// Idempotent and transactional producers (`producers.rs`); changed under the writer
    /// lock, after it in lock order.
    pub(crate) producers: Mutex<ProducerState>,
    /// First offset of the oldest open transaction (`i64::MAX` if none); the last stable
    /// offset is the lower of it and the high watermark.
    pub(crate) first_unstable: AtomicI64,
}

thread_local! {
    /// Per-thread encoding buffer: reusing it avoids faulting in fresh pages on every append,
    /// which costs more than encoding itself for large batches.
    static ENCODE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A lower bound on the size of a v2 batch holding only `r`: the 61-byte batch header plus
/// the record's key, value and header bytes (varint framing not counted). Close enough to
/// decide whether a record fits `max_message_bytes` without encoding it first.
fn alone_as_batch_bytes(r: &Record<'_>) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
        .sum();
    61 + r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len) + headers
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What recovery hands to [`Partition::assemble`] besides the segments.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The durable, validated prefix recovery established.
    pub durable: Point,
    /// Bytes after `durable` (what a crash right now would make recovery scan).
    pub lag: u64,
    /// Whether the partition directory is known durable with all its segment files.
    pub dir_synced: bool,
}

impl Partition {
    /// Assembles a recovered partition (see `recovery`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        topic: &str,
        id: u32,
        dir: PathBuf,
        ctx: Ctx,
        config: TopicConfig,
        segments: Vec<Arc<Segment>>,
        writer: Writer,
        recovered: Recovered,
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
            last_sync_ms: AtomicI64::new(now_ms()),
            failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            event: Event::new(),
            pending_seal: Mutex::new(Vec::new()),
            appended: AtomicU64::new(recovered.lag),
            durable: Mutex::new(Durable {
                point: recovered.durable,
                total: 0,
            }),
            checkpointed: AtomicU64::new(0),
            dir_synced: AtomicBool::new(recovered.dir_synced),
            maint: Mutex::new(()),
            retention: Mutex::new(()),
            cleaner: Mutex::new(CleanerState::default()),
            first_unstable: AtomicI64::new(i64::MAX),
            producers: Mutex::new(ProducerState::default()),
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
    /// Whether an fsync, seal or truncate failed, so the partition refuses writes until the
    /// log is reopened.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
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
        lock(&self.writer)
    }

    /// Encodes `records` as one uncompressed v2 batch and appends it.
    pub fn append(&self, records: &[Record<'_>]) -> Result<AppendInfo, AppendError> {
        if records.is_empty() {
            return Err(AppendError::Empty);
        }
        if self.config.cleanup_policy.compacts() && records.iter().any(|r| r.key.is_none()) {
            return Err(AppendError::NullKeyInCompactedTopic);
        }
        let max = self.config.max_message_bytes;
        if let Some(size) = records
            .iter()
            .map(alone_as_batch_bytes)
            .find(|&n| n > max as usize)
        {
            return Err(AppendError::MessageTooLarge { size, max });
        }
        let now = now_ms();
        let mut buf = batch::encode(records, now);
        let (b, _) = RecordBatch::parse(&buf)?;
        let p = Pending {
            at: 0,
            delta: b.last_offset_delta(),
            max_ts: b.max_timestamp(),
            producer: None,
        };
        self.write(&mut buf, &[p], now)
    }

    /// Appends one raw v2 batch as a producer sent it (any codec, stored as is).
    ///
    /// Checks it with [`RecordBatch::validate_producer_batch`] (length, magic, CRC, record
    /// count, timestamps and, for uncompressed batches, every record), then assigns the base
    /// offset by overwriting the first 8 bytes of `batch`, which the CRC does not cover.
    /// `batch` must hold exactly one batch; use [`append_batches`](Self::append_batches) for
    /// several.
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
        let mut fix = Vec::new();
        let mut at = 0;
        for b in batch::batches(buf) {
            let b = b?;
            let mut max_ts = b.max_timestamp();
            if let Some(computed) = b.validate_producer_batch()?
                && computed != max_ts
            {
                // Stored with the records' real maximum, so the time index and ListOffsets
                // see it (Kafka's LogValidator rewrites it too; some producers send -1).
                fix.push((at, computed));
                max_ts = computed;
            }
            if self.config.cleanup_policy.compacts() && !b.is_control() {
                // Compressed batches cannot be checked here (the log does not decompress);
                // the Kafka door checks them after decompressing.
                for r in b.records() {
                    if r.is_ok_and(|r| r.key.is_none()) {
                        return Err(AppendError::NullKeyInCompactedTopic);
                    }
                }
            }
            let len = b.as_bytes().len();
            // Kafka checks every batch a producer sends against the topic's limit.
            let max = self.config.max_message_bytes;
            if len > max as usize {
                return Err(AppendError::MessageTooLarge { size: len, max });
            }
            pending.push(Pending {
                at,
                delta: b.last_offset_delta(),
                max_ts,
                producer: BatchProducer::of(&b),
            });
            at += len;
        }
        for (at, ts) in fix {
            batch::set_max_timestamp(&mut buf[at..], ts);
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
        // Index entries hold offsets relative to the segment as u32, so one append must fit
        // in an empty segment; `roll_due` rolls before any append that would not fit in the
        // current one.
        if records > i64::from(u32::MAX) {
            return Err(BatchError::TooManyRecords { records }.into());
        }
        let mut w = self.lock_writer();
        if self.closed.load(Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(AppendError::Failed);
        }
        if w.next_offset.checked_add(records).is_none() {
            return Err(BatchError::TooManyRecords { records }.into());
        }
        if self.roll_due(&w, buf.len() as u64, records, now) {
            self.roll(&mut w, now)
                .map_err(|e| self.fail(AppendError::Io(e)))?;
        }
        if let Some(dup) = self.check_producers(w.next_offset, batches)? {
            return Ok(dup);
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
            // recovery has validated it. The durable point is below `pos`, so the cut never
            // reaches anything a checkpoint may describe.
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
                before = Some(before.map_or(p.max_ts, |b| b.max(p.max_ts)));
                o += i64::from(p.delta) + 1;
            }
        }
        for p in batches {
            seg.note_max_ts(Some(p.max_ts));
        }
        // Every batch written here had its CRC computed (`append`) or checked
        // (`append_batches`) moments ago, so readers need not check these bytes again: the
        // first read of freshly appended records was paying a second CRC pass.
        let _ = seg.verified.compare_exchange(
            pos,
            pos + buf.len() as u64,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        w.size = pos + buf.len() as u64;
        w.next_offset = next;
        self.apply_producers(base, batches, now);
        self.appended.fetch_add(buf.len() as u64, Ordering::AcqRel);
        seg.written.store(w.size, Ordering::Release);
        seg.end_offset.store(next, Ordering::Release);
        let info = AppendInfo {
            base_offset: base,
            last_offset: next - 1,
            log_append_time_ms: now,
        };
        if self.config.flush != FlushPolicy::Always {
            self.publish(&seg, w.size, next);
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

    fn failed_error(&self) -> StorageError {
        StorageError::PartitionFailed {
            topic: self.topic.clone(),
            partition: self.id,
        }
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
