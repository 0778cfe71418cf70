//! Failure handling: backoff, host failures, poison-record isolation, and the
//! retry/dead-letter/stop decision once a record has used up its tries.

use std::time::Duration;

use rill_engine::Outcome;
use rill_log::ReadError;

use super::super::output::OutputError;
use super::super::source::DeadLetter;
use super::{Step, Worker};
use crate::deployment::OnFailure;

impl Worker {
    /// The delay before the next try: the configured first delay, doubled per consecutive
    /// failure (of the record or of the host), up to the ceiling.
    pub(super) fn backoff_delay(&self) -> Duration {
        let spec = self.dep.spec();
        let failures = self.attempts.max(self.host_failures);
        let exp = failures.saturating_sub(1).min(20);
        let ms = spec
            .backoff_initial_ms
            .saturating_mul(1 << exp)
            .min(spec.backoff_max_ms);
        Duration::from_millis(ms.max(1))
    }

    /// Counts a failure that is not the record's fault and asks for a backoff.
    pub(super) fn host_failure(&mut self, kind: &str, msg: String) -> Step {
        let spec = self.dep.spec();
        tracing::warn!(deployment = %spec.name, partition = self.pid(), "{msg}");
        self.dep.metrics.error(kind, msg.clone());
        self.host_failures = self.host_failures.saturating_add(1);
        self.set_state("backoff", Some(msg));
        Step::Backoff
    }

    pub(super) fn isolate(&mut self, next: i64, end: i64, msg: &str) {
        self.isolate_until = self.isolate_until.max(end);
        self.dep.logs.push(
            "warn",
            self.pid(),
            Some(next),
            format!("{msg}; re-running offsets {next}..{end} one at a time"),
        );
    }

    /// The outputs of `[next, end)` can never be appended (an invalid topic name, a record
    /// above the log's batch limit): like a trap, that is the handler's doing. Find the
    /// record by isolation, then fail it like any other.
    pub(super) fn reject_outputs(&mut self, next: i64, end: i64, msg: String) -> Step {
        if end - next > 1 {
            self.dep.metrics.error("append", msg.clone());
            self.isolate(next, end, &msg);
            return Step::Continue;
        }
        self.fail_record(next, "append", msg)
    }

    /// Counts a failed try of the record at `offset`; after the last try, dead-letters it or
    /// stops the partition.
    pub(super) fn fail_record(&mut self, offset: i64, kind: &str, msg: String) -> Step {
        let spec = self.dep.spec();
        self.dep.metrics.error(kind, msg.clone());
        self.attempts = self.attempts.saturating_add(1);
        self.dep.logs.push(
            "error",
            self.pid(),
            Some(offset),
            format!("{msg} (try {} of {})", self.attempts, spec.max_attempts),
        );
        if self.attempts < spec.max_attempts {
            self.set_state("backoff", Some(msg));
            return Step::Backoff;
        }
        match spec.on_failure {
            OnFailure::Stop => {
                self.set_state("failed", Some(msg));
                Step::Stop
            }
            OnFailure::DeadLetter => {
                // The record itself, read again: the invocation's copy was in guest memory.
                let batches = match self.record_batches(offset) {
                    Ok(b) => b,
                    Err(e) => {
                        let msg = format!(
                            "cannot read record {offset} of {}/{} to dead-letter it: {e}",
                            spec.topic,
                            self.pid()
                        );
                        return self.host_failure("read", msg);
                    }
                };
                let letter = DeadLetter {
                    spec: &spec,
                    partition: self.pid(),
                    offset,
                    batches: &batches,
                    kind,
                    message: &msg,
                    attempts: self.attempts,
                };
                match self.outputs.dead_letter(&letter) {
                    Ok(()) => {}
                    Err(OutputError::Reject(e)) => {
                        let msg = format!("{msg}; cannot dead-letter it: {e}");
                        self.dep.metrics.error("append", msg.clone());
                        self.set_state("failed", Some(msg));
                        return Step::Stop;
                    }
                    // The record is tried again after the backoff and dead-lettered again.
                    Err(e) => return self.sink_failure("append", e),
                }
                self.dep
                    .metrics
                    .dead_lettered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.finish(offset + 1, 0)
            }
        }
    }

    /// The uncompressed batch holding the record at `offset` (empty if it is not in the log
    /// any more: the dead letter then says the record is missing).
    pub(super) fn record_batches(&self, offset: i64) -> Result<Vec<u8>, String> {
        let read = match self.source.read(offset) {
            Ok(r) => r,
            Err(ReadError::OffsetOutOfRange { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        match rill_kafka::decompress_batches(&read.bytes) {
            Ok(b) => Ok(b.into_owned()),
            // Undecompressable: the dead letter carries the failure, without the record.
            Err(_) => Ok(Vec::new()),
        }
    }
}

/// A one-line description of a failed outcome.
pub(super) fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Trap { message } => format!("trap: {message}"),
        Outcome::Timeout => "timeout: the invocation ran past its CPU-time limit".into(),
        Outcome::MemoryLimit => "memory limit: the guest tried to grow past its cap".into(),
        Outcome::EmitLimit => "emit limit: the guest emitted more than its cap".into(),
        Outcome::Exit { code } => format!("exit: the guest called proc_exit({code})"),
        other => format!("{other:?}"),
    }
}
