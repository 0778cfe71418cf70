//! The transaction coordinator, Kafka's semantics: transactional ids mapped to a producer id
//! and epoch (re-initialising one bumps the epoch and fences the previous instance), the
//! partitions and consumer offsets a transaction touches, and its end: commit or abort
//! markers written to every partition, and the offsets applied on commit.
//!
//! Ending a transaction is a two-phase step: the `Prepare*` state is written to the state
//! file (`store.rs`) first, then the markers, then the offsets, then `Complete*`. A
//! transaction found in `Prepare*` at open, or left there by a failed write, is completed
//! again (markers are only written where the producer still has the transaction open).
//! Open transactions survive a restart and are aborted when they time out.
//!
//! Both doors use it: the Kafka listener for clients' transactional producers, and the
//! scheduler for exactly-once deployments.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::error::{OffsetsError, StorageError};
use crate::io::Io;
use crate::offsets::Offsets;
use crate::partition::{Partition, now_ms};

mod store;

pub(crate) use store::FILE as STATE_FILE;
use store::{Entry, Store};

/// Longest transaction timeout accepted (Kafka's `transaction.max.timeout.ms` default).
pub const MAX_TRANSACTION_TIMEOUT_MS: i64 = 900_000;
/// How long a transactional id without an open transaction is kept after its last
/// transition (Kafka's `transactional.id.expiration.ms` default, seven days).
pub const TRANSACTIONAL_ID_EXPIRATION_MS: i64 = 7 * 24 * 3_600_000;
/// Producer ids are reserved in blocks of this many, each block written before use.
const PID_BLOCK: i64 = 1000;

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnState {
    /// Initialised, nothing added yet.
    Empty,
    /// Partitions or offsets were added.
    Ongoing,
    /// Commit decided: markers and offsets being written.
    PrepareCommit,
    /// Abort decided: markers being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

/// One consumer offset committed inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOffset {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next offset to read.
    pub offset: i64,
}

/// A transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// How long a transaction may stay open, in ms.
    pub timeout_ms: i64,
    /// Where the current (or last) transaction is.
    pub state: TxnState,
    /// Partitions the transaction wrote to (or may write to).
    pub partitions: Vec<(String, u32)>,
    /// Consumer groups added with AddOffsetsToTxn.
    pub groups: Vec<String>,
    /// Offsets committed in the transaction, applied on commit.
    pub offsets: Vec<TxnOffset>,
    /// When the current transaction started (ms since the epoch).
    pub started_ms: i64,
    /// When the state last changed (ms since the epoch).
    #[serde(default)]
    pub updated_ms: i64,
}

impl TxnMeta {
    /// Records `group`'s `offsets` (topic, partition, next offset), replacing earlier ones
    /// of the same partitions.
    fn put_offsets(&mut self, group: &str, offsets: &[(String, u32, i64)]) {
        for (topic, partition, offset) in offsets {
            self.offsets
                .retain(|o| !(o.group == group && &o.topic == topic && o.partition == *partition));
            self.offsets.push(TxnOffset {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
            });
        }
    }
}

/// Why a transactional request was refused; each maps to Kafka's error of the same name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxnError {
    /// A newer instance with the same transactional id exists (its epoch is higher).
    #[error("producer fenced: transactional id {0} was initialised again by a newer producer")]
    ProducerFenced(String),
    /// The producer id does not belong to the transactional id.
    #[error("producer id {producer_id} does not belong to transactional id {transactional_id}")]
    InvalidProducerIdMapping {
        /// The transactional id.
        transactional_id: String,
        /// The producer id given.
        producer_id: i64,
    },
    /// The request does not fit the transaction's state.
    #[error("transaction of {transactional_id} is {state:?}: {what}")]
    InvalidTxnState {
        /// The transactional id.
        transactional_id: String,
        /// Its state.
        state: TxnState,
        /// What was asked.
        what: &'static str,
    },
    /// The previous transaction is still being completed; retry.
    #[error("transaction of {0} is still being completed")]
    ConcurrentTransactions(String),
    /// The timeout is not within (0, MAX_TRANSACTION_TIMEOUT_MS].
    #[error("transaction timeout {0} ms is not between 1 and {MAX_TRANSACTION_TIMEOUT_MS}")]
    InvalidTimeout(i64),
    /// The partition does not exist.
    #[error("unknown topic or partition {0}/{1}")]
    UnknownTopicOrPartition(String, u32),
    /// Writing the coordinator's state, a marker or an offset failed.
    #[error("transaction storage error: {0}")]
    Storage(String),
}

impl From<std::io::Error> for TxnError {
    fn from(e: std::io::Error) -> Self {
        TxnError::Storage(e.to_string())
    }
}

impl From<OffsetsError> for TxnError {
    fn from(e: OffsetsError) -> Self {
        TxnError::Storage(e.to_string())
    }
}

/// What the coordinator needs from the log: partitions to write markers to, and the
/// offsets store.
pub(crate) trait TxnLog {
    fn partition(&self, topic: &str, partition: u32) -> Option<Arc<Partition>>;
    fn offsets(&self) -> &Offsets;
    fn all_partitions(&self) -> Vec<Arc<Partition>>;
}

/// The coordinator.
#[derive(Debug)]
pub(crate) struct Coordinator {
    store: Mutex<Store>,
    txns: Mutex<HashMap<String, Arc<Mutex<TxnMeta>>>>,
    /// Producer id → transactional id.
    by_pid: Mutex<HashMap<i64, String>>,
    /// Next producer id, and the end of the reserved block.
    pids: Mutex<(i64, i64)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Coordinator {
    /// Opens the state file of the data dir `data`.
    pub(crate) fn open(io: Arc<dyn Io>, data: &std::path::Path) -> std::io::Result<Coordinator> {
        let (store, metas, block) = Store::open(io, data)?;
        let mut by_pid = HashMap::new();
        let mut next = block;
        let mut txns = HashMap::new();
        for m in metas {
            by_pid.insert(m.producer_id, m.transactional_id.clone());
            next = next.max(m.producer_id + 1);
            txns.insert(m.transactional_id.clone(), Arc::new(Mutex::new(m)));
        }
        Ok(Coordinator {
            store: Mutex::new(store),
            txns: Mutex::new(txns),
            by_pid: Mutex::new(by_pid),
            pids: Mutex::new((next, next)),
        })
    }

    fn persist(&self, m: &mut TxnMeta) -> Result<(), TxnError> {
        m.updated_ms = now_ms();
        lock(&self.store).write(&Entry::Txn(m.clone()))?;
        Ok(())
    }

    /// A fresh producer id, durably reserved first.
    fn allocate_pid(&self) -> Result<i64, TxnError> {
        let mut p = lock(&self.pids);
        if p.0 >= p.1 {
            let end = p.0 + PID_BLOCK;
            lock(&self.store).write(&Entry::PidBlock(end))?;
            p.1 = end;
        }
        let pid = p.0;
        p.0 += 1;
        Ok(pid)
    }

    /// fsyncs the state file.
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        lock(&self.store).sync().map_err(|e| StorageError::Io {
            path: STATE_FILE.into(),
            source: e,
        })
    }

    fn meta(&self, tid: &str) -> Option<Arc<Mutex<TxnMeta>>> {
        lock(&self.txns).get(tid).cloned()
    }

    /// InitProducerId. Without a transactional id: a fresh idempotent producer id (or, when
    /// `current` names one, its epoch bumped). With one: the id's producer with its epoch
    /// bumped, any open transaction of the previous instance aborted first.
    pub(crate) fn init_producer_id(
        &self,
        log: &dyn TxnLog,
        tid: Option<&str>,
        timeout_ms: i64,
        current: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        let Some(tid) = tid else {
            return match current {
                Some((pid, epoch)) if pid >= 0 && (0..i16::MAX - 1).contains(&epoch) => {
                    Ok((pid, epoch + 1))
                }
                _ => Ok((self.allocate_pid()?, 0)),
            };
        };
        if timeout_ms <= 0 || timeout_ms > MAX_TRANSACTION_TIMEOUT_MS {
            return Err(TxnError::InvalidTimeout(timeout_ms));
        }
        let entry = {
            let mut txns = lock(&self.txns);
            match txns.get(tid) {
                Some(m) => m.clone(),
                None => {
                    let pid = self.allocate_pid()?;
                    let m = TxnMeta {
                        transactional_id: tid.to_string(),
                        producer_id: pid,
                        epoch: -1,
                        timeout_ms,
                        state: TxnState::Empty,
                        partitions: Vec::new(),
                        groups: Vec::new(),
                        offsets: Vec::new(),
                        started_ms: 0,
                        updated_ms: 0,
                    };
                    lock(&self.by_pid).insert(pid, tid.to_string());
                    let m = Arc::new(Mutex::new(m));
                    txns.insert(tid.to_string(), m.clone());
                    m
                }
            }
        };
        let mut m = lock(&entry);
        if let Some((pid, epoch)) = current
            && pid >= 0
            && (pid != m.producer_id || epoch != m.epoch)
        {
            return Err(TxnError::ProducerFenced(tid.to_string()));
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => self.complete(log, &mut m)?,
            TxnState::Ongoing => {
                self.bump(&mut m)?;
                m.state = TxnState::PrepareAbort;
                self.persist(&mut m)?;
                self.complete(log, &mut m)?;
            }
            _ => {}
        }
        if m.state == TxnState::Ongoing {
            return Err(TxnError::ConcurrentTransactions(tid.to_string()));
        }
        self.bump(&mut m)?;
        m.timeout_ms = timeout_ms;
        m.state = TxnState::Empty;
        self.persist(&mut m)?;
        Ok((m.producer_id, m.epoch))
    }

    /// The next epoch, or a new producer id when the epoch is exhausted.
    fn bump(&self, m: &mut TxnMeta) -> Result<(), TxnError> {
        if m.epoch >= i16::MAX - 1 {
            let pid = self.allocate_pid()?;
            lock(&self.by_pid).insert(pid, m.transactional_id.clone());
            m.producer_id = pid;
            m.epoch = 0;
        } else {
            m.epoch += 1;
        }
        Ok(())
    }

    /// The transaction of `tid`, checked to belong to (`pid`, `epoch`).
    fn checked(&self, tid: &str, pid: i64, epoch: i16) -> Result<Arc<Mutex<TxnMeta>>, TxnError> {
        let entry = self
            .meta(tid)
            .ok_or_else(|| TxnError::InvalidProducerIdMapping {
                transactional_id: tid.to_string(),
                producer_id: pid,
            })?;
        {
            let m = lock(&entry);
            if m.producer_id != pid {
                return Err(TxnError::InvalidProducerIdMapping {
                    transactional_id: tid.to_string(),
                    producer_id: pid,
                });
            }
            if epoch != m.epoch {
                return Err(TxnError::ProducerFenced(tid.to_string()));
            }
        }
        Ok(entry)
    }

    /// Starts the transaction if none is open; refuses while the last one completes.
    fn begin(&self, m: &mut TxnMeta) -> Result<(), TxnError> {
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions(m.transactional_id.clone()))
            }
            TxnState::Ongoing => Ok(()),
            _ => {
                m.state = TxnState::Ongoing;
                m.started_ms = now_ms();
                m.partitions.clear();
                m.groups.clear();
                m.offsets.clear();
                Ok(())
            }
        }
    }

    /// AddPartitionsToTxn.
    pub(crate) fn add_partitions(
        &self,
        log: &dyn TxnLog,
        tid: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, u32)],
    ) -> Result<(), TxnError> {
        for (t, p) in partitions {
            if log.partition(t, *p).is_none() {
                return Err(TxnError::UnknownTopicOrPartition(t.clone(), *p));
            }
        }
        let entry = self.checked(tid, pid, epoch)?;
        let mut m = lock(&entry);
        self.begin(&mut m)?;
        let before = m.partitions.len();
        for tp in partitions {
            if !m.partitions.contains(tp) {
                m.partitions.push(tp.clone());
            }
        }
        if m.partitions.len() != before || before == 0 {
            self.persist(&mut m)?;
        }
        Ok(())
    }

    /// AddOffsetsToTxn.
    pub(crate) fn add_offsets(
        &self,
        tid: &str,
        pid: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        let entry = self.checked(tid, pid, epoch)?;
        let mut m = lock(&entry);
        self.begin(&mut m)?;
        if !m.groups.iter().any(|g| g == group) {
            m.groups.push(group.to_string());
            self.persist(&mut m)?;
        }
        Ok(())
    }

    /// TxnOffsetCommit: offsets kept with the transaction, applied if it commits.
    pub(crate) fn txn_offset_commit(
        &self,
        tid: &str,
        pid: i64,
        epoch: i16,
        group: &str,
        offsets: &[(String, u32, i64)],
    ) -> Result<(), TxnError> {
        let entry = self.checked(tid, pid, epoch)?;
        let mut m = lock(&entry);
        if m.state != TxnState::Ongoing || !m.groups.iter().any(|g| g == group) {
            return Err(TxnError::InvalidTxnState {
                transactional_id: tid.to_string(),
                state: m.state,
                what: "TxnOffsetCommit for a group not added with AddOffsetsToTxn",
            });
        }
        m.put_offsets(group, offsets);
        self.persist(&mut m)
    }

    /// AddOffsetsToTxn, TxnOffsetCommit and EndTxn(commit) in one step, for a producer in
    /// this process: `group`'s `offsets` join the transaction, which commits. One state
    /// entry (`PrepareCommit` with the offsets) instead of three.
    pub(crate) fn commit_with_offsets(
        &self,
        log: &dyn TxnLog,
        tid: &str,
        pid: i64,
        epoch: i16,
        group: &str,
        offsets: &[(String, u32, i64)],
    ) -> Result<(), TxnError> {
        let entry = self.checked(tid, pid, epoch)?;
        let mut m = lock(&entry);
        self.begin(&mut m)?;
        if !m.groups.iter().any(|g| g == group) {
            m.groups.push(group.to_string());
        }
        m.put_offsets(group, offsets);
        m.state = TxnState::PrepareCommit;
        self.persist(&mut m)?;
        self.complete(log, &mut m)
    }

    /// EndTxn: commits or aborts the open transaction. Returns once the markers are
    /// written and, on commit, the offsets applied.
    pub(crate) fn end(
        &self,
        log: &dyn TxnLog,
        tid: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        let entry = self.checked(tid, pid, epoch)?;
        let mut m = lock(&entry);
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {}
            // A retry of the request that completed it.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(()),
            (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => {
                // Completing failed before; try again, then answer as Kafka would.
                self.complete(log, &mut m)?;
                return Err(TxnError::ConcurrentTransactions(tid.to_string()));
            }
            (state, _) => {
                return Err(TxnError::InvalidTxnState {
                    transactional_id: tid.to_string(),
                    state,
                    what: if commit { "commit" } else { "abort" },
                });
            }
        }
        m.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.persist(&mut m)?;
        self.complete(log, &mut m)
    }

    /// Writes the markers (and on commit the offsets) of a prepared transaction, then marks
    /// it complete. Safe to repeat.
    fn complete(&self, log: &dyn TxnLog, m: &mut TxnMeta) -> Result<(), TxnError> {
        let commit = match m.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(()),
        };
        for (topic, id) in &m.partitions {
            let Some(p) = log.partition(topic, *id) else {
                // Deleted since: nothing to mark.
                continue;
            };
            if !p.in_transaction(m.producer_id) && p.producer_epoch(m.producer_id) == Some(m.epoch)
            {
                // Marked by an earlier try.
                continue;
            }
            p.append_marker(m.producer_id, m.epoch, commit, 0)
                .map_err(|e| TxnError::Storage(format!("marker on {topic}/{id}: {e}")))?;
        }
        if commit {
            for o in &m.offsets {
                log.offsets()
                    .commit(&o.group, &o.topic, o.partition, o.offset)?;
            }
        }
        m.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        m.partitions.clear();
        m.groups.clear();
        m.offsets.clear();
        self.persist(m)
    }

    /// Aborts (with an epoch bump, fencing the producer) every transaction open for longer
    /// than its timeout, and completes any left prepared by a failed write. Returns how many
    /// were aborted.
    pub(crate) fn expire(&self, log: &dyn TxnLog, now: i64) -> usize {
        let all: Vec<_> = lock(&self.txns).values().cloned().collect();
        let mut aborted = 0;
        for entry in all {
            let mut m = lock(&entry);
            let r = match m.state {
                TxnState::Ongoing if now - m.started_ms > m.timeout_ms => {
                    aborted += 1;
                    tracing::info!(transactional_id = %m.transactional_id,
                        "aborting a transaction open past its timeout");
                    self.bump(&mut m)
                        .and_then(|()| {
                            m.state = TxnState::PrepareAbort;
                            self.persist(&mut m)
                        })
                        .and_then(|()| self.complete(log, &mut m))
                }
                TxnState::PrepareCommit | TxnState::PrepareAbort => self.complete(log, &mut m),
                _ => Ok(()),
            };
            if let Err(e) = r {
                tracing::error!(transactional_id = %m.transactional_id, error = %e,
                    "completing a transaction failed; retrying");
            }
        }
        self.forget_idle(now);
        aborted
    }

    /// Forgets the transactional ids with no transaction open or being completed whose last
    /// transition is older than [`TRANSACTIONAL_ID_EXPIRATION_MS`]. A producer that comes
    /// back with one is told its producer id is unknown, as Kafka's does.
    fn forget_idle(&self, now: i64) {
        let horizon = now.saturating_sub(TRANSACTIONAL_ID_EXPIRATION_MS);
        let idle = |m: &TxnMeta| {
            matches!(
                m.state,
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            ) && m.updated_ms < horizon
        };
        let mut txns = lock(&self.txns);
        if !txns.values().any(|e| idle(&lock(e))) {
            return;
        }
        // Lock order: the map, then an id's state, then the store (as `persist` does).
        txns.retain(|tid, e| {
            let m = lock(e);
            if !idle(&m) {
                return true;
            }
            if let Err(err) = lock(&self.store).write(&Entry::Expired(tid.clone())) {
                tracing::error!(transactional_id = %tid, error = %err,
                    "cannot record an expired transactional id; keeping it");
                return true;
            }
            lock(&self.by_pid).remove(&m.producer_id);
            false
        });
    }

    /// At open: completes prepared transactions, and aborts transactions partitions hold
    /// open that the coordinator does not know as open there (the coordinator writes the
    /// partition down before the producer may write to it, so these can only come from
    /// state lost with an older data dir).
    pub(crate) fn recover(&self, log: &dyn TxnLog) {
        self.expire(log, i64::MIN / 2);
        let open: HashMap<i64, Vec<(String, u32)>> = lock(&self.txns)
            .values()
            .filter_map(|e| {
                let m = lock(e);
                (m.state == TxnState::Ongoing).then(|| (m.producer_id, m.partitions.clone()))
            })
            .collect();
        for p in log.all_partitions() {
            for (pid, epoch) in p.open_transactions() {
                let known = open
                    .get(&pid)
                    .is_some_and(|parts| parts.iter().any(|(t, i)| t == p.topic() && *i == p.id()));
                if known {
                    continue;
                }
                tracing::warn!(
                    topic = p.topic(),
                    partition = p.id(),
                    producer_id = pid,
                    "aborting a transaction the coordinator does not know"
                );
                if let Err(e) = p.append_marker(pid, epoch, false, 0) {
                    tracing::error!(topic = p.topic(), partition = p.id(), error = %e,
                        "cannot abort an orphaned transaction");
                }
            }
        }
    }

    /// Whether a transaction holds uncommitted offsets for (`group`, `topic`, `partition`):
    /// an OffsetFetch that requires stable offsets must wait.
    pub(crate) fn pending_offset(&self, group: &str, topic: &str, partition: u32) -> bool {
        lock(&self.txns).values().any(|e| {
            let m = lock(e);
            m.state == TxnState::Ongoing
                && m.offsets
                    .iter()
                    .any(|o| o.group == group && o.topic == topic && o.partition == partition)
        })
    }

    /// Checks that `pid` (at `epoch`) may write transactional records to the partition: its
    /// transaction is open and the partition was added to it.
    pub(crate) fn verify_partition(
        &self,
        pid: i64,
        epoch: i16,
        topic: &str,
        partition: u32,
    ) -> Result<(), TxnError> {
        let tid = lock(&self.by_pid).get(&pid).cloned().ok_or_else(|| {
            TxnError::InvalidProducerIdMapping {
                transactional_id: String::new(),
                producer_id: pid,
            }
        })?;
        let entry = self.checked(&tid, pid, epoch)?;
        let m = lock(&entry);
        if m.state == TxnState::Ongoing
            && m.partitions
                .iter()
                .any(|(t, p)| t == topic && *p == partition)
        {
            Ok(())
        } else {
            Err(TxnError::InvalidTxnState {
                transactional_id: tid,
                state: m.state,
                what: "transactional produce to a partition not added to the transaction",
            })
        }
    }

    /// Every transactional id's state, sorted by id (for status and tests).
    pub(crate) fn list(&self) -> Vec<TxnMeta> {
        let mut v: Vec<TxnMeta> = lock(&self.txns).values().map(|e| lock(e).clone()).collect();
        v.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        v
    }
}
