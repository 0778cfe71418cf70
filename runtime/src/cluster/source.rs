//! One assigned partition as a worker's [`Source`]: what the member fetched, re-encoded as
//! uncompressed v2 batches the guest walks in place, and the group's position in Kafka.
//!
//! The member pushes each fetched message; consecutive offsets go into the same batch (a
//! gap — compaction, transaction markers — starts a new one, with its real base offset).
//! The worker reads whole batches from its position; batches wholly below it are dropped,
//! so what stays buffered is at most what is not yet committed plus what was fetched ahead
//! (bounded by the member pausing the partition).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use event_listener::{Event, EventListener};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use rill_log::batch::BatchBuilder;
use rill_log::{Header, ReadBuffer, ReadError, ReadInto, ReadResult, Record};

use super::REQUEST_TIMEOUT;
use super::member::MemberContext;
use super::txn::Transactions;
use crate::deployment::{DeploymentSpec, StartFrom};
use crate::scheduler::{DeploymentShared, Source};

/// Records per re-encoded batch, and its bytes: small enough that an isolation re-read or a
/// small `max_batch_bytes` reads little, large enough that the guest's walk stays cheap.
const BATCH_RECORDS: usize = 500;
const BATCH_BYTES: usize = 256 << 10;

struct Chunk {
    first: i64,
    next: i64,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Buffer {
    chunks: VecDeque<Chunk>,
    /// The batch being filled: its first offset, the offset after its last record, and
    /// about how many bytes it holds.
    building: Option<(BatchBuilder, i64, i64, usize)>,
    /// Offset after the last message pushed; -1 before the first.
    end: i64,
    /// Offset after the last sealed batch (what a read can return); -1 before the first.
    sealed: i64,
    /// Bytes in `chunks`.
    bytes: usize,
}

impl Buffer {
    fn seal(&mut self) {
        if let Some((b, first, next, _)) = self.building.take() {
            let mut bytes = b.finish();
            // The builder writes base offset 0; the base offset is outside the CRC.
            bytes[..8].copy_from_slice(&first.to_be_bytes());
            self.bytes += bytes.len();
            self.sealed = next;
            self.chunks.push_back(Chunk { first, next, bytes });
        }
    }

    /// Drops batches wholly below `offset`.
    fn trim(&mut self, offset: i64) {
        while self.chunks.front().is_some_and(|c| c.next <= offset) {
            if let Some(c) = self.chunks.pop_front() {
                self.bytes -= c.bytes.len();
            }
        }
    }
}

/// A partition this host's member of the group was assigned.
pub(crate) struct ClusterSource {
    topic: String,
    partition: u32,
    consumer: Arc<BaseConsumer<MemberContext>>,
    buf: Mutex<Buffer>,
    event: Event,
    /// Set when the partition is revoked: commits stop, the worker is told to stop.
    revoked: AtomicBool,
    /// Exactly once: the partition's transactions, initialised before the start offset is
    /// read (`txn.rs`).
    txn: Option<Arc<Transactions>>,
}

impl ClusterSource {
    pub(crate) fn new(
        topic: &str,
        partition: u32,
        consumer: Arc<BaseConsumer<MemberContext>>,
        txn: Option<Arc<Transactions>>,
    ) -> Self {
        ClusterSource {
            txn,
            topic: topic.to_owned(),
            partition,
            consumer,
            buf: Mutex::new(Buffer {
                end: -1,
                sealed: -1,
                ..Buffer::default()
            }),
            event: Event::new(),
            revoked: AtomicBool::new(false),
        }
    }

    fn buf(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a fetched message. Messages come in offset order; one at or below what was
    /// already pushed (a re-fetch after a resume) is skipped.
    pub(crate) fn push(&self, msg: &BorrowedMessage<'_>) {
        let offset = msg.offset();
        let mut buf = self.buf();
        if offset < buf.end {
            return;
        }
        let contiguous = buf
            .building
            .as_ref()
            .is_some_and(|(_, _, next, _)| *next == offset);
        if !contiguous {
            buf.seal();
            buf.building = Some((BatchBuilder::new(), offset, offset, 0));
        }
        let headers: Vec<Header<'_>> = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| Header {
                        key: h.key,
                        value: h.value,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let record = Record {
            key: msg.key(),
            value: msg.payload(),
            headers: &headers,
            timestamp_ms: msg.timestamp().to_millis(),
        };
        let now = now_ms();
        let size = 32
            + record.key.map_or(0, <[u8]>::len)
            + record.value.map_or(0, <[u8]>::len)
            + headers
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 8)
                .sum::<usize>();
        let full = {
            let (b, _, next, bytes) = buf.building.as_mut().expect("a batch is being built");
            b.push(&record, now);
            *next = offset + 1;
            *bytes += size;
            b.len() >= BATCH_RECORDS || *bytes >= BATCH_BYTES
        };
        buf.end = offset + 1;
        if full {
            buf.seal();
        }
    }

    /// Seals what was pushed since the last call and wakes the worker.
    pub(crate) fn flush(&self) {
        self.buf().seal();
        self.event.notify(usize::MAX);
    }

    /// Bytes fetched and not yet processed.
    pub(crate) fn buffered(&self) -> usize {
        self.buf().bytes
    }

    /// Marks the partition revoked: its worker stops, and no commit is attempted.
    pub(crate) fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    fn tpl(&self, offset: Offset) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition_offset(&self.topic, self.partition as i32, offset);
        tpl
    }

    /// The group's committed offset, if it has one (a negative one is none).
    fn committed(&self) -> Result<Option<i64>, String> {
        let tpl = self
            .consumer
            .committed_offsets(self.tpl(Offset::Invalid), REQUEST_TIMEOUT)
            .map_err(|e| format!("fetching the committed offset failed: {e}"))?;
        let offset = tpl
            .elements()
            .first()
            .map(|e| e.offset())
            .unwrap_or(Offset::Invalid);
        Ok(match offset {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        })
    }

    /// Where `from` points in the partition, clamped to what the cluster holds.
    fn resolve(&self, from: StartFrom) -> Result<i64, String> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, self.partition as i32, REQUEST_TIMEOUT)
            .map_err(|e| format!("fetching the watermarks failed: {e}"))?;
        let o = match from {
            StartFrom::Earliest => low,
            StartFrom::Latest => high,
            StartFrom::Offset(o) => o,
            StartFrom::Timestamp(ts) => {
                let tpl = self
                    .consumer
                    .offsets_for_times(self.tpl(Offset::Offset(ts)), REQUEST_TIMEOUT)
                    .map_err(|e| format!("finding the offset of timestamp {ts}: {e}"))?;
                match tpl.elements().first().map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => high,
                }
            }
        };
        Ok(o.clamp(low, high))
    }
}

impl Source for ClusterSource {
    fn id(&self) -> u32 {
        self.partition
    }

    /// The end of the sealed batches: records still being batched are not readable yet
    /// (the member seals and wakes after each round of fetching).
    fn high_watermark(&self) -> i64 {
        self.buf().sealed
    }

    fn log_start_offset(&self) -> i64 {
        self.buf().chunks.front().map_or(0, |c| c.first)
    }

    fn listen(&self) -> EventListener {
        self.event.listen()
    }

    fn read_into(
        &self,
        start: i64,
        budget: usize,
        dst: &mut dyn ReadBuffer,
    ) -> Result<ReadInto, ReadError> {
        let mut buf = self.buf();
        buf.trim(start);
        let mut len = 0;
        let mut take = 0;
        let mut next_offset = start;
        for c in &buf.chunks {
            if take > 0 && len + c.bytes.len() > budget {
                break;
            }
            len += c.bytes.len();
            next_offset = c.next;
            take += 1;
        }
        let read = ReadInto {
            len,
            high_watermark: buf.sealed,
            log_start_offset: buf.chunks.front().map_or(start, |c| c.first),
            next_offset,
        };
        if len == 0 {
            return Ok(read);
        }
        let Some(out) = dst.buffer(len) else {
            return Err(ReadError::NoBuffer { len });
        };
        let mut at = 0;
        for c in buf.chunks.iter().take(take) {
            out[at..at + c.bytes.len()].copy_from_slice(&c.bytes);
            at += c.bytes.len();
        }
        Ok(read)
    }

    fn read(&self, offset: i64) -> Result<ReadResult, ReadError> {
        let buf = self.buf();
        let bytes = buf
            .chunks
            .iter()
            .find(|c| c.first <= offset && offset < c.next)
            .map(|c| Bytes::copy_from_slice(&c.bytes))
            .unwrap_or_default();
        Ok(ReadResult {
            bytes,
            high_watermark: buf.sealed,
            log_start_offset: buf.chunks.front().map_or(offset, |c| c.first),
            next_offset: offset + 1,
        })
    }

    fn start_offset(&self, dep: &DeploymentShared) -> Result<i64, String> {
        // Exactly once: fence the partition's previous owner first, so what it left open is
        // aborted and the committed offset read next is final.
        if let Some(t) = &self.txn {
            t.init()?;
        }
        if let Some(o) = self.committed()? {
            return Ok(o);
        }
        let spec = dep.spec();
        let o = self.resolve(spec.from)?;
        // Commit the starting point at once, so a member that takes the partition over
        // later starts from the same place.
        self.commit(&spec, o)?;
        Ok(o)
    }

    fn commit(&self, _spec: &DeploymentSpec, next: i64) -> Result<(), String> {
        if self.revoked.load(Ordering::SeqCst) {
            return Err(format!(
                "partition {}/{} was revoked: its new owner processes from the last commit",
                self.topic, self.partition
            ));
        }
        // With the other partitions' commits waiting now, in one request (commit.rs).
        self.consumer
            .context()
            .commits
            .commit(&self.consumer, &self.topic, self.partition, next)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
