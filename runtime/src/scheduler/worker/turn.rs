//! One turn and bursts of turns: linger, retry lane, the hop onto an invocation thread,
//! and the read-invoke-append-commit cycle with its outcome handling.

use std::time::Duration;

use rill_engine::Outcome;
use rill_log::ReadError;

use super::super::output::OutputError;
use super::failure::describe;
use super::invoke::InvokeError;
use super::{BURST, Control, Step, Worker};

impl Worker {
    /// One turn from the async loop: linger if asked, take a retry-lane permit if this is a
    /// retry, then run turns on an invocation thread (see [`Worker::burst`]). The worker
    /// moves into the job and back, so the whole read-invoke-append-commit cycle runs on one
    /// thread with no hop. `None` if the worker was lost with its job (only when the pool
    /// closes before the job started).
    pub(super) async fn turn(mut self) -> Option<(Self, Step)> {
        let spec = self.dep.spec();
        if self.would_linger() {
            // A pause or stop during the linger is obeyed before invoking anything.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(spec.linger_ms)) => {}
                _ = self.control.changed() => return Some((self, Step::Continue)),
            }
        }
        let retry = self.attempts > 0 || self.host_failures > 0;
        let mut lane = self.cpu.lane(retry).await;
        if *self.control.borrow() != Control::Run {
            return Some((self, Step::Continue));
        }
        let cpu = self.cpu.clone();
        let (done, ran) = cpu
            .run(move || {
                // The job may have waited in the queue: a pause or stop meanwhile is obeyed
                // before invoking anything.
                if *self.control.borrow() != Control::Run {
                    return (self, Step::Continue);
                }
                // A panic here is a host bug; keep the worker (and the partition) alive
                // through it: the instance is dropped and the turn is retried after a backoff.
                let step =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.burst(retry)));
                let step = match step {
                    Ok(step) => step,
                    Err(panic) => {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        self.instance = None;
                        self.host_failure("trap", format!("invocation thread panicked: {what}"))
                    }
                };
                (self, step)
            })
            .await?;
        lane.ran(ran);
        Some(done)
    }

    /// Turns, back to back, on one invocation thread: as long as each succeeds, more records
    /// are waiting, the deployment still runs and the burst is under [`BURST`]. Handing every
    /// invocation to the pool and back cost two thread wake-ups per invocation; a burst pays
    /// them once. A retry runs alone, so the retry lane's accounting (scheduler/cpu.rs) sees
    /// each try.
    pub(super) fn burst(&mut self, retry: bool) -> Step {
        let started = std::time::Instant::now();
        loop {
            let step = self.turn_now();
            let more = matches!(step, Step::Continue)
                && !retry
                && self.pending_commit.is_none()
                && started.elapsed() < BURST
                && *self.control.borrow() == Control::Run
                && !self.control.has_changed().unwrap_or(true)
                && self.next < self.source.high_watermark()
                && !self.would_linger();
            if !more {
                return step;
            }
        }
    }

    /// Whether the next turn would wait for more records first.
    pub(super) fn would_linger(&self) -> bool {
        let spec = self.dep.spec();
        spec.linger_ms > 0
            && self.source.high_watermark() - self.next < i64::from(spec.max_batch_records)
    }

    /// One read-invoke-append-commit turn, on the blocking thread. Exactly once, whatever
    /// the turn left uncommitted in the sink's transaction (outputs of a failed append, of a
    /// rejected or trapping range, of a failed commit) is aborted before anything runs
    /// again: at the end of the turn, and at the start of the next if that abort failed.
    pub(super) fn turn_now(&mut self) -> Step {
        if let Err(step) = self.abort_open() {
            return step;
        }
        let step = self.read_invoke_append_commit();
        match self.abort_open() {
            Ok(()) => step,
            Err(failed) => failed,
        }
    }

    fn read_invoke_append_commit(&mut self) -> Step {
        let spec = self.dep.spec();
        let next = self.next;
        let isolating = next < self.isolate_until;
        let wanted = if isolating {
            1
        } else {
            spec.max_batch_records as usize
        };
        let end = if isolating {
            next + 1
        } else {
            next + i64::from(spec.max_batch_records)
        };
        let budget = self.read_budget(wanted, spec.max_batch_bytes);
        let (invocation, read) = match self.invoke(next, end, budget) {
            Ok(done) => done,
            Err(InvokeError::Instantiate(msg)) => return self.host_failure("instantiate", msg),
            Err(InvokeError::Read(ReadError::OffsetOutOfRange { .. }))
                if next < self.source.log_start_offset() =>
            {
                // Retention deleted records this group had not processed yet. Say so
                // loudly and carry on from what is left.
                let start = self.source.log_start_offset();
                let msg = format!(
                    "records {}..{} were deleted by retention before this group processed them",
                    next, start
                );
                self.dep
                    .logs
                    .push("warn", self.pid(), Some(next), msg.clone());
                tracing::warn!(deployment = %spec.name, partition = self.pid(), "{msg}");
                return self.finish(start, 0);
            }
            Err(InvokeError::Read(e)) => {
                // Damage found on read (a sealed segment that fails its CRC) belongs in the
                // host's log too, not only in the deployment's state.
                let msg = format!(
                    "read of {}/{} at {} failed: {e}",
                    spec.topic,
                    self.pid(),
                    next
                );
                return self.host_failure("read", msg);
            }
            Err(InvokeError::Empty) => {
                // Below the high watermark, a read that moves nothing forward would be
                // invoked, committed in place and read again, for ever: wait and retry
                // instead, loudly.
                let msg = format!(
                    "read of {}/{} at {next} returned no record below the end of the log ({}): \
                     the log may be corrupt or truncated there",
                    spec.topic,
                    self.pid(),
                    self.source.high_watermark()
                );
                return self.host_failure("read", msg);
            }
            Err(InvokeError::Decompress(e)) => {
                let msg = format!("cannot decompress batch at {next}: {e}");
                return self.fail_record(next, "record_error", msg);
            }
        };
        self.learn_record_size(read.stored_len, read.first_offset, read.next_offset);
        let covered = end.min(read.next_offset);
        self.host_failures = 0;
        self.record_logs(&invocation);
        self.dep.metrics.observe(invocation.elapsed);
        match invocation.outcome {
            Outcome::Ok => {
                match self.outputs.append(&invocation.emits, &self.dep.metrics) {
                    Ok(()) => {}
                    Err(OutputError::Reject(msg)) => {
                        return self.reject_outputs(next, covered, msg);
                    }
                    Err(e) => return self.sink_failure("append", e),
                }
                match self.write_state(invocation.state, covered) {
                    Ok(()) => {}
                    Err(OutputError::Reject(msg)) => {
                        return self.reject_outputs(next, covered, format!("state: {msg}"));
                    }
                    Err(e) => return self.sink_failure("state", e),
                }
                self.finish(covered, (covered - next) as u64)
            }
            Outcome::RecordFailed { offset, message } => {
                // Records before the failing one succeeded: keep their outputs and commit.
                let offset = offset.clamp(next, covered.max(next));
                match self.outputs.append(&invocation.emits, &self.dep.metrics) {
                    Ok(()) => {}
                    Err(OutputError::Reject(msg)) => {
                        let end = offset.max(next + 1);
                        return self.reject_outputs(next, end, msg);
                    }
                    Err(e) => return self.sink_failure("append", e),
                }
                match self.write_state(invocation.state, offset) {
                    Ok(()) => {}
                    Err(OutputError::Reject(msg)) => {
                        let end = offset.max(next + 1);
                        return self.reject_outputs(next, end, format!("state: {msg}"));
                    }
                    Err(e) => return self.sink_failure("state", e),
                }
                if offset > next {
                    match self.finish(offset, (offset - next) as u64) {
                        Step::Continue => {}
                        stop => return stop,
                    }
                }
                let msg = format!("record {offset} failed: {message}");
                self.fail_record(offset, "record_error", msg)
            }
            other => {
                let kind = other.kind();
                let msg = describe(&other);
                if covered - next > 1 {
                    // A trap cannot say which record caused it: re-run this range one
                    // record at a time. Outputs of the failed run are discarded.
                    self.dep.metrics.error(kind, msg.clone());
                    self.isolate(next, covered, &msg);
                    return Step::Continue;
                }
                self.fail_record(next, kind, msg)
            }
        }
    }
}
