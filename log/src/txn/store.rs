//! The coordinator's durable state: `<data>/transactions`, an append-only file of framed
//! JSON entries (`docs/log-format.md`), the last entry per transactional id winning. It is
//! rewritten with only the live entries once it has grown well past them.
//!
//! Entries are written (not fsynced) at every transition, so a killed process loses none;
//! the log's flusher and `Log::flush` fsync the file as they do the offsets store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::TxnMeta;
use crate::io::{FileHandle, Io, read_full_at, write_all_at, write_file_atomic};

/// Name of the state file in the data dir.
pub(crate) const FILE: &str = "transactions";
/// Rewrite once the file holds this many bytes more than its live entries.
const COMPACT_SLACK: u64 = 8 << 20;

/// One entry of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Entry {
    /// A transactional id's state after a transition.
    Txn(TxnMeta),
    /// Producer ids below this one may have been handed out.
    PidBlock(i64),
    /// The transactional id was forgotten (expired).
    Expired(String),
}

#[derive(Debug)]
pub(crate) struct Store {
    io: Arc<dyn Io>,
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    len: u64,
    /// The newest encoded entry per transactional id, and the pid block, for rewrites.
    live: HashMap<String, Vec<u8>>,
    pid_block: Option<Vec<u8>>,
    unsynced: bool,
}

fn frame(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(json).to_be_bytes());
    out.extend_from_slice(json);
    out
}

impl Store {
    /// Opens the file and replays it: every transactional id's last state and the highest
    /// pid block. A torn or damaged tail (a crash mid-write) ends the replay and is cut.
    pub(crate) fn open(
        io: Arc<dyn Io>,
        data: &Path,
    ) -> std::io::Result<(Store, Vec<TxnMeta>, i64)> {
        let path = data.join(FILE);
        let file = io.open(&path, true)?;
        let size = file.len()?;
        let mut bytes = vec![0; usize::try_from(size).unwrap_or(0)];
        let n = read_full_at(&*file, &mut bytes, 0)?;
        bytes.truncate(n);
        let mut metas: HashMap<String, TxnMeta> = HashMap::new();
        let mut pid_block = 0;
        let mut at = 0;
        while let Some(h) = bytes.get(at..at + 8) {
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            let Some(json) = bytes.get(at + 8..at + 8 + len) else {
                break;
            };
            if crc32c::crc32c(json) != crc {
                break;
            }
            match serde_json::from_slice::<Entry>(json) {
                Ok(Entry::Txn(m)) => {
                    metas.insert(m.transactional_id.clone(), m);
                }
                Ok(Entry::PidBlock(b)) => pid_block = pid_block.max(b),
                Ok(Entry::Expired(tid)) => {
                    metas.remove(&tid);
                }
                Err(_) => break,
            }
            at += 8 + len;
        }
        if (at as u64) < size {
            tracing::warn!(path = %path.display(), valid = at, size,
                "cutting a torn tail of the transaction state");
        }
        let mut store = Store {
            io,
            path,
            file,
            len: at as u64,
            live: HashMap::new(),
            pid_block: None,
            unsynced: false,
        };
        let metas: Vec<TxnMeta> = metas.into_values().collect();
        for m in &metas {
            store.remember(&Entry::Txn(m.clone()))?;
        }
        store.remember(&Entry::PidBlock(pid_block))?;
        // Start from a compact file: it also drops the torn tail.
        store.rewrite()?;
        Ok((store, metas, pid_block))
    }

    fn remember(&mut self, e: &Entry) -> std::io::Result<Vec<u8>> {
        let json = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        let framed = frame(&json);
        match e {
            Entry::Txn(m) => {
                self.live.insert(m.transactional_id.clone(), framed.clone());
            }
            Entry::PidBlock(_) => self.pid_block = Some(framed.clone()),
            Entry::Expired(tid) => {
                self.live.remove(tid);
            }
        }
        Ok(framed)
    }

    /// Appends `e`.
    pub(crate) fn write(&mut self, e: &Entry) -> std::io::Result<()> {
        let framed = self.remember(e)?;
        write_all_at(&*self.file, &framed, self.len)?;
        self.len += framed.len() as u64;
        self.unsynced = true;
        let live: u64 = self.live.values().map(|v| v.len() as u64).sum();
        if self.len > live + COMPACT_SLACK {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Replaces the file with its live entries only.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut all = Vec::new();
        for v in self.pid_block.iter().chain(self.live.values()) {
            all.extend_from_slice(v);
        }
        write_file_atomic(&*self.io, &self.path, &all)?;
        self.file = self.io.open(&self.path, false)?;
        self.len = all.len() as u64;
        self.unsynced = false;
        Ok(())
    }

    /// fsyncs what was written since the last sync.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }
}
