//! Per-partition producer state, Kafka's semantics: the sequence numbers of idempotent
//! producers (a retried batch is stored once), the open transactions that hold back the
//! last stable offset (LSO), and the index of aborted transactions that read_committed
//! readers skip.
//!
//! The state is changed only under the partition's writer lock, in append order, so it is
//! the same whether it was built live or by replaying the log's batch headers. Every
//! partition's state is snapshotted to `<data>/producer-state` (see `docs/log-format.md`)
//! whenever the recovery checkpoint is written; recovery loads the snapshot and replays the
//! batches after it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use crate::batch::RecordBatch;
use crate::error::ProducerError;
use crate::io::{Io, read_full_at, write_all_at};
use crate::partition::Partition;

/// How many recent batches per producer are remembered to answer retries (Kafka's 5, the
/// most in-flight requests an idempotent producer may have).
const RECENT_BATCHES: usize = 5;
/// How long a producer without an open transaction is remembered after its last batch
/// (Kafka's `producer.id.expiration.ms` default, one day).
pub(crate) const PRODUCER_EXPIRY_MS: i64 = 86_400_000;

/// The producer fields of a v2 batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
    pub records: i32,
    pub transactional: bool,
    /// `Some(commit)` for a control batch.
    pub marker: Option<bool>,
    /// The batch's max timestamp: when the producer was last heard of.
    pub timestamp_ms: i64,
}

impl BatchProducer {
    /// The producer fields of `b`, or `None` for a batch without a producer id.
    pub(crate) fn of(b: &RecordBatch<'_>) -> Option<BatchProducer> {
        let pid = b.producer_id();
        if pid < 0 {
            return None;
        }
        let marker = b.is_control().then(|| control_type(b) == Some(1));
        Some(BatchProducer {
            producer_id: pid,
            epoch: b.producer_epoch(),
            base_sequence: b.base_sequence(),
            // The batch's offset range, not its record count: compaction may have removed
            // records from it, and the sequence numbers follow the offsets.
            records: b.last_offset_delta().saturating_add(1),
            transactional: b.is_transactional(),
            marker,
            timestamp_ms: b.max_timestamp(),
        })
    }

    fn last_sequence(&self) -> i32 {
        let last = i64::from(self.base_sequence) + i64::from(self.records) - 1;
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// The control record's type: 0 abort, 1 commit (its key is version i16, type i16).
fn control_type(b: &RecordBatch<'_>) -> Option<i16> {
    let r = b.records().next()?.ok()?;
    let key = r.key?;
    (key.len() >= 4).then(|| i16::from_be_bytes([key[2], key[3]]))
}

/// An aborted transaction on one partition: its producer and its offsets, from the first
/// record to the abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer that aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
}

impl AbortedTxn {
    /// Whether `b` holds records of this aborted transaction (a read_committed reader skips
    /// it).
    pub fn covers(&self, b: &RecordBatch<'_>) -> bool {
        self.producer_id == b.producer_id()
            && b.base_offset() >= self.first_offset
            && b.base_offset() < self.last_offset
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    epoch: i16,
    /// Newest batch timestamp seen from the producer here.
    last_ms: i64,
    recent: VecDeque<BatchMeta>,
    /// First offset of this producer's open transaction here.
    txn_first: Option<i64>,
}

/// What an append should do with a producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it.
    Append,
    /// A retry of a batch already stored at these offsets: write nothing, answer with them.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// One partition's producers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, Entry>,
    /// First offset of every open transaction → its producer.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions, in the order of their markers.
    aborted: Vec<AbortedTxn>,
}

impl ProducerState {
    /// Checks a producer's batch against what this partition has stored from it.
    pub(crate) fn check(&self, p: &BatchProducer) -> Result<Verdict, ProducerError> {
        let Some(e) = self.producers.get(&p.producer_id) else {
            // Unknown producer (new, or its state was never here): any sequence starts it.
            return Ok(Verdict::Append);
        };
        if p.epoch < e.epoch {
            return Err(ProducerError::Fenced {
                producer_id: p.producer_id,
                epoch: p.epoch,
                current: e.epoch,
            });
        }
        if p.marker.is_some() || p.base_sequence < 0 {
            return Ok(Verdict::Append);
        }
        if p.epoch > e.epoch {
            // A new epoch starts its sequences at 0.
            return if p.base_sequence == 0 {
                Ok(Verdict::Append)
            } else {
                Err(ProducerError::OutOfOrderSequence {
                    producer_id: p.producer_id,
                    expected: 0,
                    got: p.base_sequence,
                })
            };
        }
        let last = p.last_sequence();
        if let Some(m) = e
            .recent
            .iter()
            .find(|m| m.first_seq == p.base_sequence && m.last_seq == last)
        {
            return Ok(Verdict::Duplicate {
                base_offset: m.base_offset,
                last_offset: m.last_offset,
            });
        }
        let expected = match e.recent.back() {
            Some(m) if m.last_seq == i32::MAX => 0,
            Some(m) => m.last_seq + 1,
            // Known only from a marker: anything continues it.
            None => return Ok(Verdict::Append),
        };
        if p.base_sequence != expected {
            return Err(ProducerError::OutOfOrderSequence {
                producer_id: p.producer_id,
                expected,
                got: p.base_sequence,
            });
        }
        Ok(Verdict::Append)
    }

    /// Records a batch written at `[base_offset, last_offset]` at `seen_ms` (the append
    /// time; when replaying the log, the batch's own max timestamp).
    pub(crate) fn apply(
        &mut self,
        p: &BatchProducer,
        base_offset: i64,
        last_offset: i64,
        seen_ms: i64,
    ) {
        let e = self.producers.entry(p.producer_id).or_default();
        e.last_ms = e.last_ms.max(seen_ms);
        if p.epoch > e.epoch {
            e.epoch = p.epoch;
            e.recent.clear();
        }
        match p.marker {
            Some(commit) => {
                if let Some(first) = e.txn_first.take() {
                    self.ongoing.remove(&first);
                    if !commit {
                        self.aborted.push(AbortedTxn {
                            producer_id: p.producer_id,
                            first_offset: first,
                            last_offset,
                        });
                    }
                }
            }
            None => {
                if p.base_sequence >= 0 {
                    if e.recent.len() == RECENT_BATCHES {
                        e.recent.pop_front();
                    }
                    e.recent.push_back(BatchMeta {
                        first_seq: p.base_sequence,
                        last_seq: p.last_sequence(),
                        base_offset,
                        last_offset,
                    });
                }
                if p.transactional && e.txn_first.is_none() {
                    e.txn_first = Some(base_offset);
                    self.ongoing.insert(base_offset, p.producer_id);
                }
            }
        }
    }

    /// The first offset of the oldest open transaction (`i64::MAX` if none).
    pub(crate) fn first_unstable(&self) -> i64 {
        self.ongoing.keys().next().copied().unwrap_or(i64::MAX)
    }

    /// Whether `producer_id` has an open transaction here.
    pub(crate) fn in_transaction(&self, producer_id: i64) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|e| e.txn_first.is_some())
    }

    /// Producers with an open transaction here.
    pub(crate) fn open_transactions(&self) -> Vec<(i64, i16)> {
        self.ongoing
            .values()
            .map(|pid| (*pid, self.producers.get(pid).map_or(0, |e| e.epoch)))
            .collect()
    }

    /// The current epoch of `producer_id` here, if it has written here.
    pub(crate) fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// Aborted transactions that may hold records in `[from, to)`.
    pub(crate) fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let i = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[i..]
            .iter()
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below `log_start` (deleted by retention), and
    /// producers without an open transaction not heard of for [`PRODUCER_EXPIRY_MS`]
    /// before `now_ms` (Kafka's `producer.id.expiration.ms`): a retry that old is appended
    /// again.
    pub(crate) fn trim(&mut self, log_start: i64, now_ms: i64) {
        let horizon = now_ms.saturating_sub(PRODUCER_EXPIRY_MS);
        self.producers
            .retain(|_, e| e.txn_first.is_some() || e.last_ms >= horizon);
        let i = self.aborted.partition_point(|a| a.last_offset < log_start);
        if i > 0 {
            self.aborted.drain(..i);
        }
    }

    /// Rebuilds from the batches in `buf` (concatenated, whole), applying those at or after
    /// `from`.
    pub(crate) fn replay(&mut self, buf: &[u8], from: i64) {
        for b in crate::batch::batches(buf) {
            let Ok(b) = b else { break };
            if b.base_offset() < from {
                continue;
            }
            if let Some(p) = BatchProducer::of(&b) {
                self.apply(&p, b.base_offset(), b.last_offset(), p.timestamp_ms);
            }
        }
    }

    /// This state as of `next_offset`, in the snapshot format (`docs/log-format.md`).
    pub(crate) fn encode(&self, next_offset: i64, body: &mut Vec<u8>) {
        body.extend_from_slice(&next_offset.to_be_bytes());
        let mut pids: Vec<_> = self.producers.iter().collect();
        pids.sort_by_key(|(pid, _)| **pid);
        body.extend_from_slice(&(pids.len() as u32).to_be_bytes());
        for (pid, e) in pids {
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.last_ms.to_be_bytes());
            body.extend_from_slice(&e.txn_first.unwrap_or(-1).to_be_bytes());
            body.push(e.recent.len() as u8);
            for m in &e.recent {
                body.extend_from_slice(&m.first_seq.to_be_bytes());
                body.extend_from_slice(&m.last_seq.to_be_bytes());
                body.extend_from_slice(&m.base_offset.to_be_bytes());
                body.extend_from_slice(&m.last_offset.to_be_bytes());
            }
        }
        body.extend_from_slice(&(self.aborted.len() as u32).to_be_bytes());
        for a in &self.aborted {
            body.extend_from_slice(&a.producer_id.to_be_bytes());
            body.extend_from_slice(&a.first_offset.to_be_bytes());
            body.extend_from_slice(&a.last_offset.to_be_bytes());
        }
    }

    /// Parses what [`encode`](Self::encode) wrote: the state and the offset it describes
    /// the log up to.
    fn decode(c: &mut Reader<'_>) -> Option<(ProducerState, i64)> {
        let next = c.i64()?;
        let mut s = ProducerState::default();
        for _ in 0..c.u32()? {
            let pid = c.i64()?;
            let epoch = c.i16()?;
            let last_ms = c.i64()?;
            let txn_first = Some(c.i64()?).filter(|o| *o >= 0);
            let mut recent = VecDeque::new();
            for _ in 0..c.u8()? {
                recent.push_back(BatchMeta {
                    first_seq: c.i32()?,
                    last_seq: c.i32()?,
                    base_offset: c.i64()?,
                    last_offset: c.i64()?,
                });
            }
            if let Some(first) = txn_first {
                s.ongoing.insert(first, pid);
            }
            s.producers.insert(
                pid,
                Entry {
                    epoch,
                    last_ms,
                    recent,
                    txn_first,
                },
            );
        }
        for _ in 0..c.u32()? {
            s.aborted.push(AbortedTxn {
                producer_id: c.i64()?,
                first_offset: c.i64()?,
                last_offset: c.i64()?,
            });
        }
        Some((s, next))
    }
}

/// A snapshot of every partition's producers: what `<data>/producer-state` holds.
pub(crate) type Snapshots = HashMap<(String, u32), (ProducerState, i64)>;

/// The bytes of `<data>/producer-state`: magic, CRC-32C of the rest, then per partition its
/// topic, id and state (`docs/log-format.md`).
pub(crate) fn encode_snapshots(parts: &[((&str, u32), Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(parts.len() as u32).to_be_bytes());
    for ((topic, id), state) in parts {
        body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&(state.len() as u32).to_be_bytes());
        body.extend_from_slice(state);
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Parses `<data>/producer-state`; `None` if it is not whole and valid (recovery then
/// rebuilds every partition's state from its batches).
pub(crate) fn decode_snapshots(bytes: &[u8]) -> Option<Snapshots> {
    let body = bytes.strip_prefix(SNAPSHOT_MAGIC)?;
    let (crc, body) = body.split_at_checked(4)?;
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return None;
    }
    let mut c = Reader(body);
    let mut out = HashMap::new();
    for _ in 0..c.u32()? {
        let len = usize::from(u16::from_be_bytes(c.take()?));
        let (topic, rest) = c.0.split_at_checked(len)?;
        c.0 = rest;
        let topic = std::str::from_utf8(topic).ok()?.to_string();
        let id = c.u32()?;
        let len = c.u32()? as usize;
        let (state, rest) = c.0.split_at_checked(len)?;
        c.0 = rest;
        let mut r = Reader(state);
        let decoded = ProducerState::decode(&mut r)?;
        if !r.0.is_empty() {
            return None;
        }
        out.insert((topic, id), decoded);
    }
    c.0.is_empty().then_some(out)
}

/// First bytes of `<data>/producer-state`.
const SNAPSHOT_MAGIC: &[u8; 4] = b"RPS1";
/// Name of the snapshot file in the data dir.
pub(crate) const SNAPSHOT_FILE: &str = "producer-state";

/// Reads `<data>/producer-state`: every partition's state as of an offset. Missing or
/// invalid, it is empty (recovery then rebuilds each partition's state from its batches).
pub(crate) fn read_snapshots(io: &dyn Io, data: &Path) -> std::io::Result<Snapshots> {
    let path = data.join(SNAPSHOT_FILE);
    if !path.exists() {
        return Ok(Snapshots::new());
    }
    let f = io.open(&path, false)?;
    let len = usize::try_from(f.len()?).unwrap_or(usize::MAX);
    let mut bytes = vec![0; len];
    let n = read_full_at(&*f, &mut bytes, 0)?;
    bytes.truncate(n);
    Ok(decode_snapshots(&bytes).unwrap_or_else(|| {
        tracing::warn!(path = %path.display(), "ignoring an invalid producer-state snapshot");
        Snapshots::new()
    }))
}

/// Writes every partition's producer state to `<data>/producer-state` (a new file renamed
/// over the old one).
pub(crate) fn write_snapshots(
    io: &dyn Io,
    data: &Path,
    parts: &[Arc<Partition>],
) -> std::io::Result<()> {
    let encoded: Vec<_> = parts
        .iter()
        .map(|p| {
            let mut body = Vec::new();
            p.encode_producers(&mut body);
            ((p.topic(), p.id()), body)
        })
        .collect();
    // Replaced by rename but not fsynced: a snapshot lost or torn by a power loss fails its
    // CRC, and recovery then replays the partitions from their start: slower, never wrong.
    let path = data.join(SNAPSHOT_FILE);
    let tmp = path.with_extension("tmp");
    let f = io.open(&tmp, true)?;
    f.set_len(0)?;
    write_all_at(&*f, &encode_snapshots(&encoded), 0)?;
    drop(f);
    io.rename(&tmp, &path)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, records: i32, txn: bool) -> BatchProducer {
        BatchProducer {
            producer_id: pid,
            epoch,
            base_sequence: seq,
            records,
            transactional: txn,
            marker: None,
            timestamp_ms: 0,
        }
    }

    fn marker(pid: i64, epoch: i16, commit: bool) -> BatchProducer {
        BatchProducer {
            producer_id: pid,
            epoch,
            base_sequence: -1,
            records: 1,
            transactional: true,
            marker: Some(commit),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn retries_are_duplicates_and_gaps_are_refused() {
        let mut s = ProducerState::default();
        let b = batch(7, 0, 0, 3, false);
        assert_eq!(s.check(&b).unwrap(), Verdict::Append);
        s.apply(&b, 10, 12, 0);
        assert_eq!(
            s.check(&b).unwrap(),
            Verdict::Duplicate {
                base_offset: 10,
                last_offset: 12
            }
        );
        assert!(matches!(
            s.check(&batch(7, 0, 5, 1, false)),
            Err(ProducerError::OutOfOrderSequence { expected: 3, .. })
        ));
        assert_eq!(s.check(&batch(7, 0, 3, 1, false)).unwrap(), Verdict::Append);
        assert!(matches!(
            s.check(&batch(7, 1, 4, 1, false)),
            Err(ProducerError::OutOfOrderSequence { expected: 0, .. })
        ));
        s.apply(&batch(7, 1, 0, 1, false), 13, 13, 0);
        assert!(matches!(
            s.check(&batch(7, 0, 4, 1, false)),
            Err(ProducerError::Fenced { current: 1, .. })
        ));
    }

    #[test]
    fn transactions_hold_the_lso_and_aborts_are_indexed() {
        let mut s = ProducerState::default();
        s.apply(&batch(1, 0, 0, 2, true), 0, 1, 0);
        s.apply(&batch(2, 0, 0, 1, true), 2, 2, 0);
        s.apply(&batch(1, 0, 2, 1, true), 3, 3, 0);
        assert_eq!(s.first_unstable(), 0);
        s.apply(&marker(1, 0, false), 4, 4, 0);
        assert_eq!(s.first_unstable(), 2);
        s.apply(&marker(2, 0, true), 5, 5, 0);
        assert_eq!(s.first_unstable(), i64::MAX);
        assert_eq!(
            s.aborted_between(0, 6),
            vec![AbortedTxn {
                producer_id: 1,
                first_offset: 0,
                last_offset: 4
            }]
        );
        assert!(s.aborted_between(5, 9).is_empty());
        let mut body = Vec::new();
        s.encode(6, &mut body);
        let file = encode_snapshots(&[(("t", 3), body)]);
        let back = decode_snapshots(&file).unwrap();
        let (back, next) = &back[&("t".to_string(), 3)];
        assert_eq!(*next, 6);
        assert_eq!(back.producers, s.producers);
        assert_eq!(back.aborted, s.aborted);
        assert_eq!(back.ongoing, s.ongoing);
        let mut bad = file.clone();
        bad[10] ^= 1;
        assert!(decode_snapshots(&bad).is_none());
        assert!(decode_snapshots(&file[..file.len() - 1]).is_none());
    }
}
