//! The log's transaction API: the coordinator (`crate::txn`) bound to this log's
//! partitions and offsets store.

use std::sync::Arc;

use super::{Inner, Log};
use crate::offsets::Offsets;
use crate::partition::Partition;
use crate::txn::{TxnError, TxnLog, TxnMeta};

impl TxnLog for Inner {
    fn partition(&self, topic: &str, partition: u32) -> Option<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.get(topic)?.partition(partition).cloned()
    }

    fn offsets(&self) -> &Offsets {
        &self.offsets
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions()
    }
}

/// Transactions, Kafka's semantics (see `docs/log-format.md` and `docs/delivery.md`).
impl Log {
    /// Kafka's InitProducerId. Without a transactional id: a fresh idempotent producer id,
    /// or, when `current` names one, its epoch bumped. With one: its producer id and a
    /// bumped epoch, which fences every older instance; a transaction the previous instance
    /// left open is aborted first. `timeout_ms` bounds how long its transactions may stay
    /// open.
    pub fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        timeout_ms: i64,
        current: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        let inner = &*self.inner;
        inner
            .txn
            .init_producer_id(inner, transactional_id, timeout_ms, current)
    }

    /// Kafka's AddPartitionsToTxn: `partitions` may now take the transaction's records.
    pub fn add_partitions_to_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, u32)],
    ) -> Result<(), TxnError> {
        let inner = &*self.inner;
        inner
            .txn
            .add_partitions(inner, transactional_id, producer_id, epoch, partitions)
    }

    /// Kafka's AddOffsetsToTxn: the transaction will commit offsets of `group`.
    pub fn add_offsets_to_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        self.inner
            .txn
            .add_offsets(transactional_id, producer_id, epoch, group)
    }

    /// Kafka's TxnOffsetCommit: `offsets` (topic, partition, next offset) of `group`,
    /// applied if and when the transaction commits.
    pub fn txn_offset_commit(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: &[(String, u32, i64)],
    ) -> Result<(), TxnError> {
        self.inner
            .txn
            .txn_offset_commit(transactional_id, producer_id, epoch, group, offsets)
    }

    /// Kafka's EndTxn: commits or aborts. Returns once every partition of the transaction
    /// has its marker and, on commit, the offsets are applied.
    pub fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        let inner = &*self.inner;
        inner
            .txn
            .end(inner, transactional_id, producer_id, epoch, commit)
    }

    /// [`add_offsets_to_txn`](Self::add_offsets_to_txn),
    /// [`txn_offset_commit`](Self::txn_offset_commit) and a committing
    /// [`end_txn`](Self::end_txn) as one step (one state entry instead of three), for a
    /// producer in this process: `group`'s `offsets` (topic, partition, next offset) commit
    /// with the transaction. A transaction with nothing added commits the offsets alone.
    pub fn commit_txn_with_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: &[(String, u32, i64)],
    ) -> Result<(), TxnError> {
        let inner = &*self.inner;
        inner
            .txn
            .commit_with_offsets(inner, transactional_id, producer_id, epoch, group, offsets)
    }

    /// Checks that `producer_id` may append transactional batches to `topic`/`partition`
    /// now (its transaction is open and includes the partition).
    pub fn verify_txn_partition(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: u32,
    ) -> Result<(), TxnError> {
        self.inner
            .txn
            .verify_partition(producer_id, epoch, topic, partition)
    }

    /// Whether an open transaction holds offsets of `group` for the partition (an
    /// OffsetFetch requiring stable offsets answers "unstable" then).
    pub fn pending_txn_offset(&self, group: &str, topic: &str, partition: u32) -> bool {
        self.inner.txn.pending_offset(group, topic, partition)
    }

    /// Aborts the transactions open past their timeout (the flusher does this every second;
    /// tests call it with a chosen clock). Returns how many were aborted.
    pub fn abort_expired_transactions(&self, now_ms: i64) -> usize {
        let inner = &*self.inner;
        inner.txn.expire(inner, now_ms)
    }

    /// Every transactional id the coordinator knows, sorted.
    pub fn transactions(&self) -> Vec<TxnMeta> {
        self.inner.txn.list()
    }
}
