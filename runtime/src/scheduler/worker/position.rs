//! Where the worker is in the partition: the committed offset, where to start after a
//! (re)start, and moving on once a range is done.

use super::{Step, Worker};

impl Worker {
    pub(super) fn commit(&self, next: i64) -> Result<(), String> {
        let spec = self.dep.spec();
        self.dep
            .log
            .offsets()
            .commit(&spec.group, &spec.topic, self.pid(), next)
            .map_err(|e| format!("commit failed: {e}"))
    }

    /// The offset to start from: the group's commit, or the deployment's `from`.
    pub(super) fn start_offset(&self) -> Result<i64, String> {
        let spec = self.dep.spec();
        let p = &self.partition;
        let committed = self
            .dep
            .log
            .offsets()
            .fetch(&spec.group, &spec.topic, self.pid());
        let start = match committed {
            Some(o) if o > p.high_watermark() => {
                // Recovery cut a damaged tail below this commit. New records will reuse
                // the lost offsets: waiting at the old commit would skip them silently.
                let end = p.high_watermark();
                let msg = format!(
                    "committed offset {o} is beyond the end of the log ({end}) after recovery; \
                     continuing from {end}"
                );
                self.dep
                    .logs
                    .push("warn", self.pid(), Some(end), msg.clone());
                tracing::warn!(deployment = %spec.name, partition = self.pid(), "{msg}");
                self.commit(end)?;
                end
            }
            Some(o) if o >= 0 => o,
            // No commit, or a negative one: Kafka clients commit -1/-2 as "reset" markers
            // (stored as is, as Kafka does), which mean the same as no commit.
            _ => {
                let o = spec.from.resolve(p)?;
                // Commit the starting point at once, so "latest" means the moment of the
                // deploy, not of some later restart.
                self.commit(o)?;
                o
            }
        };
        Ok(start)
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
