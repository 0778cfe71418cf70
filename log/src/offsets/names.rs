//! The `names` file: replaying the append-only list of (group, topic) pairs.

use crate::io::{FileHandle, read_full_at};

/// Reads the names file up to its first invalid record; cuts off anything after it.
pub(super) fn replay_names(f: &dyn FileHandle) -> std::io::Result<(Vec<(String, String)>, u64)> {
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
