//! Durable keyed state for stateful handlers: one store per (deployment, partition),
//! consistent with the deployment's committed offsets.
//!
//! - **The store** ([`PartitionStore`]) is an ordered in-memory map of the partition's
//!   committed state, and the position it reflects (the next source offset). Guests read it
//!   through the engine's [`rill_engine::StateView`]; queries read it through the admin API.
//!   It changes only after an invocation's changes are durable, so it never shows anything
//!   uncommitted.
//! - **The changelog** (`changelog.rs`) is the durable copy: the compacted topic
//!   `<deployment>.state`, one partition per source partition. An invocation's changes go
//!   there as one batch, whose last record is a *position marker* (empty key, the next source
//!   offset as value): the changes and the position are one atomic append (and, exactly
//!   once, part of the invocation's transaction).
//! - **Snapshots** (`snapshot.rs`): a local copy of the map, and the changelog offset it
//!   covers, written when a worker stops cleanly and every few minutes. Restoring reads the
//!   snapshot and the changelog after it.
//!
//! The seam to the scheduler: the worker restores its store before its first record, passes
//! a [`rill_engine::StateHandle`] to its instance, hands an invocation's
//! [`rill_engine::StateWrites`] to its sink with the position, and applies them once durable
//! ([`PartitionStore::apply`]).

mod changelog;
mod snapshot;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rill_engine::{KeyBytes, StateKey, StateView, StateWrites};

pub(crate) use changelog::{Changelog, LogChangelog, changelog_records, encode_position};

/// The changelog topic of a deployment: `<deployment>.state`.
pub(crate) fn changelog_topic(deployment: &str) -> String {
    format!("{deployment}.state")
}

/// The stores of one stateful deployment.
pub(crate) struct DeploymentState {
    /// Its changelog topic.
    pub topic: String,
    /// One store per partition of the source topic.
    pub partitions: Vec<Arc<PartitionStore>>,
    /// Where the stores are restored from.
    pub changelog: Arc<dyn Changelog>,
}

impl DeploymentState {
    /// Empty stores for `partitions` partitions, with snapshots under `dir`.
    pub fn new(
        deployment: &str,
        partitions: u32,
        dir: PathBuf,
        changelog: Arc<dyn Changelog>,
    ) -> Self {
        DeploymentState {
            topic: changelog_topic(deployment),
            partitions: (0..partitions)
                .map(|p| Arc::new(PartitionStore::new(p, dir.join(format!("{p}.snapshot")))))
                .collect(),
            changelog,
        }
    }

    /// The store of `partition`.
    pub fn store(&self, partition: u32) -> Option<&Arc<PartitionStore>> {
        self.partitions.get(partition as usize)
    }
}

/// A partition's map: keys inline up to 22 bytes ([`StateKey`]), so a lookup compares keys
/// in the map's nodes instead of chasing a pointer per comparison.
pub(crate) type StateMap = BTreeMap<StateKey, Vec<u8>>;

/// One partition's committed state. See the module docs.
pub(crate) struct PartitionStore {
    partition: u32,
    map: RwLock<StateMap>,
    /// The next source offset the state reflects; -1 before anything was written.
    position: AtomicI64,
    /// The changelog offset after the last change applied (where a restore resumes).
    changelog_next: AtomicI64,
    /// Whether it was restored since the worker started.
    restored: std::sync::atomic::AtomicBool,
    /// Changes applied since the last snapshot.
    unsaved: AtomicU64,
    snapshot: PathBuf,
    last_snapshot: std::sync::Mutex<Instant>,
}

impl std::fmt::Debug for PartitionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionStore")
            .field("partition", &self.partition)
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

/// What a restore did, for the host's log and the benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Restored {
    /// Keys in the store after it.
    pub keys: usize,
    /// Entries read from the snapshot.
    pub from_snapshot: usize,
    /// Changelog records read after it.
    pub from_changelog: u64,
    /// The next source offset the state reflects (-1: none).
    pub position: i64,
}

/// Snapshot after this many changes, at most every [`SNAPSHOT_EVERY`].
const SNAPSHOT_CHANGES: u64 = 10_000;
const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(120);

impl PartitionStore {
    fn new(partition: u32, snapshot: PathBuf) -> Self {
        PartitionStore {
            partition,
            map: RwLock::new(BTreeMap::new()),
            position: AtomicI64::new(-1),
            changelog_next: AtomicI64::new(0),
            restored: std::sync::atomic::AtomicBool::new(false),
            unsaved: AtomicU64::new(0),
            snapshot,
            last_snapshot: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// The partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The next source offset the state reflects (-1: nothing written yet).
    pub fn position(&self) -> i64 {
        self.position.load(Relaxed)
    }

    /// Whether the store was restored and serves reads.
    pub fn is_ready(&self) -> bool {
        self.restored.load(Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, StateMap> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, StateMap> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.read().get(KeyBytes::new(key)).cloned()
    }

    /// Up to `limit` entries with keys in `[from, ..)` starting with `prefix`, in key order.
    pub fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        use std::ops::Bound;
        let map = self.read();
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(KeyBytes::new(a)),
            _ => Bound::Included(KeyBytes::new(prefix)),
        };
        map.range::<KeyBytes, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.as_bytes().starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect()
    }

    /// Applies an invocation's changes, made durable in the changelog up to
    /// `changelog_next`, and moves the position to `next`.
    pub fn apply(&self, writes: &StateWrites, next: i64, changelog_next: Option<i64>) {
        {
            let mut map = self.write();
            for (k, v) in writes.iter() {
                match v {
                    Some(v) => match map.get_mut(KeyBytes::new(k)) {
                        Some(old) => {
                            old.clear();
                            old.extend_from_slice(v);
                        }
                        None => {
                            map.insert(StateKey::new(k), v.to_vec());
                        }
                    },
                    None => {
                        map.remove(KeyBytes::new(k));
                    }
                }
            }
        }
        self.position.store(next, Relaxed);
        if let Some(c) = changelog_next {
            self.changelog_next.store(c, Relaxed);
        }
        self.unsaved.fetch_add(writes.len() as u64, Relaxed);
    }

    /// Rebuilds the store: from its snapshot, if it is usable, then the changelog after it.
    /// Called by the worker before its first record, and after an exactly-once commit whose
    /// outcome is unknown.
    pub fn restore(&self, changelog: &dyn Changelog) -> Result<Restored, String> {
        self.restored.store(false, Relaxed);
        let mut map = BTreeMap::new();
        let mut position = -1;
        let mut from = 0;
        let mut from_snapshot = 0;
        let bounds = changelog.bounds(self.partition)?;
        match snapshot::load(&self.snapshot) {
            Ok(Some(s)) if s.usable(bounds, changelog.max_snapshot_age_ms()) => {
                from_snapshot = s.map.len();
                map = s.map;
                position = s.position;
                from = s.changelog_next;
            }
            Ok(Some(_)) | Ok(None) => {}
            Err(e) => tracing::warn!(snapshot = %self.snapshot.display(),
                "state snapshot ignored, restoring from the changelog: {e}"),
        }
        let mut read = 0u64;
        let next = changelog.replay(self.partition, from, &mut |key, value| {
            read += 1;
            match (key.is_empty(), value) {
                (true, Some(v)) => {
                    if let Some(p) = changelog::decode_position(v) {
                        position = p;
                    }
                }
                (true, None) => {}
                (false, Some(v)) => {
                    map.insert(StateKey::new(key), v.to_vec());
                }
                (false, None) => {
                    map.remove(KeyBytes::new(key));
                }
            }
        })?;
        let keys = map.len();
        *self.write() = map;
        self.position.store(position, Relaxed);
        self.changelog_next.store(next, Relaxed);
        self.unsaved.store(read, Relaxed);
        self.restored.store(true, Relaxed);
        Ok(Restored {
            keys,
            from_snapshot,
            from_changelog: read,
            position,
        })
    }

    /// Writes a snapshot if enough changed since the last one (or `force`, at a clean
    /// stop). Failures are logged: a snapshot only makes restores shorter.
    pub fn maybe_snapshot(&self, force: bool) {
        let unsaved = self.unsaved.load(Relaxed);
        if unsaved == 0 || !self.is_ready() {
            return;
        }
        {
            let mut last = self.last_snapshot.lock().unwrap_or_else(|e| e.into_inner());
            if !force && (unsaved < SNAPSHOT_CHANGES || last.elapsed() < SNAPSHOT_EVERY) {
                return;
            }
            *last = Instant::now();
        }
        let map = self.read();
        let snap = snapshot::SnapshotRef {
            map: &map,
            position: self.position(),
            changelog_next: self.changelog_next.load(Relaxed),
        };
        match snapshot::write(&self.snapshot, &snap) {
            Ok(()) => self.unsaved.store(0, Relaxed),
            Err(e) => tracing::warn!(snapshot = %self.snapshot.display(),
                "cannot write the state snapshot: {e}"),
        }
    }
}

impl StateView for PartitionStore {
    fn get(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) {
        f(self.read().get(KeyBytes::new(key)).map(Vec::as_slice))
    }

    fn scan(&self, from: &[u8], to: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
        use std::ops::Bound;
        let map = self.read();
        let upper = to.map_or(Bound::Unbounded, |t| Bound::Excluded(KeyBytes::new(t)));
        for (k, v) in map.range::<KeyBytes, _>((Bound::Included(KeyBytes::new(from)), upper)) {
            if !f(k.as_bytes(), v) {
                return;
            }
        }
    }
}
