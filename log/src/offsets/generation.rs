//! Commits-file generations: naming, creating and mapping them, preparing the next one on
//! a helper thread, switching to it when the current one is full, and the flusher's
//! cleanup of old ones.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use memmap2::MmapMut;

use super::entry::{ENTRY, MARKER_KEY, encode_entry};
use super::{After, DEFAULT_CAP, Generation, Offsets, State, io_err};
use crate::error::OffsetsError;
use crate::io::{FileHandle, Io};

pub(super) fn commits_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("commits-{generation:020}"))
}

fn map_file(file: &dyn FileHandle) -> std::io::Result<MmapMut> {
    let f = file.std_file().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this Io cannot memory-map the commits file",
        )
    })?;
    // SAFETY: the commits file is private to this process (the data dir is locked by `Log`),
    // and its length only changes before it is mapped.
    unsafe { MmapMut::map_mut(f) }
}

impl Offsets {
    /// Moves to the next generation because the current one is full: into the prepared file
    /// if there is one (a copy of the live entries into its mapping, nothing else: it already
    /// has its final name, and an empty or partly written generation is incomplete to replay),
    /// else by writing one inline.
    pub(super) fn switch(&self, st: &mut State) -> Result<(), OffsetsError> {
        if st.preparing && self.incoming.ready.load(Ordering::Acquire) {
            self.install(st);
        }
        let live = st.committed.len();
        if let Some(mut next) = st.next.take()
            && next.generation == st.current.generation + 1
            && live + 2 <= next.map.len() / ENTRY
        {
            let (cursor, seq) = fill(&mut next.map, st.seq, &st.committed);
            let old = std::mem::replace(&mut st.current, next);
            st.stale.push(old.generation);
            st.retired.push(old);
            st.cursor = cursor;
            st.seq = seq;
            // The new file's fsync, the directory fsync and the old file's removal are left
            // to the flusher (`maintain`): no commit waits for them. Under `always` the
            // group commit fsyncs the file and the directory itself.
            st.finish_owed = true;
            return Ok(());
        }
        // No prepared file (its creation failed or lags far behind): pay the fsyncs here. If
        // a preparation is still running it will create the next generation's file, so skip
        // that number. A failure before the rename leaves the current generation in use and
        // untouched (the new file is only a copy): an error for this commit, not for the
        // store. After the rename, a complete newer generation may be on disk, and replay
        // would ignore any later commit to the current one: the store must stop taking
        // commits.
        let generation = st.current.generation + if st.preparing { 2 } else { 1 };
        let cap = DEFAULT_CAP.max(live * 4 + 16);
        let (current, cursor, seq) =
            write_generation(&self.dir, &*self.io, generation, st.seq, &st.committed, cap)
                .map_err(|(e, renamed)| {
                    if renamed {
                        self.fail_locked(st);
                    }
                    e
                })?;
        let old = std::mem::replace(&mut st.current, current);
        st.dir_synced = generation;
        st.cursor = cursor;
        st.seq = seq;
        let mut stale = std::mem::take(&mut st.stale);
        stale.push(old.generation);
        remove_generations(&self.dir, &*self.io, &stale)
    }

    /// The work a commit does after releasing the lock: start the helper thread that
    /// prepares the next generation (file creation and first-touch page faults take up to
    /// milliseconds, which no commit should wait for).
    pub(super) fn after_put(&self, after: After) -> Result<(), OffsetsError> {
        let Some((generation, cap)) = after.prepare else {
            return Ok(());
        };
        let mut helper = self.helper.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = helper.take() {
            // The previous preparation finished long ago (its result was installed).
            let _ = h.join();
        }
        let (dir, io, incoming) = (self.dir.clone(), self.io.clone(), self.incoming.clone());
        let job = move || {
            let r = prepare(&dir, &*io, generation, cap);
            *incoming.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            incoming.ready.store(true, Ordering::Release);
        };
        match std::thread::Builder::new()
            .name("rill-offsets-prep".into())
            .spawn(job.clone())
        {
            Ok(h) => *helper = Some(h),
            // No thread: prepare here, after the lock was released anyway.
            Err(_) => job(),
        }
        Ok(())
    }

    /// Takes the helper's result: the next generation, or nothing (a failure, or a file an
    /// inline switch overtook, which is then removed).
    pub(super) fn install(&self, st: &mut State) {
        self.incoming.ready.store(false, Ordering::Release);
        let r = self
            .incoming
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        st.preparing = false;
        match r {
            Some(Ok(next)) if next.generation == st.current.generation + 1 => st.next = Some(next),
            Some(Ok(stale)) => {
                // An inline switch went past it (to a later number, see `switch`): an empty
                // file older than the current generation.
                let path = commits_path(&self.dir, stale.generation);
                drop(stale);
                let _ = self.io.remove_file(&path);
            }
            // Not fatal: the switch writes the next generation inline instead.
            Some(Err(e)) => {
                tracing::warn!(error = %e, "preparing the next offsets generation failed")
            }
            None => {}
        }
    }

    /// Completes a generation switch, if one is owed: makes the new generation durable, then
    /// unmaps and removes the old ones. Called by the log's background flusher (every ~100
    /// ms) and by `flush`.
    pub(crate) fn maintain(&self) -> Result<(), OffsetsError> {
        let (file, generation) = {
            let mut st = self.lock();
            if !std::mem::take(&mut st.finish_owed) {
                return Ok(());
            }
            (st.current.file.clone(), st.current.generation)
        };
        // Unmapping a large dirty mapping takes a while; never under the lock.
        let retired = std::mem::take(&mut self.lock().retired);
        drop(retired);
        let synced = file.sync_data().and_then(|()| self.io.sync_dir(&self.dir));
        let mut st = self.lock();
        if let Err(e) = synced {
            self.fail_locked(&mut st);
            return Err(io_err(&self.dir)(e));
        }
        st.dir_synced = st.dir_synced.max(generation);
        let stale: Vec<u64> = st
            .stale
            .iter()
            .copied()
            .filter(|&g| g < generation)
            .collect();
        st.stale.retain(|&g| g >= generation);
        drop(st);
        remove_generations(&self.dir, &*self.io, &stale)
    }
}

/// Writes the marker and the live entries at the start of `map`, with sequence numbers after
/// `seq`. Returns the cursor and the last sequence number used.
fn fill(map: &mut MmapMut, mut seq: u64, committed: &HashMap<(u32, u32), i64>) -> (usize, u64) {
    let mut live: Vec<_> = committed.iter().map(|(&k, &v)| (k, v)).collect();
    live.sort_unstable();
    seq += 1;
    map[..ENTRY].copy_from_slice(&encode_entry(MARKER_KEY, 0, Some(live.len() as i64), seq));
    for (i, ((key, part), off)) in live.iter().enumerate() {
        seq += 1;
        let at = (i + 1) * ENTRY;
        map[at..at + ENTRY].copy_from_slice(&encode_entry(*key, *part, Some(*off), seq));
    }
    (live.len() + 1, seq)
}

/// Creates the next generation's file under its final name, preallocated, mapped, and with
/// every page touched once: the first store into a page of a fresh file mapping faults into
/// the file system (block reservation, a journal handle), which can take half a
/// millisecond, so the helper takes those faults rather than the commits that fill the file.
fn prepare(
    dir: &Path,
    io: &dyn Io,
    generation: u64,
    cap: usize,
) -> Result<Generation, OffsetsError> {
    let mut g = create_mapped(commits_path(dir, generation), io, generation, cap)?;
    for page in g.map.chunks_mut(4096) {
        page[0] = 0;
    }
    Ok(g)
}

/// Creates (or empties) the file for `generation` at `tmp`, with room for `cap` entries, and
/// maps it.
fn create_mapped(
    tmp: PathBuf,
    io: &dyn Io,
    generation: u64,
    cap: usize,
) -> Result<Generation, OffsetsError> {
    let file = io.open(&tmp, true).map_err(io_err(&tmp))?;
    file.set_len(0).map_err(io_err(&tmp))?;
    file.set_len((cap * ENTRY) as u64).map_err(io_err(&tmp))?;
    let map = map_file(&*file).map_err(io_err(&tmp))?;
    Ok(Generation {
        map,
        file,
        generation,
    })
}

/// Writes the live entries to generation `generation` (tmp file, fsync, rename, directory
/// fsync). Returns it with its cursor and last sequence number; an error says whether the
/// rename had happened.
pub(super) fn write_generation(
    dir: &Path,
    io: &dyn Io,
    generation: u64,
    seq: u64,
    committed: &HashMap<(u32, u32), i64>,
    cap: usize,
) -> Result<(Generation, usize, u64), (OffsetsError, bool)> {
    // A name no prepared file uses, so an inline write never collides with a preparation
    // running on another thread.
    let tmp = dir.join(format!("commits-{generation:020}.tmp"));
    let before = |e| (e, false);
    let mut g = create_mapped(tmp.clone(), io, generation, cap).map_err(before)?;
    let (cursor, seq) = fill(&mut g.map, seq, committed);
    g.map.flush().map_err(io_err(&tmp)).map_err(before)?;
    g.file.sync_data().map_err(io_err(&tmp)).map_err(before)?;
    let path = commits_path(dir, generation);
    io.rename(&tmp, &path)
        .map_err(io_err(&path))
        .map_err(before)?;
    io.sync_dir(dir).map_err(|e| (io_err(dir)(e), true))?;
    Ok((g, cursor, seq))
}

/// Removes the given generations' files (missing ones are fine), then fsyncs the directory.
pub(super) fn remove_generations(
    dir: &Path,
    io: &dyn Io,
    gens: &[u64],
) -> Result<(), OffsetsError> {
    if gens.is_empty() {
        return Ok(());
    }
    for &g in gens {
        let p = commits_path(dir, g);
        match io.remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&p)(e)),
            _ => {}
        }
    }
    io.sync_dir(dir).map_err(io_err(dir))
}
