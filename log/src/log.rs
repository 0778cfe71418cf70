//! Opening a data dir: topics, consumer offsets, the recovery checkpoint and the background
//! flusher.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::checkpoint::{self, Loaded};
use crate::config::{FlushPolicy, TopicConfig};
use crate::error::{OpenError, StorageError, TopicError, io_at};
use crate::io::{Io, RealIo};
use crate::offsets::Offsets;
use crate::partition::{Ctx, now_ms, partition_dir};
use crate::producers;
use crate::txn::Coordinator;

mod txn;
use crate::compaction::CompactionReport;
use crate::recovery::{CheckpointStatus, Job, RecoveryEvent, RecoveryStats, open_all};
use crate::retention::RetentionReport;
use crate::topic::{Topic, valid_topic_name};

/// Name of the clean-shutdown marker older builds wrote in the data dir. The recovery
/// checkpoint replaces it; it is removed on open.
const LEGACY_CLEAN_MARKER: &str = ".clean-shutdown";

/// Options of a [`Log`].
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Flush policy of the consumer-offsets store (default `Never`).
    pub offsets_flush: FlushPolicy,
    /// The file-system seam (default: the real file system).
    pub io: Arc<dyn Io>,
    /// Largest accepted append, in bytes (default 64 MiB).
    pub max_batch_bytes: usize,
    /// Bytes between sparse index entries (default 4096).
    pub index_interval_bytes: u64,
    /// How often the recovery checkpoint is rewritten when a partition's durable point
    /// moved, in ms (default 1000). Each write costs two fsyncs.
    pub checkpoint_interval_ms: u64,
    /// Bound on what a recovery after a crash has to CRC-scan, in bytes across all
    /// partitions (default 256 MiB): once more than this lies after the checkpoint, the
    /// flusher fsyncs the partitions with the most unsynced data (under every flush policy,
    /// `never` included) and rewrites the checkpoint at once.
    pub recovery_scan_budget_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            offsets_flush: FlushPolicy::Never,
            io: Arc::new(RealIo),
            max_batch_bytes: 64 << 20,
            index_interval_bytes: 4096,
            checkpoint_interval_ms: 1000,
            recovery_scan_budget_bytes: 256 << 20,
        }
    }
}

/// A data dir: topics of partitioned logs plus consumer-group offsets. `Send + Sync`.
#[derive(Debug)]
pub struct Log {
    inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    recovery: Vec<RecoveryEvent>,
    stats: RecoveryStats,
    /// Held for the life of the `Log` so a second process cannot open the same dir.
    _lock: File,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    ctx: Ctx,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    offsets: Offsets,
    /// The transaction coordinator (`crate::txn`).
    txn: Coordinator,
    closed: AtomicBool,
    crashed: AtomicBool,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    checkpoint_interval_ms: u64,
    scan_budget: u64,
    /// Serializes checkpoint writes, and holds when the last one happened. Collecting the
    /// points and writing the file happen under it, so a topic deleted meanwhile can never
    /// reappear in a file written after its deletion's.
    checkpoint: Mutex<i64>,
}

fn open_io(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Log {
    /// Opens (creating) the data dir `dir` and recovers every partition.
    ///
    /// Only what lies after each partition's recovery checkpoint is CRC-scanned (after a
    /// clean [`close`](Self::close), nothing); torn or invalid tails are cut. Partitions are
    /// recovered in parallel. See [`recovery_report`](Self::recovery_report) and
    /// [`recovery_stats`](Self::recovery_stats).
    pub fn open(dir: impl AsRef<Path>, opts: LogOptions) -> Result<Log, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        let io = opts.io.clone();
        let topics_dir = dir.join("topics");
        io.create_dir_all(&topics_dir)
            .map_err(open_io(&topics_dir))?;
        let lock_path = dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(open_io(&lock_path))?;
        lock.try_lock().map_err(|e| OpenError::Io {
            path: lock_path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!("data dir in use by another Log: {e}"),
            ),
        })?;
        let ctx = Ctx {
            io: io.clone(),
            max_batch_bytes: opts.max_batch_bytes,
            index_interval: opts.index_interval_bytes.max(1),
            checkpoint_dirty: Arc::new(AtomicBool::new(true)),
        };
        let cp_path = checkpoint::path(&dir);
        let (points, status) = match checkpoint::read(&*io, &dir).map_err(open_io(&cp_path))? {
            Loaded::Missing => (Default::default(), CheckpointStatus::Missing),
            Loaded::Invalid(reason) => {
                tracing::warn!(path = %cp_path.display(), %reason, "ignoring the recovery checkpoint");
                (Default::default(), CheckpointStatus::Invalid(reason))
            }
            Loaded::Points(p) => (p, CheckpointStatus::Loaded),
        };
        let mut stats = RecoveryStats {
            checkpoint: status,
            ..RecoveryStats::default()
        };
        let mut rewrite = !matches!(stats.checkpoint, CheckpointStatus::Loaded);
        // Read every topic's config first, then recover all partitions of all topics together.
        let mut configs = Vec::new();
        for e in std::fs::read_dir(&topics_dir).map_err(open_io(&topics_dir))? {
            let e = e.map_err(open_io(&topics_dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            // A directory without topic.toml is a topic whose creation did not finish.
            if !valid_topic_name(&name) || !e.path().join("topic.toml").exists() {
                continue;
            }
            let config = Topic::read_config(&e.path())?;
            configs.push((name, e.path(), config));
        }
        configs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut producers = producers::read_snapshots(&*io, &dir).map_err(open_io(&dir))?;
        let mut jobs = Vec::new();
        for (name, tdir, config) in &configs {
            for id in 0..config.partitions {
                jobs.push(Job {
                    topic: name.clone(),
                    id,
                    dir: partition_dir(tdir, id),
                    config: config.clone(),
                    checkpoint: points.get(&(name.clone(), id)).copied(),
                    producers: producers.remove(&(name.clone(), id)),
                });
            }
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        let mut opened = open_all(jobs, &ctx, threads).into_iter();
        let mut events = Vec::new();
        let mut topics = BTreeMap::new();
        for (name, tdir, config) in configs {
            let mut partitions = Vec::with_capacity(config.partitions as usize);
            let mut created_dir = false;
            for _ in 0..config.partitions {
                let Some((pdir, o)) = opened.next() else {
                    break;
                };
                let o = o.map_err(|source| OpenError::Io { path: pdir, source })?;
                stats.partitions += 1;
                stats.bytes_scanned += o.bytes_scanned;
                stats.bytes_walked += o.bytes_walked;
                stats.partitions_from_checkpoint += usize::from(o.from_checkpoint);
                rewrite |= o.rewrite_checkpoint;
                created_dir |= o.created_dir;
                events.extend(o.events);
                partitions.push(Arc::new(o.partition));
            }
            if created_dir {
                io.sync_dir(&tdir).map_err(open_io(&tdir))?;
            }
            topics.insert(
                name.clone(),
                Arc::new(Topic::from_parts(tdir, &name, config, partitions)),
            );
        }
        let offsets = Offsets::open(&dir.join("offsets"), io.clone(), opts.offsets_flush)?;
        let legacy = dir.join(LEGACY_CLEAN_MARKER);
        if legacy.exists() {
            io.remove_file(&legacy).map_err(open_io(&legacy))?;
            io.sync_dir(&dir).map_err(open_io(&dir))?;
        }
        let txn = Coordinator::open(io.clone(), &dir).map_err(open_io(&dir))?;
        let inner = Arc::new(Inner {
            dir,
            ctx,
            topics: RwLock::new(topics),
            offsets,
            txn,
            closed: AtomicBool::new(false),
            crashed: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            checkpoint_interval_ms: opts.checkpoint_interval_ms.max(1),
            scan_budget: opts.recovery_scan_budget_bytes,
            checkpoint: Mutex::new(now_ms()),
        });
        if rewrite {
            // The file on disk was unusable or describes bytes recovery has just cut: replace
            // it before anything is appended at those positions again.
            inner.write_checkpoint().map_err(open_io(&cp_path))?;
        }
        inner.txn.recover(&*inner);
        let bg = inner.clone();
        let flusher = std::thread::Builder::new()
            .name("rill-log-flusher".into())
            .spawn(move || bg.flusher_loop())
            .map_err(open_io(&inner.dir))?;
        Ok(Log {
            inner,
            flusher: Mutex::new(Some(flusher)),
            recovery: events,
            stats,
            _lock: lock,
        })
    }

    fn topics_read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.inner.topics.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a topic with `cfg.partitions` empty partitions.
    pub fn create_topic(&self, name: &str, cfg: TopicConfig) -> Result<Arc<Topic>, TopicError> {
        if !valid_topic_name(name) {
            return Err(TopicError::InvalidName(name.to_string()));
        }
        cfg.validate().map_err(TopicError::InvalidConfig)?;
        let dir = self.inner.dir.join("topics").join(name);
        if !self.topics_read().contains_key(name) && dir.exists() {
            // Left over from a creation or deletion that did not finish. The checkpoint may
            // still hold points for a topic of this name; rewrite it (without them: only
            // topics in the map are written) before the new topic's files exist, so they are
            // never applied to the new partitions. Done before taking the topics lock, which
            // the checkpoint writer takes after its own.
            self.inner
                .write_checkpoint()
                .map_err(|source| TopicError::Io {
                    path: checkpoint::path(&self.inner.dir),
                    source,
                })?;
        }
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(TopicError::Closed);
        }
        if topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        if dir.exists() {
            self.inner
                .ctx
                .io
                .remove_dir_all(&dir)
                .map_err(|source| TopicError::Io {
                    path: dir.clone(),
                    source,
                })?;
        }
        let t = Arc::new(Topic::create(dir, name, cfg, &self.inner.ctx)?);
        topics.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics_read().get(name).cloned()
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics_read().values().cloned().collect()
    }

    /// Grows topic `name` to `count` partitions (Kafka's CreatePartitions); the new ones are
    /// empty. The count never shrinks: `count` at or below the current one is
    /// [`TopicError::InvalidPartitions`]. Handles to the topic taken before keep seeing the
    /// old partition list; look the topic up again to see the new one.
    pub fn create_partitions(&self, name: &str, count: u32) -> Result<Arc<Topic>, TopicError> {
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(TopicError::Closed);
        }
        let old = topics
            .get(name)
            .ok_or_else(|| TopicError::NotFound(name.to_string()))?;
        let current = old.partitions().len() as u32;
        if count <= current {
            return Err(TopicError::InvalidPartitions {
                current,
                requested: count,
            });
        }
        let grown = Arc::new(old.grow(count, &self.inner.ctx)?);
        topics.insert(name.to_string(), grown.clone());
        Ok(grown)
    }

    /// Deletes a topic and its files. Appends through handles still held fail with `Closed`.
    pub fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let t = {
            let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
            topics
                .remove(name)
                .ok_or_else(|| TopicError::NotFound(name.to_string()))?
        };
        // Closing first stops appends; errors syncing data about to be deleted do not matter.
        let _ = t.close();
        // Drop the topic's points from the checkpoint before its files go, so that a topic
        // created later under the same name never inherits them. If that fails the files
        // stay, and the topic reappears at the next open, still matching its points.
        self.inner
            .write_checkpoint()
            .map_err(|source| TopicError::Io {
                path: checkpoint::path(&self.inner.dir),
                source,
            })?;
        t.remove_files(&*self.inner.ctx.io)
            .map_err(|source| TopicError::Io {
                path: t.dir.clone(),
                source,
            })
    }

    /// The consumer-group offsets store.
    pub fn offsets(&self) -> &Offsets {
        &self.inner.offsets
    }

    /// What [`open`](Self::open) found and repaired.
    pub fn recovery_report(&self) -> &[RecoveryEvent] {
        &self.recovery
    }

    /// How much [`open`](Self::open) had to read, and whether it used the checkpoint.
    pub fn recovery_stats(&self) -> &RecoveryStats {
        &self.stats
    }

    /// Compacts every partition of every compacted topic (see
    /// [`Partition::compact`](crate::Partition::compact)). Call it periodically.
    pub fn compact(&self) -> Result<CompactionReport, StorageError> {
        self.compact_at(now_ms())
    }

    /// [`compact`](Self::compact) as if the time were `now_ms`. A partition that fails does
    /// not keep the others from being compacted; the first error is returned after all were
    /// tried.
    pub fn compact_at(&self, now_ms: i64) -> Result<CompactionReport, StorageError> {
        let mut report = CompactionReport::default();
        let mut first_error = None;
        for p in self.inner.partitions() {
            match p.compact(now_ms) {
                Ok(r) => report.add(&r),
                Err(e) => {
                    tracing::warn!(topic = p.topic(), partition = p.id(), error = %e, "compaction failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Deletes sealed segments that break their topic's retention. Call it periodically.
    pub fn enforce_retention(&self) -> Result<RetentionReport, StorageError> {
        self.enforce_retention_at(now_ms())
    }

    /// [`enforce_retention`](Self::enforce_retention) as if the time were `now_ms`.
    pub fn enforce_retention_at(&self, now_ms: i64) -> Result<RetentionReport, StorageError> {
        let mut report = RetentionReport::default();
        for t in self.topics() {
            for p in t.partitions() {
                report.add(p.enforce_retention(now_ms)?);
            }
        }
        Ok(report)
    }

    /// Seals rolled segments, fsyncs every partition with unsynced data, writes the recovery
    /// checkpoint and fsyncs the offsets store. Every partition is tried; the first error is
    /// returned.
    pub fn flush(&self) -> Result<(), StorageError> {
        let mut first = Ok(());
        for t in self.topics() {
            for p in t.partitions() {
                if let Err(e) = p.flush()
                    && first.is_ok()
                {
                    first = Err(e);
                }
            }
        }
        let written = self.inner.write_checkpoint().map_err(self.checkpoint_err());
        let offsets = self.inner.offsets.flush().map_err(StorageError::from);
        let txn = self.inner.txn.sync();
        first.and(written).and(offsets).and(txn)
    }

    fn checkpoint_err(&self) -> impl FnOnce(std::io::Error) -> StorageError {
        io_at(checkpoint::path(&self.inner.dir))
    }

    /// Seals, fsyncs and closes every partition, writes the recovery checkpoint (so the next
    /// open scans nothing) and flushes the offsets store. Appends fail afterwards. Also done
    /// (best effort) on drop.
    ///
    /// A partition that failed earlier is closed without an fsync, and its checkpoint point
    /// stays where its last successful fsync put it, so the next open validates its tail;
    /// `close` then returns [`StorageError::PartitionFailed`] (after closing everything else).
    pub fn close(&self) -> Result<(), StorageError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.stop_flusher();
        let mut first = Ok(());
        for t in self.topics() {
            if let Err(e) = t.close()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        let written = self.inner.write_checkpoint().map_err(self.checkpoint_err());
        let offsets = self.inner.offsets.flush().map_err(StorageError::from);
        let txn = self.inner.txn.sync();
        first.and(written).and(offsets).and(txn)
    }

    /// Drops the log as a crashed process would: nothing is flushed, trimmed or marked clean.
    /// For crash tests.
    #[doc(hidden)]
    pub fn simulate_crash(self) {
        self.inner.crashed.store(true, Ordering::Release);
    }

    fn stop_flusher(&self) {
        *self.inner.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.inner.stop_cv.notify_all();
        let handle = self
            .flusher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if self.inner.crashed.load(Ordering::Acquire) {
            self.stop_flusher();
            return;
        }
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing the log on drop failed");
        }
    }
}

impl Inner {
    fn partitions(&self) -> Vec<Arc<crate::Partition>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flat_map(|t| t.partitions().iter().cloned())
            .collect()
    }

    /// Writes every partition's durable point to the checkpoint file.
    fn write_checkpoint(&self) -> std::io::Result<()> {
        let mut last = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
        *last = now_ms();
        // Cleared before the points are read: a point that moves meanwhile sets it again.
        self.ctx.checkpoint_dirty.store(false, Ordering::Release);
        let parts = self.partitions();
        let durable: Vec<_> = parts.iter().map(|p| p.durable()).collect();
        let points: Vec<_> = parts
            .iter()
            .zip(&durable)
            .map(|(p, d)| ((p.topic().to_string(), p.id()), d.point))
            .collect();
        if let Err(e) = checkpoint::write(&*self.ctx.io, &self.dir, &points) {
            self.ctx.checkpoint_dirty.store(true, Ordering::Release);
            return Err(e);
        }
        producers::write_snapshots(&*self.ctx.io, &self.dir, &parts)?;
        for (p, d) in parts.iter().zip(&durable) {
            p.checkpointed.fetch_max(d.total, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Keeps what a crash would make recovery scan under `scan_budget`: fsyncs the partitions
    /// with the most unsynced data until at most half the budget is left unsynced, then
    /// rewrites the checkpoint. Returns whether it wrote one.
    fn enforce_scan_budget(&self, parts: &[Arc<crate::Partition>]) -> bool {
        let unchecked: u64 = parts.iter().map(|p| p.unchecked_bytes()).sum();
        if unchecked <= self.scan_budget {
            return false;
        }
        let mut by_size: Vec<(u64, &Arc<crate::Partition>)> = parts
            .iter()
            .filter(|p| !p.is_failed())
            .map(|p| (p.unsynced_bytes(), p))
            .filter(|(n, _)| *n > 0)
            .collect();
        by_size.sort_by_key(|b| std::cmp::Reverse(b.0));
        let mut unsynced: u64 = by_size.iter().map(|(n, _)| n).sum();
        for (n, p) in by_size {
            if unsynced <= self.scan_budget / 2 {
                break;
            }
            if let Err(e) = p.flush() {
                tracing::error!(topic = p.topic(), partition = p.id(), error = %e, "fsync for the recovery checkpoint failed");
            }
            unsynced = unsynced.saturating_sub(n);
        }
        if let Err(e) = self.write_checkpoint() {
            tracing::error!(error = %e, "writing the recovery checkpoint failed");
        }
        true
    }

    /// Background thread: seals rolled segments, fsyncs partitions under `IntervalMs` (and
    /// the offsets store) once their interval has passed, keeps the recovery scan within its
    /// budget and rewrites the recovery checkpoint when it is out of date.
    fn flusher_loop(&self) {
        let mut last_offsets_sync = now_ms();
        let mut last_txn_sync = now_ms();
        loop {
            let topics: Vec<Arc<Topic>> = self
                .topics
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            let mut tick = 100u64;
            let now = now_ms();
            for p in topics.iter().flat_map(|t| t.partitions()) {
                if let Err(e) = p.seal_rolled() {
                    tracing::error!(topic = p.topic(), partition = p.id(), error = %e, "sealing a segment failed");
                }
            }
            for t in &topics {
                if let FlushPolicy::IntervalMs(ms) = t.config().flush {
                    tick = tick.min((ms / 2).max(1));
                    for p in t.partitions() {
                        let due = now - p.last_sync_ms.load(Ordering::Acquire) >= ms as i64;
                        if due
                            && !p.is_failed()
                            && p.unsynced_bytes() > 0
                            && let Err(e) = p.flush()
                        {
                            tracing::error!(topic = t.name(), partition = p.id(), error = %e, "background fsync failed");
                        }
                    }
                }
            }
            let parts: Vec<_> = topics
                .iter()
                .flat_map(|t| t.partitions().iter().cloned())
                .collect();
            let wrote = self.enforce_scan_budget(&parts);
            let last = *self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
            if !wrote
                && self.ctx.checkpoint_dirty.load(Ordering::Acquire)
                && now - last >= self.checkpoint_interval_ms as i64
                && let Err(e) = self.write_checkpoint()
            {
                tracing::error!(error = %e, "writing the recovery checkpoint failed");
            }
            // Once a second: every transactional id's state is visited to find timeouts.
            if now - last_txn_sync >= 1000 {
                last_txn_sync = now;
                self.txn.expire(self, now);
                if let Err(e) = self.txn.sync() {
                    tracing::error!(error = %e, "background fsync of the transaction state failed");
                }
            }
            if let Err(e) = self.offsets.maintain() {
                tracing::error!(error = %e, "completing an offsets generation switch failed");
            }
            if let FlushPolicy::IntervalMs(ms) = self.offsets.flush_policy() {
                tick = tick.min((ms / 2).max(1));
                if now - last_offsets_sync >= ms as i64 {
                    last_offsets_sync = now;
                    if let Err(e) = self.offsets.flush() {
                        tracing::error!(error = %e, "background offsets fsync failed");
                    }
                }
            }
            let stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
            let (stop, _) = self
                .stop_cv
                .wait_timeout(stop, Duration::from_millis(tick))
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
    }
}
