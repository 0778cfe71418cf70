//! Where the worker is in the partition: the committed offset, where to start after a
//! (re)start, and moving on once a range is done.
//!
//! At least once, the position is committed to the source after the outputs were
//! appended. Exactly once, it is committed by the sink, in the transaction that holds the
//! range's outputs and dead letters; whatever a failure leaves open in that transaction is
//! aborted before the range runs again (see [`Worker::turn_now`]).

use super::super::output::OutputError;
use super::{Step, Worker};

impl Worker {
    pub(super) fn commit(&self, next: i64) -> Result<(), String> {
        self.source.commit(&self.dep.spec(), next)
    }

    /// Marks `[next, offset)` done: moves on and commits. At least once, a failed commit is
    /// kept and retried on its own before anything else, never by re-running the
    /// invocation. Exactly once, a failed commit discarded the range's outputs: the worker
    /// stays where it was and runs the range again.
    pub(super) fn finish(&mut self, offset: i64, handled: u64) -> Step {
        if self.exactly_once {
            let spec = self.dep.spec();
            if let Err(e) = self.outputs.commit_transaction(&spec, self.pid(), offset) {
                self.resync = true;
                self.pending_state = None;
                return self.sink_failure("commit", e);
            }
            self.state_committed();
            self.dep.count_in(handled);
            self.next = offset;
            self.attempts = 0;
            self.host_failures = 0;
            return Step::Continue;
        }
        self.dep.count_in(handled);
        self.next = offset;
        self.attempts = 0;
        match self.commit(offset) {
            Ok(()) => {
                self.host_failures = 0;
                Step::Continue
            }
            Err(msg) => {
                self.pending_commit = Some(offset);
                self.host_failure("commit", msg)
            }
        }
    }

    /// Exactly once: discards what a failed turn left open in the sink's transaction (a
    /// no-op when nothing is open, and at least once). After a failed commit, the commit
    /// may have happened after all (the log's coordinator completes a commit it had
    /// prepared; the abort settles that first), so the position is read back from the
    /// group: running the range again from the old position would commit its outputs twice.
    pub(super) fn abort_open(&mut self) -> Result<(), Step> {
        if !self.exactly_once {
            return Ok(());
        }
        // Changes of an aborted transaction never reach the store.
        self.pending_state = None;
        self.outputs
            .abort_transaction()
            .map_err(|e| self.host_failure("abort", e))?;
        if self.resync {
            // The store may lack changes the settled transaction committed: rebuild it too.
            let found = self
                .source
                .start_offset(&self.dep)
                .and_then(|at| Ok(at.max(super::state::restore(&self.dep, self.pid())?)));
            match found {
                Ok(at) => {
                    self.next = at;
                    self.resync = false;
                }
                Err(msg) => return Err(self.host_failure("start", msg)),
            }
        }
        Ok(())
    }

    /// A sink error other than a rejection: retried after a backoff, or, for a fenced
    /// transactional sink, the end of this worker — another instance owns the partition.
    pub(super) fn sink_failure(&mut self, kind: &str, e: OutputError) -> Step {
        match e {
            OutputError::Retry(msg) | OutputError::Reject(msg) => self.host_failure(kind, msg),
            OutputError::Fenced(msg) => {
                let spec = self.dep.spec();
                let msg =
                    format!("{msg}: the partition has moved to another owner; this worker stops");
                tracing::error!(deployment = %spec.name, partition = self.pid(), "{msg}");
                self.dep.metrics.error(kind, msg.clone());
                self.dep
                    .logs
                    .push("error", self.pid(), Some(self.next), msg.clone());
                self.set_state("failed", Some(msg));
                Step::Exit
            }
        }
    }
}
