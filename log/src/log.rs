//! Opening a data dir: topics, consumer offsets, the clean-shutdown marker and the
//! background flusher.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{FlushPolicy, TopicConfig};
use crate::error::{OpenError, StorageError, TopicError, io_at};
use crate::io::{Io, RealIo, write_file_atomic};
use crate::offsets::Offsets;
use crate::partition::{Ctx, now_ms};
use crate::recovery::RecoveryEvent;
use crate::retention::RetentionReport;
use crate::topic::{Topic, valid_topic_name};

/// Name of the clean-shutdown marker in the data dir.
const CLEAN_MARKER: &str = ".clean-shutdown";

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
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            offsets_flush: FlushPolicy::Never,
            io: Arc::new(RealIo),
            max_batch_bytes: 64 << 20,
            index_interval_bytes: 4096,
        }
    }
}

/// A data dir: topics of partitioned logs plus consumer-group offsets. `Send + Sync`.
#[derive(Debug)]
pub struct Log {
    inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    recovery: Vec<RecoveryEvent>,
    /// Held for the life of the `Log` so a second process cannot open the same dir.
    _lock: File,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    ctx: Ctx,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    offsets: Offsets,
    closed: AtomicBool,
    crashed: AtomicBool,
    stop: Mutex<bool>,
    stop_cv: Condvar,
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
    /// After a clean [`close`](Self::close) nothing is scanned; otherwise the active segment
    /// of each partition is validated and cut at its first invalid byte. See
    /// [`recovery_report`](Self::recovery_report).
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
        let marker = dir.join(CLEAN_MARKER);
        let clean = marker.exists();
        let ctx = Ctx {
            io: io.clone(),
            max_batch_bytes: opts.max_batch_bytes,
            index_interval: opts.index_interval_bytes.max(1),
        };
        let mut events = Vec::new();
        let mut topics = BTreeMap::new();
        for e in std::fs::read_dir(&topics_dir).map_err(open_io(&topics_dir))? {
            let e = e.map_err(open_io(&topics_dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            // A directory without topic.toml is a topic whose creation did not finish.
            if !valid_topic_name(&name) || !e.path().join("topic.toml").exists() {
                continue;
            }
            let t = Topic::load(e.path(), &name, &ctx, clean, &mut events)?;
            topics.insert(name, Arc::new(t));
        }
        let offsets = Offsets::open(&dir.join("offsets"), io.clone(), opts.offsets_flush)?;
        if clean {
            // Remove the marker before anything can be appended, so a later crash is not
            // mistaken for a clean shutdown.
            io.remove_file(&marker).map_err(open_io(&marker))?;
            io.sync_dir(&dir).map_err(open_io(&dir))?;
        }
        let inner = Arc::new(Inner {
            dir,
            ctx,
            topics: RwLock::new(topics),
            offsets,
            closed: AtomicBool::new(false),
            crashed: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
        });
        let bg = inner.clone();
        let flusher = std::thread::Builder::new()
            .name("rill-log-flusher".into())
            .spawn(move || bg.flusher_loop())
            .map_err(open_io(&inner.dir))?;
        Ok(Log {
            inner,
            flusher: Mutex::new(Some(flusher)),
            recovery: events,
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
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(TopicError::Closed);
        }
        if topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let dir = self.inner.dir.join("topics").join(name);
        if dir.exists() {
            // Left over from a creation or deletion that did not finish.
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

    /// fsyncs every partition with unsynced data, and the offsets store.
    pub fn flush(&self) -> Result<(), StorageError> {
        for t in self.topics() {
            for p in t.partitions() {
                p.flush().map_err(io_at(&p.dir))?;
            }
        }
        self.inner.offsets.flush()?;
        Ok(())
    }

    /// Flushes everything, trims the active indexes and writes the clean-shutdown marker, so
    /// the next open skips recovery. Appends fail afterwards. Also done (best effort) on drop.
    pub fn close(&self) -> Result<(), StorageError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.stop_flusher();
        for t in self.topics() {
            t.close()
                .map_err(|(path, source)| StorageError::Io { path, source })?;
        }
        self.inner.offsets.flush()?;
        let marker = self.inner.dir.join(CLEAN_MARKER);
        write_file_atomic(&*self.inner.ctx.io, &marker, b"clean\n").map_err(io_at(&marker))?;
        Ok(())
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
    /// Background thread: fsyncs partitions under `IntervalMs` (and the offsets store) once
    /// their interval has passed since the last sync.
    fn flusher_loop(&self) {
        let mut last_offsets_sync = now_ms();
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
                if let Err(e) = p.seal_pending() {
                    tracing::error!(topic = p.topic(), partition = p.id(), error = %e, "sealing a segment failed");
                }
            }
            for t in &topics {
                if let FlushPolicy::IntervalMs(ms) = t.config().flush {
                    tick = tick.min((ms / 2).max(1));
                    for p in t.partitions() {
                        let due = now - p.last_sync_ms.load(Ordering::Acquire) >= ms as i64;
                        if due
                            && p.dirty.load(Ordering::Acquire)
                            && let Err(e) = p.flush()
                        {
                            tracing::error!(topic = t.name(), partition = p.id(), error = %e, "background fsync failed");
                        }
                    }
                }
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
