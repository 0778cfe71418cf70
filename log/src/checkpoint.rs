//! The recovery checkpoint: for every partition, a point up to which the log is known durable
//! and valid, so that recovery after a crash only reads what lies after it.
//!
//! One file per data dir, `<data>/recovery-point`, replaced atomically (temporary file,
//! `fdatasync`, `rename`, directory fsync) and covered by a CRC-32C, so a reader sees either
//! the old or the new version, or detects damage and falls back to scanning. All integers are
//! big-endian; the byte layout is in `docs/log-format.md`.
//!
//! A point is only ever taken from state that an fsync has already made durable (see
//! `Partition::durable`), so every version of the file, however old, describes a prefix of
//! the log that is on disk: writing it late or failing to write it only makes the next
//! recovery read more.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::io::{Io, read_full_at, write_file_atomic};

/// File name in the data dir.
pub(crate) const FILE_NAME: &str = "recovery-point";
/// First four bytes of the file.
const MAGIC: [u8; 4] = *b"RLRP";
/// Version of the layout this build writes and reads.
pub(crate) const VERSION: u16 = 1;
/// magic, version, reserved, entry count.
const HEADER: usize = 4 + 2 + 2 + 4;
/// Largest file accepted, so a damaged length cannot make us allocate without bound.
const MAX_FILE: u64 = 256 << 20;

/// A durable, validated prefix of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point {
    /// Base offset of the segment the point lies in.
    pub base: i64,
    /// Byte position in that segment: every byte before it is durable and holds whole,
    /// valid batches; a batch boundary.
    pub pos: u64,
    /// Offset of the first record at or after `pos` (the next offset after the prefix).
    pub next: i64,
    /// Largest timestamp of the batches in `[0, pos)` of the segment, if any.
    pub max_ts: Option<i64>,
}

impl Point {
    /// The start of the segment with base offset `base`.
    pub fn segment_start(base: i64) -> Point {
        Point {
            base,
            pos: 0,
            next: base,
            max_ts: None,
        }
    }
}

/// What reading the file found.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// No file: a data dir from before checkpoints, or one never flushed.
    Missing,
    /// The file is damaged or of an unknown version; recovery ignores it.
    Invalid(String),
    /// The points, by (topic, partition).
    Points(HashMap<(String, u32), Point>),
}

/// Path of the file in `data`.
pub(crate) fn path(data: &Path) -> PathBuf {
    data.join(FILE_NAME)
}

/// Reads and checks the file.
pub(crate) fn read(io: &dyn Io, data: &Path) -> io::Result<Loaded> {
    let f = match io.open(&path(data), false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(e),
    };
    let len = f.len()?;
    if len > MAX_FILE {
        return Ok(Loaded::Invalid(format!("{len} bytes is too large")));
    }
    let mut buf = vec![0u8; len as usize];
    let n = read_full_at(&*f, &mut buf, 0)?;
    buf.truncate(n);
    Ok(match decode(&buf) {
        Ok(points) => Loaded::Points(points),
        Err(reason) => Loaded::Invalid(reason),
    })
}

/// Writes the file atomically (temporary file, fdatasync, rename, directory fsync).
pub(crate) fn write(io: &dyn Io, data: &Path, points: &[((String, u32), Point)]) -> io::Result<()> {
    write_file_atomic(io, &path(data), &encode(points))
}

fn encode(points: &[((String, u32), Point)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 4 + points.len() * 64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(points.len() as u32).to_be_bytes());
    for ((topic, partition), p) in points {
        // Topic names are at most 249 bytes (`valid_topic_name`), so a u16 length fits.
        out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&partition.to_be_bytes());
        out.extend_from_slice(&p.base.to_be_bytes());
        out.extend_from_slice(&p.pos.to_be_bytes());
        out.extend_from_slice(&p.next.to_be_bytes());
        out.push(u8::from(p.max_ts.is_some()));
        out.extend_from_slice(&p.max_ts.unwrap_or(0).to_be_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// A cursor over the file's bytes that fails instead of panicking when they run out.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("ends inside an entry".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

fn decode(buf: &[u8]) -> Result<HashMap<(String, u32), Point>, String> {
    if buf.len() < HEADER + 4 {
        return Err(format!("{} bytes is too short", buf.len()));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(format!(
            "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    let mut r = Reader(body);
    if r.array::<4>()? != MAGIC {
        return Err("bad magic".into());
    }
    let version = u16::from_be_bytes(r.array()?);
    if version != VERSION {
        return Err(format!(
            "unknown version {version} (this build reads {VERSION})"
        ));
    }
    r.take(2)?;
    let count = u32::from_be_bytes(r.array()?);
    let mut points = HashMap::new();
    for _ in 0..count {
        let tlen = usize::from(u16::from_be_bytes(r.array()?));
        let topic = std::str::from_utf8(r.take(tlen)?)
            .map_err(|_| "topic name is not UTF-8".to_string())?
            .to_string();
        let partition = u32::from_be_bytes(r.array()?);
        let base = i64::from_be_bytes(r.array()?);
        let pos = u64::from_be_bytes(r.array()?);
        let next = i64::from_be_bytes(r.array()?);
        let has_ts = r.array::<1>()?[0];
        let ts = i64::from_be_bytes(r.array()?);
        if base < 0 || next < base || has_ts > 1 {
            return Err(format!("entry for {topic}/{partition} is inconsistent"));
        }
        let max_ts = (has_ts == 1).then_some(ts);
        points.insert(
            (topic, partition),
            Point {
                base,
                pos,
                next,
                max_ts,
            },
        );
    }
    if !r.0.is_empty() {
        return Err("bytes after the last entry".into());
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let points = vec![
            (
                ("a".to_string(), 0),
                Point {
                    base: 100,
                    pos: 4096,
                    next: 150,
                    max_ts: Some(i64::MIN),
                },
            ),
            (("b.c".to_string(), 7), Point::segment_start(0)),
        ];
        let bytes = encode(&points);
        let got = decode(&bytes).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[&("a".to_string(), 0)], points[0].1);
        assert_eq!(got[&("b.c".to_string(), 7)], points[1].1);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
