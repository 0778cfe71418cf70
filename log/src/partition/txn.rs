//! The producer side of a partition: idempotence and transaction checks on append,
//! transaction markers, the last stable offset, aborted transactions and read_committed
//! reads. The state itself lives in `crate::producers`.

use std::sync::atomic::Ordering;

use super::{AppendInfo, Partition, Pending, ReadBuffer, ReadInto, lock, now_ms};
use crate::batch::{self, RecordBatch};
use crate::error::{AppendError, ProducerError, ReadError};
use crate::producers::{AbortedTxn, BatchProducer, ProducerState, Verdict};

impl Partition {
    /// Checks the producer fields of the batches about to be written at `next`, under the
    /// writer lock. `Some` answers a retried batch with where it was stored the first time.
    pub(super) fn check_producers(
        &self,
        next: i64,
        batches: &[Pending],
    ) -> Result<Option<AppendInfo>, AppendError> {
        if batches.iter().all(|p| p.producer.is_none()) {
            return Ok(None);
        }
        let state = lock(&self.producers);
        if let [one] = batches {
            let Some(p) = &one.producer else {
                return Ok(None);
            };
            return match state.check(p)? {
                Verdict::Append => Ok(None),
                Verdict::Duplicate {
                    base_offset,
                    last_offset,
                } => Ok(Some(AppendInfo {
                    base_offset,
                    last_offset,
                    log_append_time_ms: now_ms(),
                })),
            };
        }
        // Several batches in one append: each must follow the one before it.
        let mut scratch: ProducerState = state.clone();
        drop(state);
        let mut at = next;
        for b in batches {
            let last = at + i64::from(b.delta);
            if let Some(p) = &b.producer {
                if let Verdict::Duplicate { .. } = scratch.check(p)? {
                    return Err(ProducerError::MixedRetry {
                        producer_id: p.producer_id,
                    }
                    .into());
                }
                scratch.apply(p, at, last, now_ms());
            }
            at = last + 1;
        }
        Ok(None)
    }

    /// Records the producer fields of batches just written from `base`, under the writer
    /// lock and before they are published.
    pub(super) fn apply_producers(&self, base: i64, batches: &[Pending], now: i64) {
        if batches.iter().all(|p| p.producer.is_none()) {
            return;
        }
        let mut state = lock(&self.producers);
        let mut at = base;
        for b in batches {
            let last = at + i64::from(b.delta);
            if let Some(p) = &b.producer {
                state.apply(p, at, last, now);
            }
            at = last + 1;
        }
        self.first_unstable
            .store(state.first_unstable(), Ordering::Release);
    }

    /// Appends a transaction marker (a control batch) ending `producer_id`'s transaction on
    /// this partition: commit or abort. Written by the transaction coordinator.
    pub fn append_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<AppendInfo, AppendError> {
        let now = now_ms();
        let mut buf = batch::encode_marker(producer_id, epoch, commit, coordinator_epoch, now);
        let (b, _) = RecordBatch::parse(&buf)?;
        let p = Pending {
            at: 0,
            delta: 0,
            max_ts: b.max_timestamp(),
            producer: BatchProducer::of(&b),
        };
        self.write(&mut buf, &[p], now)
    }

    /// The last stable offset: the first offset of the oldest open transaction, or the high
    /// watermark when none is open. read_committed readers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        hw.min(self.first_unstable.load(Ordering::Acquire))
    }

    /// Aborted transactions that may hold records in `[from, to)`, oldest marker first:
    /// what a read_committed reader of that range skips (Kafka's Fetch `AbortedTransactions`).
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        lock(&self.producers).aborted_between(from, to)
    }

    /// Whether `producer_id` has an open transaction on this partition.
    pub fn in_transaction(&self, producer_id: i64) -> bool {
        lock(&self.producers).in_transaction(producer_id)
    }

    /// Producers with a transaction open on this partition, with their epochs.
    pub fn open_transactions(&self) -> Vec<(i64, i16)> {
        lock(&self.producers).open_transactions()
    }

    /// The epoch this partition last saw from `producer_id`.
    pub fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        lock(&self.producers).epoch(producer_id)
    }

    /// [`read_into`](Self::read_into) for a read_committed reader: whole batches below the
    /// last stable offset only ([`ReadInto::high_watermark`] is still the high watermark).
    /// Aborted records are not removed; skip them with
    /// [`aborted_transactions`](Self::aborted_transactions).
    pub fn read_committed_into(
        &self,
        from_offset: i64,
        max_bytes: usize,
        dst: &mut dyn ReadBuffer,
    ) -> Result<ReadInto, ReadError> {
        let lso = self.last_stable_offset();
        self.read_into_until(from_offset, max_bytes, lso, dst)
    }

    /// This partition's producer state as of the offset it has reached, for the snapshot.
    pub(crate) fn encode_producers(&self, out: &mut Vec<u8>) {
        let w = self.lock_writer();
        let mut state = lock(&self.producers);
        state.trim(self.log_start_offset(), now_ms());
        state.encode(w.next_offset, out);
    }

    /// Restores the producer state at open: from `snapshot` (the state as of an offset),
    /// then by replaying the batches after it; with no usable snapshot, from the start of
    /// the log.
    ///
    /// Damage met on the way stops the replay with a warning: recovery reports damage in the
    /// middle of the log and never deletes it, and the partition stays readable.
    pub(crate) fn restore_producers(&self, snapshot: Option<(ProducerState, i64)>) {
        let hw = self.high_watermark();
        let start = self.log_start_offset();
        let (mut state, from) = match snapshot {
            // A snapshot ahead of the log describes records recovery cut: not usable.
            Some((s, at)) if at <= hw => (s, at.max(start)),
            _ => (ProducerState::default(), start),
        };
        let mut at = from;
        let mut buf = Vec::new();
        while at < hw {
            let r = match self.read_into(at, 1 << 20, &mut buf) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(topic = self.topic(), partition = self.id(), offset = at,
                        error = %e, "producer state rebuilt only up to damaged data");
                    break;
                }
            };
            if r.len == 0 || r.next_offset <= at {
                break;
            }
            state.replay(&buf[..r.len], at);
            at = r.next_offset;
        }
        state.trim(start, now_ms());
        self.first_unstable
            .store(state.first_unstable(), Ordering::Release);
        *lock(&self.producers) = state;
    }
}
