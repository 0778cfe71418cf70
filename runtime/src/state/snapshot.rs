//! Local snapshots of a partition's state: `<data>/state/<deployment>/<partition>.snapshot`.
//!
//! ```text
//! magic "RILLSNP1"
//! written_ms: i64 LE, position: i64 LE, changelog_next: i64 LE, entries: u64 LE
//! entries × { key_len: u32 LE, key, value_len: u32 LE, value }
//! crc32c: u32 LE of everything before it
//! ```
//!
//! Written to a temporary file, fsynced and renamed into place. A snapshot that fails its
//! checks is ignored: the store is rebuilt from the whole changelog instead.

use std::io::Write;
use std::path::Path;

use rill_engine::StateKey;

use super::StateMap;

const MAGIC: &[u8; 8] = b"RILLSNP1";

/// A snapshot read back.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub written_ms: i64,
    pub position: i64,
    pub changelog_next: i64,
    pub map: StateMap,
}

impl Snapshot {
    /// Whether it can seed a restore: it covers no more of the changelog than exists, and
    /// is recent enough that no tombstone it misses can have been compacted away.
    pub fn usable(&self, (start, end): (i64, i64), max_age_ms: u64) -> bool {
        let age = crate::now_ms().saturating_sub(self.written_ms);
        self.changelog_next <= end
            && self.changelog_next >= start
            && u64::try_from(age).is_ok_and(|a| a < max_age_ms)
    }
}

/// What is written.
pub(super) struct SnapshotRef<'a> {
    pub map: &'a StateMap,
    pub position: i64,
    pub changelog_next: i64,
}

pub(super) fn write(path: &Path, s: &SnapshotRef<'_>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("snapshot.tmp");
    let mut buf = Vec::with_capacity(64 + s.map.len() * 32);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&crate::now_ms().to_le_bytes());
    buf.extend_from_slice(&s.position.to_le_bytes());
    buf.extend_from_slice(&s.changelog_next.to_le_bytes());
    buf.extend_from_slice(&(s.map.len() as u64).to_le_bytes());
    for (k, v) in s.map {
        let k = k.as_bytes();
        buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
        buf.extend_from_slice(k);
        buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        buf.extend_from_slice(v);
    }
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&buf)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// The snapshot at `path`; `None` if there is none; an error naming what is wrong with it.
pub(super) fn load(path: &Path) -> Result<Option<Snapshot>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    if bytes.len() < 44 || &bytes[..8] != MAGIC {
        return Err("not a state snapshot".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err("checksum mismatch".into());
    }
    let i64_at = |at: usize| i64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let count = u64::from_le_bytes(body[32..40].try_into().expect("8 bytes"));
    let mut at = 40;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = body.get(at..at + n).ok_or("truncated")?;
        at += n;
        Ok(s)
    };
    // Written in key order: collected, then built in one pass (`BTreeMap::from_iter` finds
    // the run already sorted and fills nodes left to right instead of searching per key).
    let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(body.len() / 8));
    for _ in 0..count {
        let kl = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let k = StateKey::new(take(kl)?);
        let vl = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let v = take(vl)?.to_vec();
        entries.push((k, v));
    }
    let map = StateMap::from_iter(entries);
    Ok(Some(Snapshot {
        written_ms: i64_at(8),
        position: i64_at(16),
        changelog_next: i64_at(24),
        map,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.snapshot");
        let map: StateMap = (0..100u32)
            .map(|i| {
                let key = [i.to_be_bytes().as_slice(), &vec![b'k'; i as usize / 2]].concat();
                (StateKey::new(&key), vec![i as u8; i as usize])
            })
            .collect();
        write(
            &path,
            &SnapshotRef {
                map: &map,
                position: 7,
                changelog_next: 9,
            },
        )
        .unwrap();
        let s = load(&path).unwrap().unwrap();
        assert_eq!((s.position, s.changelog_next), (7, 9));
        assert_eq!(s.map, map);
        assert!(s.usable((0, 9), 1000));
        assert!(
            !s.usable((0, 8), 1000),
            "covers more than the changelog holds"
        );
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[50] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&path).unwrap_err().contains("checksum"));
        assert!(load(&dir.path().join("none")).unwrap().is_none());
    }
}
