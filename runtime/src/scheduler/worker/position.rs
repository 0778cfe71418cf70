//! Where the worker is in the partition: the committed offset, where to start after a
//! (re)start, and moving on once a range is done.

use super::{Step, Worker};

impl Worker {
    pub(super) fn commit(&self, next: i64) -> Result<(), String> {
        self.source.commit(&self.dep.spec(), next)
    }

    /// Marks `[next, offset)` done: moves on and commits. A failed commit is kept and
    /// retried on its own before anything else, never by re-running the invocation.
    pub(super) fn finish(&mut self, offset: i64, handled: u64) -> Step {
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
}
