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
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rill_engine::{KeyBytes, StateKey, StateView, StateWrites};

pub(crate) use changelog::{Apply, Changelog, LogChangelog, changelog_records, encode_position};

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
    /// [`Serving`], as a `u8`.
    serving: AtomicU8,
    /// Changes applied since the last snapshot.
    unsaved: AtomicU64,
    snapshot: PathBuf,
    last_snapshot: std::sync::Mutex<Instant>,
    /// How long the last restore took, in ms.
    restore_ms: AtomicU64,
}

impl std::fmt::Debug for PartitionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionStore")
            .field("partition", &self.partition)
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

/// Whether a store serves reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serving {
    /// No worker of this host runs the partition (not yet, or it runs on another host).
    Elsewhere = 0,
    /// Its worker is restoring it.
    Restoring = 1,
    /// Restored: it holds the committed state.
    Ready = 2,
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
            serving: AtomicU8::new(Serving::Elsewhere as u8),
            unsaved: AtomicU64::new(0),
            snapshot,
            // The first snapshot may come as soon as enough changed: a host restarted more
            // often than SNAPSHOT_EVERY would otherwise never write one.
            last_snapshot: std::sync::Mutex::new(
                Instant::now()
                    .checked_sub(SNAPSHOT_EVERY)
                    .unwrap_or_else(Instant::now),
            ),
            restore_ms: AtomicU64::new(0),
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

    /// Whether the store serves reads.
    pub fn serving(&self) -> Serving {
        match self.serving.load(Relaxed) {
            1 => Serving::Restoring,
            2 => Serving::Ready,
            _ => Serving::Elsewhere,
        }
    }

    fn is_ready(&self) -> bool {
        self.serving() == Serving::Ready
    }

    /// The worker stopped (the deployment stops, or in cluster mode the partition moved to
    /// another host): a snapshot is written and the memory released.
    pub fn release(&self) {
        self.maybe_snapshot(true);
        self.serving.store(Serving::Elsewhere as u8, Relaxed);
        *self.write() = BTreeMap::new();
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
        let started = Instant::now();
        self.serving.store(Serving::Restoring as u8, Relaxed);
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
        // Changes apply when their position marker is read: records after the last marker
        // are the prefix of a write cut short (a producer that died mid-invocation, in
        // cluster mode; the log appends a batch whole), and are dropped.
        let mut read = 0u64;
        let mut pending: Vec<(StateKey, Option<Vec<u8>>)> = Vec::new();
        let next = changelog.replay(self.partition, from, &mut |key, value| {
            read += 1;
            if !key.is_empty() {
                pending.push((StateKey::new(key), value.map(<[u8]>::to_vec)));
                return;
            }
            if let Some(p) = value.and_then(changelog::decode_position) {
                position = p;
            }
            for (k, v) in pending.drain(..) {
                match v {
                    Some(v) => {
                        map.insert(k, v);
                    }
                    None => {
                        map.remove(KeyBytes::new(k.as_bytes()));
                    }
                }
            }
        })?;
        if !pending.is_empty() {
            tracing::warn!(
                partition = self.partition,
                records = pending.len(),
                "state changelog ends with changes that have no position marker (a write cut \
                 short); they are ignored"
            );
        }
        let keys = map.len();
        *self.write() = map;
        self.position.store(position, Relaxed);
        self.changelog_next.store(next, Relaxed);
        self.unsaved.store(read, Relaxed);
        self.restore_ms
            .store(started.elapsed().as_millis() as u64, Relaxed);
        self.serving.store(Serving::Ready as u8, Relaxed);
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

/// Writes the state metrics of `all` (deployment name, its state): keys, position and the
/// last restore's duration, per partition this host runs.
pub(crate) fn render_metrics(all: &[(String, Arc<DeploymentState>)], out: &mut String) {
    use std::fmt::Write;
    if all.is_empty() {
        return;
    }
    type Family = (&'static str, &'static str, fn(&PartitionStore) -> f64);
    let families: [Family; 3] = [
        (
            "rill_state_keys",
            "Keys in a partition's durable state store.",
            |s| s.read().len() as f64,
        ),
        (
            "rill_state_position",
            "The next source offset a partition's state reflects.",
            |s| s.position() as f64,
        ),
        (
            "rill_state_restore_seconds",
            "How long the last restore of a partition's state took.",
            |s| s.restore_ms.load(Relaxed) as f64 / 1000.0,
        ),
    ];
    for (name, help, value) in families {
        crate::metrics::family(out, name, "gauge", help);
        for (deployment, state) in all {
            for s in state.partitions.iter().filter(|s| s.is_ready()) {
                let _ = writeln!(
                    out,
                    "{name}{{deployment=\"{}\",partition=\"{}\"}} {}",
                    crate::metrics::escape(deployment),
                    s.partition(),
                    value(s)
                );
            }
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
