//! The read side of a partition: offset lookups, whole-batch reads with CRC checks, and
//! timestamp lookups. Readers never take the writer lock.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Partition, ReadBuffer, ReadInto, ReadResult};
use crate::batch::{self, HEADER_LEN, RecordBatch};
use crate::error::{BatchError, ReadError};
use crate::io::read_full_at;
use crate::segment::Segment;

impl Partition {
    /// Reads whole batches from `from_offset`, up to about `max_bytes` (at least one batch
    /// if any is available). See [`ReadResult`].
    pub fn read(&self, from_offset: i64, max_bytes: usize) -> Result<ReadResult, ReadError> {
        self.read_until(from_offset, max_bytes, i64::MAX)
    }

    /// [`read`](Self::read) for a read_committed reader: whole batches below the last
    /// stable offset only (see [`read_committed_into`](Self::read_committed_into)).
    pub fn read_committed(
        &self,
        from_offset: i64,
        max_bytes: usize,
    ) -> Result<ReadResult, ReadError> {
        self.read_until(from_offset, max_bytes, self.last_stable_offset())
    }

    fn read_until(
        &self,
        from_offset: i64,
        max_bytes: usize,
        limit: i64,
    ) -> Result<ReadResult, ReadError> {
        let mut buf = Vec::new();
        let r = self.read_into_until(from_offset, max_bytes, limit, &mut buf)?;
        buf.truncate(r.len);
        Ok(ReadResult {
            bytes: Bytes::from(buf),
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
            next_offset: r.next_offset,
        })
    }

    /// [`Partition::read`] into the caller's memory: whole, CRC-checked batches from
    /// `from_offset`, up to about `max_bytes` (at least one batch if any is available), at
    /// the start of the buffer `dst` provides. The buffer may be longer than
    /// [`ReadInto::len`]; bytes past it are not batches. `dst` is not asked for a buffer when
    /// there is nothing to read.
    pub fn read_into(
        &self,
        from_offset: i64,
        max_bytes: usize,
        dst: &mut dyn ReadBuffer,
    ) -> Result<ReadInto, ReadError> {
        self.read_into_until(from_offset, max_bytes, i64::MAX, dst)
    }

    /// [`read_into`](Self::read_into) that stops before the batch starting at `limit`
    /// (when `limit` is below the high watermark it must be a batch's base offset, as the
    /// last stable offset is). [`ReadInto::high_watermark`] is still the high watermark.
    pub(crate) fn read_into_until(
        &self,
        from_offset: i64,
        max_bytes: usize,
        limit: i64,
        dst: &mut dyn ReadBuffer,
    ) -> Result<ReadInto, ReadError> {
        let hw = self.high_watermark();
        let start = self.log_start_offset();
        let out_of_range = || ReadError::OffsetOutOfRange {
            requested: from_offset,
            start,
            end: hw,
        };
        if from_offset < start || from_offset > hw {
            return Err(out_of_range());
        }
        let mut result = ReadInto {
            len: 0,
            high_watermark: hw,
            log_start_offset: start,
            next_offset: from_offset,
        };
        let stop = limit.min(hw);
        if from_offset >= stop {
            return Ok(result);
        }
        let seg = {
            let segs = self.segs();
            let i = segs.partition_point(|s| s.base_offset <= from_offset);
            match i.checked_sub(1) {
                Some(i) => segs[i].clone(),
                // Retention removed it between our check and now.
                None => return Err(out_of_range()),
            }
        };
        let mut end = seg.published.load(Ordering::Acquire);
        let pos = self.locate(&seg, from_offset, end)?;
        if stop < hw && stop < seg.end_offset.load(Ordering::Acquire) {
            end = self.locate(&seg, stop, end)?;
        }
        let (len, next) = read_batches(&seg, pos, end, max_bytes, dst)?;
        result.len = len;
        result.next_offset = next.unwrap_or(from_offset);
        Ok(result)
    }

    /// Position of the batch holding `offset` in `seg`: index lookup, then a short walk of
    /// headers.
    ///
    /// The caller only asks for offsets below the high watermark, which the segment's
    /// published bytes cover, so running out of bytes means the segment is shorter than its
    /// offsets say (a hole left by damage): that is reported as [`ReadError::Corrupt`] naming
    /// where the walk stopped, never as an empty read that would leave a consumer polling the
    /// same offset forever.
    fn locate(&self, seg: &Segment, offset: i64, end: u64) -> Result<u64, ReadError> {
        let (rel, pos) = seg.indexes().offsets.lookup(seg.rel(offset));
        let (pos, first) = (u64::from(pos), seg.base_offset + i64::from(rel));
        match walk_headers(seg, offset, end, pos, first) {
            // Indexes carry no checksum: if the batch an entry points at is not the one it
            // names, find the batch from the segment start instead of failing the read.
            Err(ReadError::Corrupt { position, .. }) if pos > 0 && position == pos => {
                walk_from_start(seg, offset, end)
            }
            r => r,
        }
    }
    /// First offset whose timestamp is `>= ts_ms`, below the high watermark; `Ok(None)` if
    /// there is none. See [`find_timestamp`](Self::find_timestamp).
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<i64>, ReadError> {
        Ok(self.find_timestamp(ts_ms)?.map(|(offset, _)| offset))
    }

    /// The first record whose timestamp is `>= ts_ms`, below the high watermark, as
    /// (offset, timestamp); `Ok(None)` if there is none. This is Kafka's ListOffsets by
    /// timestamp: the exact record, even when its batch starts before `ts_ms`.
    ///
    /// For a compressed batch whose max timestamp qualifies, records are not decompressed:
    /// the batch's base offset is returned, with its firstTimestamp if that qualifies (then
    /// it is exact: the first record's) and otherwise its maxTimestamp. Damaged data on the
    /// way is an error, not a silent skip to a later segment, which would return a wrong (too
    /// late) offset.
    pub fn find_timestamp(&self, ts_ms: i64) -> Result<Option<(i64, i64)>, ReadError> {
        let hw = self.high_watermark();
        let segs: Vec<Arc<Segment>> = self.segs().clone();
        for seg in segs {
            if seg.base_offset >= hw {
                continue;
            }
            let max = seg.max_timestamp().map_err(|e| ReadError::Corrupt {
                path: seg.path.clone(),
                position: 0,
                reason: format!("cannot find the segment's max timestamp: {e}"),
            })?;
            if max.is_none_or(|m| m < ts_ms) {
                continue;
            }
            let end = seg.published.load(Ordering::Acquire);
            let pos = {
                let ix = seg.indexes();
                u64::from(ix.offsets.lookup(ix.times.lookup(ts_ms)).1)
            };
            let find = |from: u64| {
                let mut found = None;
                seg.walk(from, end, false, |b| {
                    if b.max_ts >= ts_ms {
                        found = Some(*b);
                        return Err(String::new());
                    }
                    Ok(())
                })
                .map(|walked| (found, walked))
                .map_err(ReadError::Io)
            };
            let (mut found, mut walked) = find(pos)?;
            if found.is_none() && walked.error.is_some() && walked.pos == pos && pos > 0 {
                // The index pointed at no batch (it carries no checksum): start over.
                (found, walked) = find(0)?;
            }
            let Some(b) = found else {
                if let Some(reason) = walked.error {
                    return Err(ReadError::Corrupt {
                        path: seg.path.clone(),
                        position: walked.pos,
                        reason,
                    });
                }
                continue;
            };
            let mut bytes = Vec::new();
            let (len, _) = read_batches(&seg, b.pos, end, 1, &mut bytes)?;
            let (batch, _) = RecordBatch::parse(&bytes[..len]).map_err(|e| ReadError::Corrupt {
                path: seg.path.clone(),
                position: b.pos,
                reason: e.to_string(),
            })?;
            if batch.compression() != batch::Compression::None {
                let ts = if batch.first_timestamp() >= ts_ms {
                    batch.first_timestamp()
                } else {
                    batch.max_timestamp()
                };
                return Ok(Some((batch.base_offset(), ts)));
            }
            for r in batch.records() {
                let r = r.map_err(|e| ReadError::Corrupt {
                    path: seg.path.clone(),
                    position: b.pos,
                    reason: e.to_string(),
                })?;
                if r.timestamp_ms >= ts_ms {
                    return Ok(Some((r.offset, r.timestamp_ms)));
                }
            }
            // Only reachable with log-append time, where records carry the batch's max
            // timestamp, which qualified.
            return Ok(Some((batch.base_offset(), batch.max_timestamp())));
        }
        Ok(None)
    }
}

/// Walks batch headers from `pos`, where the batch with base offset `expected` starts, to
/// the batch holding `offset`. Running out of bytes below the high watermark is a hole.
fn walk_headers(
    seg: &Segment,
    offset: i64,
    end: u64,
    mut pos: u64,
    mut expected: i64,
) -> Result<u64, ReadError> {
    loop {
        let corrupt = |reason: String| ReadError::Corrupt {
            path: seg.path.clone(),
            position: pos,
            reason,
        };
        let Some(h) = seg.read_header(pos, end).map_err(ReadError::Io)? else {
            return Err(corrupt(format!(
                "offset {offset} is missing: the segment's batches end at byte {pos} \
                 (offset {expected}), before it"
            )));
        };
        let ((base, last), size) = parse_header(&h).map_err(|e| corrupt(e.to_string()))?;
        // Offsets are contiguous within a segment; a jump means a damaged header.
        if base != expected || last < base {
            return Err(corrupt(format!(
                "batch base offset {base} where {expected} was expected"
            )));
        }
        if last >= offset {
            return Ok(pos);
        }
        expected = last + 1;
        pos += size as u64;
    }
}

/// [`walk_headers`] from the segment start, reading in large chunks (the index was no help).
fn walk_from_start(seg: &Segment, offset: i64, end: u64) -> Result<u64, ReadError> {
    let mut expected = seg.base_offset;
    let mut found = None;
    let walked = seg
        .walk(0, end, false, |b| {
            if b.base != expected {
                return Err(format!(
                    "batch base offset {} where {expected} was expected",
                    b.base
                ));
            }
            if b.last >= offset {
                found = Some(b.pos);
                return Err(String::new());
            }
            expected = b.last + 1;
            Ok(())
        })
        .map_err(ReadError::Io)?;
    if let Some(pos) = found {
        return Ok(pos);
    }
    Err(ReadError::Corrupt {
        path: seg.path.clone(),
        position: walked.pos,
        reason: walked.error.unwrap_or_else(|| {
            format!(
                "offset {offset} is missing: the segment's batches end at byte {} (offset \
                 {expected}), before it",
                walked.pos
            )
        }),
    })
}

fn parse_header(h: &[u8; HEADER_LEN]) -> Result<((i64, i64), usize), BatchError> {
    let size = batch::batch_size(h)?;
    let magic = h[16] as i8;
    if magic != 2 {
        return Err(BatchError::BadMagic(magic));
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&h[..8]);
    let base = i64::from_be_bytes(a);
    let delta = i32::from_be_bytes([h[23], h[24], h[25], h[26]]);
    Ok(((base, base.wrapping_add(i64::from(delta))), size))
}

/// Reads whole batches from `pos` (a batch boundary) below `end` into `dst`: as many as fit
/// in `max_bytes`, at least one. Every batch is CRC-checked unless already verified. Returns
/// the bytes of whole batches at the start of the buffer and the offset after the last one.
fn read_batches(
    seg: &Segment,
    pos: u64,
    end: u64,
    max_bytes: usize,
    dst: &mut dyn ReadBuffer,
) -> Result<(usize, Option<i64>), ReadError> {
    let corrupt = |at: u64, reason: String| ReadError::Corrupt {
        path: seg.path.clone(),
        position: at,
        reason,
    };
    let avail = end.saturating_sub(pos);
    let mut len = avail.min(max_bytes as u64) as usize;
    if len < HEADER_LEN {
        // Too small for a batch: fetch exactly the first one.
        let h = seg
            .read_header(pos, end)
            .map_err(ReadError::Io)?
            .ok_or_else(|| corrupt(pos, "torn header".into()))?;
        len = parse_header(&h).map_err(|e| corrupt(pos, e.to_string()))?.1;
    }
    let mut buf: &mut [u8] = dst.buffer(len).ok_or(ReadError::NoBuffer { len })?;
    let mut n = read_full_at(&*seg.file, &mut buf[..len], pos).map_err(ReadError::Io)?;
    // Keep only whole batches; if the first does not fit, read exactly it.
    let mut whole = 0usize;
    loop {
        match batch::batch_size(&buf[whole..n]) {
            Ok(s) if whole + s <= n => whole += s,
            Ok(s) if whole == 0 => {
                if pos + s as u64 > end {
                    return Err(corrupt(
                        pos,
                        format!("batch of {s} bytes runs past the segment end"),
                    ));
                }
                buf = dst.buffer(s).ok_or(ReadError::NoBuffer { len: s })?;
                n = read_full_at(&*seg.file, &mut buf[..s], pos).map_err(ReadError::Io)?;
                if n < s {
                    return Err(corrupt(pos, "segment shorter than its batch".into()));
                }
                whole = s;
                break;
            }
            // A damaged batch after whole ones: serve those; the next read reports it.
            Err(BatchError::BadLength(_)) if whole > 0 => break,
            Err(BatchError::BadLength(l)) => {
                return Err(corrupt(
                    pos + whole as u64,
                    format!("invalid batch length {l}"),
                ));
            }
            _ => break,
        }
    }
    if whole == 0 {
        return Err(corrupt(pos, "no whole batch".into()));
    }
    // CRC-check what this process has not checked yet.
    let verified = seg.verified.load(Ordering::Acquire);
    let mut off = 0usize;
    let mut expected: Option<i64> = None;
    let mut damage = None;
    for b in batch::batches(&buf[..whole]) {
        let at = pos + off as u64;
        let b = match b {
            Ok(b) => b,
            Err(e) => {
                damage = Some(corrupt(at, e.to_string()));
                break;
            }
        };
        let size = b.as_bytes().len();
        if expected.is_some_and(|e| e != b.base_offset()) {
            damage = Some(corrupt(
                at,
                format!(
                    "batch base offset {} where {expected:?} was expected",
                    b.base_offset()
                ),
            ));
            break;
        }
        if at + size as u64 > verified
            && let Err(e) = b.validate()
        {
            damage = Some(corrupt(at, e.to_string()));
            break;
        }
        expected = Some(b.last_offset() + 1);
        off += size;
    }
    if let Some(e) = damage {
        // Serve the good batches before the damaged one, as Kafka does; the read that starts
        // at the damaged batch fails, naming it. Nothing of it is ever returned.
        if off == 0 {
            return Err(e);
        }
        whole = off;
    }
    if pos <= verified {
        seg.verified.fetch_max(pos + whole as u64, Ordering::AcqRel);
    }
    Ok((whole, expected))
}
