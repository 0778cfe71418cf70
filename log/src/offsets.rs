//! Durable consumer-group offsets, cheap enough to commit after every handler invocation.
//!
//! Two files under `<data>/offsets/`:
//!
//! - `names`: an append-only list of (group, topic) pairs, each given a key id. It is
//!   appended and fsynced only when a new pair first commits. Record:
//!   `len u32 BE | crc32c(payload) u32 BE | payload = id u32 BE, group_len u16 BE, group, topic`.
//! - `commits-<generation:020>`: a memory-mapped file of fixed 32-byte entries
//!   `key_id u32 | partition u32 | offset i64 | seq u64 | crc32c(bytes 0..24) u32 | flags u32`,
//!   all big-endian. A commit is one 32-byte store into the mapping, so it is in the page
//!   cache at once and survives a process crash. A negative offset is a tombstone
//!   (`delete_group`) unless flags has [`FLAG_NEGATIVE_VALUE`]: Kafka stores a committed
//!   negative offset as is (clients commit -1/-2 as reset markers), and so do we. Each generation starts with a marker entry (key id `u32::MAX`, offset =
//!   number of live entries copied after it), so recovery can tell a complete generation from
//!   one whose copy a machine crash interrupted.
//!
//! When a generation is a quarter full, a short-lived helper thread creates, preallocates and
//! maps the next one under its final name (an empty or partly written generation is
//! incomplete to replay). When the current one is full, the
//! live entries are copied into the prepared file, which already has its final name, under
//! the lock (a memcpy, no rename, no fsync); its fsync, the directory fsync, the unmapping
//! and removal of the old generation are left to the log's flusher thread (`maintain`). The old generation is removed only once the
//! new one is durable, and recovery replays the newest complete generation plus the valid
//! prefix of any newer one.
//!
//! Replay reads entries until the first one whose CRC fails or whose sequence number does not
//! increase: a torn last entry is simply ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use memmap2::MmapMut;

use crate::config::FlushPolicy;
use crate::error::OffsetsError;
use crate::io::{FileHandle, Io, write_all_at};
use crate::sync::GroupCommit;

mod entry;
mod generation;
mod names;

use entry::{ENTRY, MARKER_KEY, encode_entry, replay_generation};
use generation::{commits_path, remove_generations, write_generation};
use names::replay_names;

/// Entries in a fresh commits file (2 MiB).
const DEFAULT_CAP: usize = 64 * 1024;

/// The consumer-offsets store of a [`Log`](crate::Log).
#[derive(Debug)]
pub struct Offsets {
    dir: PathBuf,
    io: Arc<dyn Io>,
    policy: FlushPolicy,
    state: Mutex<State>,
    sync: GroupCommit,
    /// Set after a failed fsync: what reached the disk is unknown, so commits are refused.
    failed: AtomicBool,
    /// Where the helper thread leaves the next generation it prepared.
    incoming: Arc<Incoming>,
    /// The helper thread, joined on drop so it never outlives the store (it creates a file
    /// in the store's directory).
    helper: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The next generation, prepared off the hot path by a helper thread.
#[derive(Debug, Default)]
struct Incoming {
    ready: AtomicBool,
    slot: Mutex<Option<Result<Generation, OffsetsError>>>,
}

impl Drop for Offsets {
    fn drop(&mut self) {
        let helper = self
            .helper
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = helper {
            let _ = h.join();
        }
    }
}

/// One open commits file.
#[derive(Debug)]
struct Generation {
    map: MmapMut,
    file: Arc<dyn FileHandle>,
    generation: u64,
}

#[derive(Debug)]
struct State {
    ids: HashMap<String, HashMap<String, u32>>,
    keys: Vec<(String, String)>,
    /// The newest value written per (key id, partition): what a new generation must hold.
    committed: HashMap<(u32, u32), i64>,
    /// Under `always`, the commits written but not yet known durable, oldest first, with the
    /// value each replaced: a failed fsync rolls them back, so `fetch` never shows a commit
    /// that returned an error.
    undo: Vec<((u32, u32), Option<i64>, u64)>,
    names: Arc<dyn FileHandle>,
    names_len: u64,
    current: Generation,
    cursor: usize,
    seq: u64,
    dirty: bool,
    /// The next generation, preallocated and mapped, not yet renamed into place.
    next: Option<Generation>,
    preparing: bool,
    /// Newest generation whose rename a directory fsync has made durable.
    dir_synced: u64,
    /// Generations to remove once the current one is durable.
    stale: Vec<u64>,
    /// A switch happened whose fsyncs and cleanup `maintain` still owes.
    finish_owed: bool,
    /// Mappings of old generations, unmapped by `maintain` rather than under the lock.
    retired: Vec<Generation>,
}

/// Work a commit does after releasing the lock.
#[derive(Debug, Default)]
struct After {
    /// Create the next generation: (its generation, capacity in entries).
    prepare: Option<(u64, usize)>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OffsetsError + '_ {
    move |source| OffsetsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Offsets {
    /// Opens the store in `dir`, replaying both files.
    pub(crate) fn open(
        dir: &Path,
        io: Arc<dyn Io>,
        policy: FlushPolicy,
    ) -> Result<Offsets, OffsetsError> {
        io.create_dir_all(dir).map_err(io_err(dir))?;
        let names_path = dir.join("names");
        let names = io.open(&names_path, true).map_err(io_err(&names_path))?;
        let (keys, names_len) = replay_names(&*names).map_err(io_err(&names_path))?;
        let mut ids: HashMap<String, HashMap<String, u32>> = HashMap::new();
        for (id, (g, t)) in keys.iter().enumerate() {
            ids.entry(g.clone())
                .or_default()
                .insert(t.clone(), id as u32);
        }
        let mut gens = Vec::new();
        let mut leftovers = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("commits")) else {
                continue;
            };
            match rest.strip_prefix('-').and_then(|g| g.parse::<u64>().ok()) {
                Some(g) => gens.push(g),
                // Prepared or temporary files of a switch that never completed.
                None => leftovers.push(e.path()),
            }
        }
        for p in &leftovers {
            match io.remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(p)(e)),
                _ => {}
            }
        }
        gens.sort_unstable();
        // Replay from the newest complete generation on: older ones are leftovers of a
        // switch that finished; a newer incomplete one is a switch a crash interrupted, whose
        // valid prefix only repeats live values (and maybe some newer commits).
        let mut replayed = Vec::new();
        for &g in gens.iter().rev() {
            let path = commits_path(dir, g);
            let r = replay_generation(&path, &*io, 0).map_err(io_err(&path))?;
            let complete = r.complete;
            replayed.push(g);
            if complete {
                break;
            }
        }
        replayed.reverse();
        let mut committed = HashMap::new();
        let mut seq = 0;
        for &g in &replayed {
            let path = commits_path(dir, g);
            let r = replay_generation(&path, &*io, seq).map_err(io_err(&path))?;
            seq = r.last_seq;
            for (key, part, off) in r.entries {
                if (key as usize) >= keys.len() {
                    continue;
                }
                match off {
                    None => committed.remove(&(key, part)),
                    Some(off) => committed.insert((key, part), off),
                };
            }
        }
        // Start from a fresh, complete generation so stale entries after a torn one can never
        // be replayed, and remove every older file.
        let generation = gens.last().copied().unwrap_or(0) + 1;
        let cap = DEFAULT_CAP.max(committed.len() * 2 + 2);
        let (current, cursor, seq) =
            write_generation(dir, &*io, generation, seq, &committed, cap).map_err(|(e, _)| e)?;
        remove_generations(dir, &*io, &gens)?;
        let state = State {
            ids,
            keys,
            committed,
            undo: Vec::new(),
            names,
            names_len,
            current,
            cursor,
            seq,
            dirty: false,
            next: None,
            preparing: false,
            dir_synced: generation,
            stale: Vec::new(),
            finish_owed: false,
            retired: Vec::new(),
        };
        Ok(Offsets {
            dir: dir.to_path_buf(),
            io,
            policy,
            state: Mutex::new(state),
            sync: GroupCommit::new(seq as i64),
            failed: AtomicBool::new(false),
            incoming: Arc::new(Incoming::default()),
            helper: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_failed(&self) -> Result<(), OffsetsError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(OffsetsError::Failed);
        }
        Ok(())
    }

    /// Records that `group` has consumed `topic`/`partition` up to `next_offset` (the next
    /// offset to read). Under offsets flush `always`, returns after an fsync (shared with
    /// concurrent commits), and a commit that returns an error is not visible to `fetch`;
    /// otherwise returns once the entry is in the page cache.
    pub fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: i64,
    ) -> Result<(), OffsetsError> {
        if group.is_empty()
            || group.len() > usize::from(u16::MAX)
            || topic.len() > usize::from(u16::MAX)
        {
            return Err(OffsetsError::InvalidKey(format!(
                "group {group:?}, topic {topic:?}"
            )));
        }
        self.check_failed()?;
        let mut after = After::default();
        let seq = {
            let mut st = self.lock();
            let key = match st.ids.get(group).and_then(|t| t.get(topic)) {
                Some(&k) => k,
                None => self.add_name(&mut st, group, topic)?,
            };
            self.put(&mut st, key, partition, Some(next_offset), &mut after)?;
            st.seq
        };
        self.after_put(after)?;
        self.wait_durable(seq)
    }

    /// Under `always`, waits until entries up to `seq` are durable (group commit).
    fn wait_durable(&self, seq: u64) -> Result<(), OffsetsError> {
        if self.policy != FlushPolicy::Always {
            return Ok(());
        }
        // The commit whose fsync failed (and any waiting on the same one) sees the I/O error;
        // commits that start later see `Failed`.
        self.sync
            .wait(seq as i64, || self.sync_now())
            .map_err(io_err(&self.dir))
    }

    /// The group-commit leader's work: fsync the current generation (and its directory entry,
    /// if a switch made a new one), then forget the undo records it covered. On failure,
    /// roll every undurable commit back and mark the store failed.
    fn sync_now(&self) -> std::io::Result<i64> {
        let (seq, file, generation, dir_synced) = {
            let st = self.lock();
            (
                st.seq,
                st.current.file.clone(),
                st.current.generation,
                st.dir_synced,
            )
        };
        let synced = file.sync_data().and_then(|()| {
            if dir_synced < generation {
                self.io.sync_dir(&self.dir)
            } else {
                Ok(())
            }
        });
        let mut st = self.lock();
        match synced {
            Ok(()) => {
                st.dir_synced = st.dir_synced.max(generation);
                st.undo.retain(|u| u.2 > seq);
                Ok(seq as i64)
            }
            Err(e) => {
                self.fail_locked(&mut st);
                Err(e)
            }
        }
    }

    /// Marks the store failed and, under `always`, undoes every commit not known durable.
    fn fail_locked(&self, st: &mut State) {
        self.failed.store(true, Ordering::Release);
        self.sync.fail();
        while let Some((k, prev, _)) = st.undo.pop() {
            match prev {
                Some(v) => st.committed.insert(k, v),
                None => st.committed.remove(&k),
            };
        }
    }

    fn put(
        &self,
        st: &mut State,
        key: u32,
        partition: u32,
        offset: Option<i64>,
        after: &mut After,
    ) -> Result<(), OffsetsError> {
        if st.preparing && self.incoming.ready.load(Ordering::Acquire) {
            self.install(st);
        }
        let cap = st.current.map.len() / ENTRY;
        if st.cursor + 1 > cap {
            self.switch(st)?;
        }
        let cap = st.current.map.len() / ENTRY;
        if st.next.is_none() && !st.preparing && st.cursor * 4 >= cap {
            st.preparing = true;
            after.prepare = Some((
                st.current.generation + 1,
                DEFAULT_CAP.max(st.committed.len() * 4 + 16),
            ));
        }
        st.seq += 1;
        let at = st.cursor * ENTRY;
        let e = encode_entry(key, partition, offset, st.seq);
        st.current.map[at..at + ENTRY].copy_from_slice(&e);
        st.cursor += 1;
        st.dirty = true;
        let k = (key, partition);
        let prev = match offset {
            None => st.committed.remove(&k),
            Some(o) => st.committed.insert(k, o),
        };
        if self.policy == FlushPolicy::Always {
            let seq = st.seq;
            st.undo.push((k, prev, seq));
        }
        Ok(())
    }

    fn add_name(&self, st: &mut State, group: &str, topic: &str) -> Result<u32, OffsetsError> {
        let id = st.keys.len() as u32;
        if id == MARKER_KEY {
            return Err(OffsetsError::InvalidKey(
                "too many (group, topic) pairs".into(),
            ));
        }
        let mut payload = Vec::with_capacity(6 + group.len() + topic.len());
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&(group.len() as u16).to_be_bytes());
        payload.extend_from_slice(group.as_bytes());
        payload.extend_from_slice(topic.as_bytes());
        let mut rec = Vec::with_capacity(8 + payload.len());
        rec.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        rec.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        rec.extend_from_slice(&payload);
        let path = self.dir.join("names");
        if let Err(e) = write_all_at(&*st.names, &rec, st.names_len) {
            // Drop the partial record so the next name lands on a record boundary.
            let _ = st.names.set_len(st.names_len);
            return Err(io_err(&path)(e));
        }
        if let Err(e) = st.names.sync_data() {
            // After a failed fsync the file's state is unknown; refuse further commits.
            self.fail_locked(st);
            return Err(io_err(&path)(e));
        }
        st.names_len += rec.len() as u64;
        st.keys.push((group.to_string(), topic.to_string()));
        st.ids
            .entry(group.to_string())
            .or_default()
            .insert(topic.to_string(), id);
        Ok(id)
    }

    /// The committed next offset of `group` for `topic`/`partition`.
    pub fn fetch(&self, group: &str, topic: &str, partition: u32) -> Option<i64> {
        let st = self.lock();
        let key = *st.ids.get(group)?.get(topic)?;
        st.committed.get(&(key, partition)).copied()
    }

    /// Groups with at least one committed offset, sorted.
    pub fn groups(&self) -> Vec<String> {
        let st = self.lock();
        let mut g: Vec<String> = st
            .committed
            .keys()
            .map(|(k, _)| st.keys[*k as usize].0.clone())
            .collect();
        g.sort_unstable();
        g.dedup();
        g
    }

    /// Every (topic, partition, next offset) committed by `group`, sorted.
    pub fn committed(&self, group: &str) -> Vec<(String, u32, i64)> {
        let st = self.lock();
        let mut out: Vec<_> = st
            .committed
            .iter()
            .filter(|((k, _), _)| st.keys[*k as usize].0 == group)
            .map(|(&(k, p), &o)| (st.keys[k as usize].1.clone(), p, o))
            .collect();
        out.sort_unstable();
        out
    }

    /// Forgets every offset of `group` (tombstones, durable like a commit).
    pub fn delete_group(&self, group: &str) -> Result<(), OffsetsError> {
        self.check_failed()?;
        let mut after = After::default();
        let seq = {
            let mut st = self.lock();
            let doomed: Vec<(u32, u32)> = st
                .committed
                .keys()
                .filter(|(k, _)| st.keys[*k as usize].0 == group)
                .copied()
                .collect();
            for (k, p) in doomed {
                self.put(&mut st, k, p, None, &mut after)?;
            }
            st.seq
        };
        self.after_put(after)?;
        self.wait_durable(seq)
    }

    /// fsyncs the commits file if anything was committed since the last flush. A failure
    /// marks the store failed: commits are refused until the log is reopened.
    pub fn flush(&self) -> Result<(), OffsetsError> {
        self.check_failed()?;
        self.maintain()?;
        {
            let mut st = self.lock();
            if !st.dirty {
                return Ok(());
            }
            st.dirty = false;
        }
        let seq = self.sync_now().map_err(io_err(&self.dir))?;
        self.sync.mark_durable(seq);
        Ok(())
    }

    /// The store's flush policy.
    pub fn flush_policy(&self) -> FlushPolicy {
        self.policy
    }
}
