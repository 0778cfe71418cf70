//! Durable consumer-group offsets, cheap enough to commit after every handler invocation.
//!
//! Two files under `<data>/offsets/`:
//!
//! - `names`: an append-only list of (group, topic) pairs, each given a key id. It is
//!   appended and fsynced only when a new pair first commits. Record:
//!   `len u32 BE | crc32c(payload) u32 BE | payload = id u32 BE, group_len u16 BE, group, topic`.
//! - `commits-<generation:020>`: a memory-mapped file of fixed 32-byte entries
//!   `key_id u32 | partition u32 | offset i64 | seq u64 | crc32c(bytes 0..24) u32 | 0 u32`,
//!   all big-endian. A commit is one 32-byte store into the mapping, so it is in the page
//!   cache at once and survives a process crash. An offset of -1 is a tombstone
//!   (`delete_group`). When the file fills up, and at every open, the live entries are
//!   written to a fresh generation (tmp file, fsync, rename, directory fsync) and the old one
//!   removed, so a reopened file never holds stale entries after its valid prefix.
//!
//! Replay reads entries until the first one whose CRC fails or whose sequence number does not
//! increase: a torn last entry is simply ignored.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use memmap2::MmapMut;

use crate::config::FlushPolicy;
use crate::error::OffsetsError;
use crate::io::{FileHandle, Io, read_full_at, write_all_at};
use crate::sync::GroupCommit;

const ENTRY: usize = 32;
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
}

#[derive(Debug)]
struct State {
    ids: HashMap<String, HashMap<String, u32>>,
    keys: Vec<(String, String)>,
    committed: HashMap<(u32, u32), i64>,
    names: Arc<dyn FileHandle>,
    names_len: u64,
    map: MmapMut,
    file: Arc<File>,
    generation: u64,
    cursor: usize,
    seq: u64,
    dirty: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OffsetsError + '_ {
    move |source| OffsetsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn commits_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("commits-{generation:020}"))
}

fn encode_entry(key: u32, partition: u32, offset: i64, seq: u64) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[0..4].copy_from_slice(&key.to_be_bytes());
    e[4..8].copy_from_slice(&partition.to_be_bytes());
    e[8..16].copy_from_slice(&offset.to_be_bytes());
    e[16..24].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&e[..24]);
    e[24..28].copy_from_slice(&crc.to_be_bytes());
    e
}

fn decode_entry(e: &[u8]) -> Option<(u32, u32, i64, u64)> {
    let u32_at = |i: usize| u32::from_be_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&e[i..i + 8]);
        u64::from_be_bytes(a)
    };
    (crc32c::crc32c(&e[..24]) == u32_at(24))
        .then(|| (u32_at(0), u32_at(4), u64_at(8) as i64, u64_at(16)))
}

fn map_file(file: &File) -> std::io::Result<MmapMut> {
    // SAFETY: the commits file is private to this process (the data dir is locked by `Log`),
    // and its length only changes before it is mapped.
    unsafe { MmapMut::map_mut(file) }
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
        // Pick the newest generation; older ones are leftovers of an interrupted compaction.
        let mut gens = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            if let Some(g) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("commits-"))
                .and_then(|g| g.parse::<u64>().ok())
            {
                gens.push(g);
            }
        }
        gens.sort_unstable();
        let mut committed = HashMap::new();
        let mut seq = 0;
        if let Some(&g) = gens.last() {
            let path = commits_path(dir, g);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            if file.metadata().map_err(io_err(&path))?.len() >= ENTRY as u64 {
                let map = map_file(&file).map_err(io_err(&path))?;
                for e in map.chunks_exact(ENTRY) {
                    let Some((key, part, off, s)) = decode_entry(e) else {
                        break;
                    };
                    if s <= seq {
                        break;
                    }
                    seq = s;
                    if (key as usize) >= keys.len() {
                        continue;
                    }
                    if off < 0 {
                        committed.remove(&(key, part));
                    } else {
                        committed.insert((key, part), off);
                    }
                }
            }
        }
        let generation = gens.last().copied().unwrap_or(0);
        let cap = DEFAULT_CAP.max(committed.len() * 2);
        let fresh = write_generation(dir, &*io, generation, seq, &committed, cap, &gens)?;
        let state = State {
            ids,
            keys,
            committed,
            names,
            names_len,
            map: fresh.map,
            file: fresh.file,
            generation: fresh.generation,
            cursor: fresh.cursor,
            seq: fresh.seq,
            dirty: false,
        };
        Ok(Offsets {
            dir: dir.to_path_buf(),
            io,
            policy,
            state: Mutex::new(state),
            sync: GroupCommit::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `group` has consumed `topic`/`partition` up to `next_offset` (the next
    /// offset to read). Under offsets flush `always`, returns after an fsync (shared with
    /// concurrent commits); otherwise once the entry is in the page cache.
    pub fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: i64,
    ) -> Result<(), OffsetsError> {
        if next_offset < 0 {
            return Err(OffsetsError::InvalidOffset(next_offset));
        }
        if group.is_empty()
            || group.len() > usize::from(u16::MAX)
            || topic.len() > usize::from(u16::MAX)
        {
            return Err(OffsetsError::InvalidKey(format!(
                "group {group:?}, topic {topic:?}"
            )));
        }
        let (seq, file) = {
            let mut st = self.lock();
            let key = match st.ids.get(group).and_then(|t| t.get(topic)) {
                Some(&k) => k,
                None => self.add_name(&mut st, group, topic)?,
            };
            self.put(&mut st, key, partition, next_offset)?;
            (st.seq, st.file.clone())
        };
        if self.policy == FlushPolicy::Always {
            self.sync
                .wait(seq as i64, || {
                    // fdatasync on Linux also writes back pages dirtied through the mapping.
                    file.sync_data()?;
                    Ok(seq as i64)
                })
                .map_err(io_err(&self.dir))?;
        }
        Ok(())
    }

    fn put(
        &self,
        st: &mut State,
        key: u32,
        partition: u32,
        offset: i64,
    ) -> Result<(), OffsetsError> {
        if (st.cursor + 1) * ENTRY > st.map.len() {
            let cap = DEFAULT_CAP.max(st.committed.len() * 4 + 16);
            let fresh = write_generation(
                &self.dir,
                &*self.io,
                st.generation,
                st.seq,
                &st.committed,
                cap,
                &[],
            )?;
            st.map = fresh.map;
            st.file = fresh.file;
            st.generation = fresh.generation;
            st.cursor = fresh.cursor;
            st.seq = fresh.seq;
        }
        st.seq += 1;
        let at = st.cursor * ENTRY;
        let e = encode_entry(key, partition, offset, st.seq);
        st.map[at..at + ENTRY].copy_from_slice(&e);
        st.cursor += 1;
        st.dirty = true;
        if offset < 0 {
            st.committed.remove(&(key, partition));
        } else {
            st.committed.insert((key, partition), offset);
        }
        Ok(())
    }

    fn add_name(&self, st: &mut State, group: &str, topic: &str) -> Result<u32, OffsetsError> {
        let id = st.keys.len() as u32;
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
        let written =
            write_all_at(&*st.names, &rec, st.names_len).and_then(|()| st.names.sync_data());
        if let Err(e) = written {
            // Drop the partial record so the next name lands on a record boundary.
            let _ = st.names.set_len(st.names_len);
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
        let (seq, file) = {
            let mut st = self.lock();
            let doomed: Vec<(u32, u32)> = st
                .committed
                .keys()
                .filter(|(k, _)| st.keys[*k as usize].0 == group)
                .copied()
                .collect();
            for (k, p) in doomed {
                self.put(&mut st, k, p, -1)?;
            }
            (st.seq, st.file.clone())
        };
        if self.policy == FlushPolicy::Always {
            file.sync_data().map_err(io_err(&self.dir))?;
            self.sync.mark_durable(seq as i64);
        }
        Ok(())
    }

    /// fsyncs the commits file if anything was committed since the last flush.
    pub fn flush(&self) -> Result<(), OffsetsError> {
        let (file, seq) = {
            let mut st = self.lock();
            if !st.dirty {
                return Ok(());
            }
            st.dirty = false;
            (st.file.clone(), st.seq)
        };
        file.sync_data().map_err(io_err(&self.dir))?;
        self.sync.mark_durable(seq as i64);
        Ok(())
    }

    /// The store's flush policy.
    pub fn flush_policy(&self) -> FlushPolicy {
        self.policy
    }
}

/// A freshly written commits generation.
struct Generation {
    map: MmapMut,
    file: Arc<File>,
    generation: u64,
    cursor: usize,
    seq: u64,
}

/// Writes the live entries to generation `previous + 1` (tmp file, fsync, rename, directory
/// fsync), then removes `previous` and `old_gens`.
fn write_generation(
    dir: &Path,
    io: &dyn Io,
    previous: u64,
    mut seq: u64,
    committed: &HashMap<(u32, u32), i64>,
    cap: usize,
    old_gens: &[u64],
) -> Result<Generation, OffsetsError> {
    let generation = previous + 1;
    let tmp = dir.join("commits.tmp");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.set_len((cap * ENTRY) as u64).map_err(io_err(&tmp))?;
    let mut map = map_file(&file).map_err(io_err(&tmp))?;
    let mut live: Vec<_> = committed.iter().map(|(&k, &v)| (k, v)).collect();
    live.sort_unstable();
    for (i, ((key, part), off)) in live.iter().enumerate() {
        seq += 1;
        map[i * ENTRY..(i + 1) * ENTRY].copy_from_slice(&encode_entry(*key, *part, *off, seq));
    }
    map.flush().map_err(io_err(&tmp))?;
    let path = commits_path(dir, generation);
    io.rename(&tmp, &path).map_err(io_err(&path))?;
    io.sync_dir(dir).map_err(io_err(dir))?;
    for &g in old_gens
        .iter()
        .chain(std::iter::once(&previous))
        .filter(|&&g| g != generation)
    {
        let p = commits_path(dir, g);
        match io.remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&p)(e)),
            _ => {}
        }
    }
    Ok(Generation {
        map,
        file: Arc::new(file),
        generation,
        cursor: live.len(),
        seq,
    })
}

/// Reads the names file up to its first invalid record; cuts off anything after it.
fn replay_names(f: &dyn FileHandle) -> std::io::Result<(Vec<(String, String)>, u64)> {
    let len = usize::try_from(f.len()?).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; len];
    let n = read_full_at(f, &mut buf, 0)?;
    buf.truncate(n);
    let mut keys = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= buf.len() {
        let plen =
            u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        let crc = u32::from_be_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
        let Some(payload) = buf.get(pos + 8..(pos + 8).saturating_add(plen)) else {
            break;
        };
        if plen < 6 || crc32c::crc32c(payload) != crc {
            break;
        }
        let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        let glen = usize::from(u16::from_be_bytes([payload[4], payload[5]]));
        let Some((g, t)) = payload.get(6..6 + glen).zip(payload.get(6 + glen..)) else {
            break;
        };
        let (Ok(g), Ok(t)) = (std::str::from_utf8(g), std::str::from_utf8(t)) else {
            break;
        };
        if id != keys.len() {
            break;
        }
        keys.push((g.to_string(), t.to_string()));
        pos += 8 + plen;
    }
    if pos < buf.len() {
        f.set_len(pos as u64)?;
        f.sync_data()?;
    }
    Ok((keys, pos as u64))
}
