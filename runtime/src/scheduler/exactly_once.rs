//! Exactly-once in embedded mode: a worker's outputs, dead letters and offset commit as one
//! transaction of the log (`rill_log::Log::init_producer_id` and the rest), Kafka's
//! protocol driven in process.
//!
//! Each worker (deployment group, topic, partition) has its own transactional id,
//! `rill-<group>-<topic>-<partition>`. Initialising it when the worker starts bumps its
//! epoch, which fences any older instance and aborts the transaction a crashed one left
//! open. A turn's outputs are appended as transactional batches; the commit adds the
//! group's next offset to the transaction and ends it, so readers that read committed see
//! the outputs exactly when the offset moves past their input.

use std::collections::HashMap;
use std::sync::Arc;

use rill_log::batch::{ProducerFields, encode, set_producer};
use rill_log::{AppendError, AppendInfo, Log, Partition, Record, TxnError};

/// How long a worker's transaction may stay open before the log aborts it (a turn's
/// appends and its commit run back to back, so this only matters for a stuck worker).
const TRANSACTION_TIMEOUT_MS: i64 = 60_000;

/// Why a transactional step failed.
#[derive(Debug)]
pub(crate) enum TxnStepError {
    /// The append itself failed (classified like any append error).
    Append(AppendError),
    /// The coordinator refused or could not store the step.
    Coordinator(TxnError),
}

impl std::fmt::Display for TxnStepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxnStepError::Append(e) => write!(f, "{e}"),
            TxnStepError::Coordinator(e) => write!(f, "transaction: {e}"),
        }
    }
}

/// One worker's transactional producer.
#[derive(Debug)]
pub(crate) struct Transaction {
    log: Arc<Log>,
    id: String,
    producer_id: i64,
    epoch: i16,
    /// Next sequence number per partition written to (for this epoch).
    sequences: HashMap<(String, u32), i32>,
    /// Partitions added to the open transaction (none: no transaction is open).
    added: Vec<(String, u32)>,
}

impl Transaction {
    /// The transactional id of a worker.
    pub(crate) fn id_for(group: &str, topic: &str, partition: u32) -> String {
        format!("rill-{group}-{topic}-{partition}")
    }

    /// Initialises the worker's transactional id: fences older instances and aborts what
    /// they left open.
    pub(crate) fn init(log: Arc<Log>, id: String) -> Result<Self, TxnError> {
        let (producer_id, epoch) = log.init_producer_id(Some(&id), TRANSACTION_TIMEOUT_MS, None)?;
        Ok(Transaction {
            log,
            id,
            producer_id,
            epoch,
            sequences: HashMap::new(),
            added: Vec::new(),
        })
    }

    /// Appends `records` as one transactional batch to `partition`, adding the partition
    /// to the transaction first (which opens it).
    pub(crate) fn append(
        &mut self,
        partition: &Partition,
        records: &[Record<'_>],
        now_ms: i64,
    ) -> Result<AppendInfo, TxnStepError> {
        let tp = (partition.topic().to_string(), partition.id());
        if !self.added.contains(&tp) {
            self.log
                .add_partitions_to_txn(
                    &self.id,
                    self.producer_id,
                    self.epoch,
                    std::slice::from_ref(&tp),
                )
                .map_err(TxnStepError::Coordinator)?;
            self.added.push(tp.clone());
        }
        let seq = self.sequences.entry(tp).or_insert(0);
        let mut buf = encode(records, now_ms);
        set_producer(
            &mut buf,
            ProducerFields {
                producer_id: self.producer_id,
                epoch: self.epoch,
                base_sequence: *seq,
                transactional: true,
            },
        );
        let info = partition
            .append_batches(&mut buf)
            .map_err(TxnStepError::Append)?;
        // Sequences wrap to 0 after i32::MAX, as Kafka's do.
        *seq = ((i64::from(*seq) + records.len() as i64) % (i64::from(i32::MAX) + 1)) as i32;
        Ok(info)
    }

    /// Commits the open transaction together with `group`'s next offset `next` on
    /// `topic`/`partition` (a transaction with no output commits the offset alone).
    pub(crate) fn commit(
        &mut self,
        group: &str,
        topic: &str,
        partition: u32,
        next: i64,
    ) -> Result<(), TxnError> {
        let r = self.log.commit_txn_with_offsets(
            &self.id,
            self.producer_id,
            self.epoch,
            group,
            &[(topic.to_string(), partition, next)],
        );
        self.added.clear();
        r
    }

    /// Aborts the open transaction, if any: its outputs are never read committed.
    pub(crate) fn abort(&mut self) -> Result<(), TxnError> {
        if self.added.is_empty() {
            return Ok(());
        }
        self.added.clear();
        self.log
            .end_txn(&self.id, self.producer_id, self.epoch, false)
    }
}
