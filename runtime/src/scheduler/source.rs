//! The seam between a worker and where its records live: a [`Source`] it reads from and
//! commits to, and a [`Sink`] its outputs and dead letters go to.
//!
//! The worker (read → invoke → append → commit, with retries, isolation and dead letters)
//! is the same in both modes; only these differ. Embedded mode (this file) reads a
//! partition of the host's own log and commits to its offsets store; cluster mode
//! (`crate::cluster`) reads what a Kafka consumer fetched and commits to the Kafka group.

use std::sync::Arc;

use event_listener::EventListener;

use rill_engine::{Emits, StateWrites};
use rill_log::{AbortedTxn, Log, Partition, ReadBuffer, ReadError, ReadInto, ReadResult};

use super::output::OutputError;
use super::state::DeploymentShared;
use crate::deployment::DeploymentSpec;
use crate::metrics::DeploymentMetrics;

/// One partition's records as a worker sees them: an ordered run of offsets it reads whole
/// uncompressed-or-compressed v2 batches from, an end that grows, and the group's position.
pub(crate) trait Source: Send + Sync + 'static {
    /// The partition number.
    fn id(&self) -> u32;
    /// The offset after the last record that can be read now.
    fn high_watermark(&self) -> i64;
    /// The first offset that can still be read.
    fn log_start_offset(&self) -> i64;
    /// Fires when `high_watermark` may have moved. Take it before checking, then wait.
    fn listen(&self) -> EventListener;
    /// Reads whole batches from `start` (the first may begin before it) into `dst`, up to
    /// about `budget` bytes (always at least one batch).
    fn read_into(
        &self,
        start: i64,
        budget: usize,
        dst: &mut dyn ReadBuffer,
    ) -> Result<ReadInto, ReadError>;
    /// The batches holding `offset`, read again (for its dead letter).
    fn read(&self, offset: i64) -> Result<ReadResult, ReadError>;
    /// Where the deployment's group resumes on this partition: its committed offset, or the
    /// spec's `from` (committed at once, so a restart resumes from the same point).
    fn start_offset(&self, dep: &DeploymentShared) -> Result<i64, String>;
    /// Commits `next` as the group's position.
    fn commit(&self, spec: &DeploymentSpec, next: i64) -> Result<(), String>;
    /// Aborted transactions whose records a read of `[from, to)` returned and the worker
    /// must not hand to the guest (a read_committed source; none otherwise).
    fn aborted(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let _ = (from, to);
        Vec::new()
    }
}

/// What a failed record's dead letter says about it.
#[derive(Debug)]
pub(crate) struct DeadLetter<'a> {
    pub spec: &'a DeploymentSpec,
    pub partition: u32,
    pub offset: i64,
    /// Uncompressed batches that should hold the record (empty if it could not be read).
    pub batches: &'a [u8],
    pub kind: &'a str,
    pub message: &'a str,
    pub attempts: u32,
}

/// Where a worker's outputs go.
pub(crate) trait Sink: Send + Sync {
    /// Appends (or produces) every emit of one invocation and returns once they are durable
    /// as the destination defines it (appended to the log; acknowledged by the cluster).
    fn append(&mut self, emits: &Emits, metrics: &DeploymentMetrics) -> Result<(), OutputError>;
    /// Writes the record of `letter` to `<deployment>.dlq` with the failure in its headers.
    fn dead_letter(&mut self, letter: &DeadLetter<'_>) -> Result<(), OutputError>;
    /// Appends an invocation's state changes to partition `partition` of the changelog
    /// `topic`, as one batch ending with the position marker for `next` (`crate::state`),
    /// in the open transaction when exactly-once. Returns the changelog's end after it,
    /// where a restore may resume, if known.
    fn append_changelog(
        &mut self,
        topic: &str,
        partition: u32,
        writes: &StateWrites,
        next: i64,
    ) -> Result<Option<i64>, OutputError> {
        let _ = (topic, partition, writes, next);
        Err(OutputError::Retry(
            "durable state is not available in this mode".into(),
        ))
    }
    /// Exactly-once only: makes every output and dead letter appended since the last
    /// commit or abort visible together with the group's position `next` for
    /// (`spec.group`, `spec.topic`, `partition`), or none of them. On an error nothing of
    /// it is visible: the worker aborts and runs the range again.
    fn commit_transaction(
        &mut self,
        spec: &DeploymentSpec,
        partition: u32,
        next: i64,
    ) -> Result<(), OutputError> {
        let _ = (spec, partition, next);
        Err(OutputError::Reject(NOT_TRANSACTIONAL.into()))
    }
    /// Exactly-once only: discards what was appended since the last commit (nothing to do
    /// when nothing is open).
    fn abort_transaction(&mut self) -> Result<(), String> {
        Err(NOT_TRANSACTIONAL.into())
    }
}

/// What the default transaction methods of a [`Sink`] say.
const NOT_TRANSACTIONAL: &str =
    "this sink is not transactional: exactly-once is not available here";

/// A partition of the host's own log, with the group's offsets in the log's store.
pub(crate) struct LogSource {
    pub log: Arc<Log>,
    pub partition: Arc<Partition>,
    /// Read committed (exactly-once deployments): up to the last stable offset, aborted
    /// transactions skipped.
    pub committed: bool,
}

impl Source for LogSource {
    fn id(&self) -> u32 {
        self.partition.id()
    }

    fn high_watermark(&self) -> i64 {
        if self.committed {
            self.partition.last_stable_offset()
        } else {
            self.partition.high_watermark()
        }
    }

    fn log_start_offset(&self) -> i64 {
        self.partition.log_start_offset()
    }

    fn listen(&self) -> EventListener {
        self.partition.listen()
    }

    fn read_into(
        &self,
        start: i64,
        budget: usize,
        dst: &mut dyn ReadBuffer,
    ) -> Result<ReadInto, ReadError> {
        if self.committed {
            self.partition.read_committed_into(start, budget, dst)
        } else {
            self.partition.read_into(start, budget, dst)
        }
    }

    fn aborted(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        if self.committed {
            self.partition.aborted_transactions(from, to)
        } else {
            Vec::new()
        }
    }

    fn read(&self, offset: i64) -> Result<ReadResult, ReadError> {
        self.partition.read(offset, 1)
    }

    fn start_offset(&self, dep: &DeploymentShared) -> Result<i64, String> {
        let spec = dep.spec();
        let p = &self.partition;
        let committed = self.log.offsets().fetch(&spec.group, &spec.topic, p.id());
        let start = match committed {
            Some(o) if o > p.high_watermark() => {
                // Recovery cut a damaged tail below this commit. New records will reuse
                // the lost offsets: waiting at the old commit would skip them silently.
                let end = p.high_watermark();
                let msg = format!(
                    "committed offset {o} is beyond the end of the log ({end}) after recovery; \
                     continuing from {end}"
                );
                dep.logs.push("warn", p.id(), Some(end), msg.clone());
                tracing::warn!(deployment = %spec.name, partition = p.id(), "{msg}");
                self.commit(&spec, end)?;
                end
            }
            Some(o) if o >= 0 => o,
            // No commit, or a negative one: Kafka clients commit -1/-2 as "reset" markers
            // (stored as is, as Kafka does), which mean the same as no commit.
            _ => {
                let o = spec.from.resolve(p)?;
                // Commit the starting point at once, so "latest" means the moment of the
                // deploy, not of some later restart.
                self.commit(&spec, o)?;
                o
            }
        };
        Ok(start)
    }

    fn commit(&self, spec: &DeploymentSpec, next: i64) -> Result<(), String> {
        self.log
            .offsets()
            .commit(&spec.group, &spec.topic, self.partition.id(), next)
            .map_err(|e| format!("commit failed: {e}"))
    }
}
