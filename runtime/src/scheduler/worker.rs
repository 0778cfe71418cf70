//! One worker per (deployment, partition): read, invoke, append outputs, commit, repeat.
//!
//! The order inside one turn is the delivery contract:
//!
//! 1. read whole batches from the committed offset;
//! 2. invoke the guest once on them (on one of the host's invocation threads, `cpu.rs`);
//! 3. append everything it emitted;
//! 4. only then commit the next offset.
//!
//! A crash between any two steps re-runs at most this one invocation. Failures are retried
//! with exponential backoff. A trap in a multi-record invocation cannot say which record
//! was at fault, so the worker re-runs that range one record at a time ("isolation") until
//! the poison record is found; that record then goes to the dead-letter topic (or stops the
//! partition) after its last try, and everything around it is processed normally.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use rill_engine::{GuestInput, Handler, Instance, InstanceConfig, Invocation, Outcome};
use rill_log::{Partition, ReadBuffer, ReadError};

use super::cpu::Cpu;
use super::output::{OutputError, Outputs};
use super::{Control, DeploymentShared, PartitionState};
use crate::deployment::OnFailure;

pub(super) struct Worker {
    dep: Arc<DeploymentShared>,
    handler: Handler,
    partition: Arc<Partition>,
    control: watch::Receiver<Control>,
    cpu: Arc<Cpu>,
    outputs: Outputs,
    instance: Option<Instance>,
    /// While `next < isolate_until`, invoke one record at a time (see the module docs).
    isolate_until: i64,
    /// Failed tries of the record at `next`: what `max_attempts` counts.
    attempts: u32,
    /// Consecutive failures that are not the record's fault (instantiation, read, a
    /// transient append error, commit). They grow the backoff but never dead-letter a record.
    host_failures: u32,
    /// An offset whose outputs are appended but whose commit failed: only the commit is
    /// retried, so the invocation does not run (and append its outputs) again.
    pending_commit: Option<i64>,
    /// The next offset to process; equal to the committed offset between turns (or to
    /// `pending_commit` while one waits).
    next: i64,
    /// Stored bytes per record seen in the last read (0 before the first), to size the next
    /// read to about one invocation's worth instead of `max_batch_bytes`.
    bytes_per_record: usize,
}

/// What a turn asks the loop to do next.
enum Step {
    Continue,
    Backoff,
    Stop,
}

/// How long a worker may run turns back to back on one invocation thread (see
/// `Worker::burst`) before it goes back to the end of the queue. Each hand-back costs its
/// async task a wake-up to queue the next burst (the thread itself takes the next queued job
/// at once), so a burst amortises that; a partition waiting behind others waits at most this
/// long per thread. A partition that catches up ends its burst at once.
const BURST: Duration = Duration::from_millis(10);

/// Why an invocation did not produce an outcome.
enum InvokeError {
    /// The instance could not be created.
    Instantiate(String),
    /// Reading the partition failed.
    Read(ReadError),
    /// The read returned no batch (below the high watermark: damage).
    Empty,
    /// A compressed batch could not be decompressed.
    Decompress(String),
}

/// What an invocation's read found.
struct Read {
    /// Bytes of stored batches read (compressed, if they were).
    stored_len: usize,
    /// Offset of the first record read.
    first_offset: Option<i64>,
    /// Offset after the last batch read.
    next_offset: i64,
}

/// The guest's input buffer as a place the log can read into.
struct GuestBuffer<'g, 'i>(&'g mut GuestInput<'i>);

impl ReadBuffer for GuestBuffer<'_, '_> {
    fn buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        self.0.buffer(len)
    }
}

/// Reads whole batches from `start` into the guest's input buffer (decompressing them there
/// if they are compressed) and invokes the guest on `[start, end)` of them.
fn read_and_invoke(
    instance: &mut Instance,
    partition: &Partition,
    start: i64,
    end: i64,
    budget: usize,
) -> Result<(Invocation, Read), InvokeError> {
    let mut input = instance.input();
    let read = match partition.read_into(start, budget, &mut GuestBuffer(&mut input)) {
        Ok(r) => r,
        // The guest could not provide a buffer: invoking says why (a trap, its memory cap).
        Err(ReadError::NoBuffer { .. }) => return Ok((input.invoke(0, start, end), nothing())),
        Err(e) => return Err(InvokeError::Read(e)),
    };
    if read.len == 0 {
        return Err(InvokeError::Empty);
    }
    let stored = input.filled(read.len).ok_or(InvokeError::Empty)?;
    let first_offset = rill_log::batch::batches(stored)
        .next()
        .and_then(Result::ok)
        .map(|b| b.base_offset());
    // The guest walks uncompressed batches only. Producers' compressed batches are stored as
    // they came; decompress them into a fresh input buffer (the bytes read are copied out
    // first, since asking for a buffer replaces it).
    let decompressed = match rill_kafka::decompress_batches(stored) {
        Ok(std::borrow::Cow::Borrowed(_)) => None,
        Ok(std::borrow::Cow::Owned(v)) => Some(v),
        Err(e) => return Err(InvokeError::Decompress(e.to_string())),
    };
    let len = match decompressed {
        None => read.len,
        Some(v) => match input.buffer(v.len()) {
            Some(dst) => {
                dst[..v.len()].copy_from_slice(&v);
                v.len()
            }
            None => return Ok((input.invoke(0, start, end), nothing())),
        },
    };
    let inv = input.invoke(len, start, end);
    let read = Read {
        stored_len: read.len,
        first_offset,
        next_offset: read.next_offset,
    };
    Ok((inv, read))
}

/// The read of an invocation that failed before it had input (the guest could not provide
/// an input buffer): it counts as covering the whole range, so a range of several records is
/// isolated and re-run one record (and one small buffer) at a time.
fn nothing() -> Read {
    Read {
        stored_len: 0,
        first_offset: None,
        next_offset: i64::MAX,
    }
}

impl Worker {
    pub(super) fn new(
        dep: Arc<DeploymentShared>,
        handler: Handler,
        partition: Arc<Partition>,
        control: watch::Receiver<Control>,
        cpu: Arc<Cpu>,
        outputs: Outputs,
    ) -> Worker {
        Worker {
            dep,
            handler,
            partition,
            control,
            cpu,
            outputs,
            instance: None,
            isolate_until: -1,
            attempts: 0,
            host_failures: 0,
            pending_commit: None,
            next: 0,
            bytes_per_record: 0,
        }
    }

    fn pid(&self) -> u32 {
        self.partition.id()
    }

    fn state(&self) -> &std::sync::Mutex<PartitionState> {
        &self.dep.partitions[self.pid() as usize]
    }

    fn set_state(&self, status: &'static str, error: Option<String>) {
        let mut s = self.state().lock().unwrap_or_else(|e| e.into_inner());
        s.status = status;
        if error.is_some() || status == "running" {
            s.error = error;
        }
    }

    fn commit(&self, next: i64) -> Result<(), String> {
        let spec = self.dep.spec();
        self.dep
            .log
            .offsets()
            .commit(&spec.group, &spec.topic, self.pid(), next)
            .map_err(|e| format!("commit failed: {e}"))
    }

    /// The offset to start from: the group's commit, or the deployment's `from`.
    fn start_offset(&self) -> Result<i64, String> {
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

    /// Waits, as a stopped partition, until the deployment is resumed (true) or stopped
    /// (false). A pause meanwhile keeps it stopped: only a resume retries the record.
    async fn wait_for_restart(&mut self) -> bool {
        loop {
            if self.control.changed().await.is_err() {
                return false;
            }
            match *self.control.borrow_and_update() {
                Control::Run => return true,
                Control::Stop => return false,
                Control::Pause => {}
            }
        }
    }

    pub(super) async fn run(mut self) {
        // A partition that stopped before the last restart stays stopped until a resume.
        if let Some(err) = self.dep.spec().stopped_error(self.pid()) {
            self.set_state("failed", Some(err));
            if !self.wait_for_restart().await {
                self.set_state("stopped", None);
                return;
            }
        }
        self.next = loop {
            match self.start_offset() {
                Ok(o) => break o,
                Err(e) => {
                    self.set_state("failed", Some(e));
                    if !self.wait_for_restart().await {
                        self.set_state("stopped", None);
                        return;
                    }
                }
            }
        };
        let mut backoff = Duration::ZERO;
        loop {
            let control = *self.control.borrow_and_update();
            match control {
                Control::Stop => break,
                Control::Pause => {
                    self.set_state("paused", None);
                    if self.control.changed().await.is_err() {
                        break;
                    }
                    continue;
                }
                Control::Run => {}
            }
            if !backoff.is_zero() {
                self.set_state("backoff", None);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    r = self.control.changed() => if r.is_err() { break },
                }
                backoff = Duration::ZERO;
                continue;
            }
            if let Some(at) = self.pending_commit {
                match self.commit(at) {
                    Ok(()) => {
                        self.pending_commit = None;
                        self.host_failures = 0;
                    }
                    Err(msg) => {
                        self.host_failure("commit", msg);
                        backoff = self.backoff_delay();
                        continue;
                    }
                }
            }
            if self.next >= self.partition.high_watermark() {
                self.set_state("running", None);
                let listener = self.partition.listen();
                if self.next < self.partition.high_watermark() {
                    continue;
                }
                tokio::select! {
                    _ = listener => {}
                    r = self.control.changed() => if r.is_err() { break },
                }
                continue;
            }
            let Some((worker, step)) = self.turn().await else {
                return;
            };
            self = worker;
            match step {
                Step::Continue => {}
                Step::Backoff => backoff = self.backoff_delay(),
                Step::Stop => {
                    self.persist_stop().await;
                    // The partition stays stopped until the deployment is resumed,
                    // redeployed or undeployed.
                    if !self.wait_for_restart().await {
                        break;
                    }
                    self.forget_stop().await;
                    self.attempts = 0;
                    self.host_failures = 0;
                }
            }
        }
        // Outputs already appended: record their commit on the way out if it can be done.
        if let Some(at) = self.pending_commit.take() {
            let _ = self.commit(at);
        }
        self.set_state("stopped", None);
    }

    /// Writes this partition's stop into the spec, so a restart shows it `failed`.
    async fn persist_stop(&self) {
        let error = self
            .state()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .error
            .clone()
            .unwrap_or_default();
        let dep = self.dep.clone();
        let (pid, offset) = (self.pid(), self.next);
        let saved = tokio::task::spawn_blocking(move || dep.mark_stopped(pid, offset, error)).await;
        if let Ok(Err(e)) = saved {
            tracing::error!(deployment = %self.dep.spec().name, partition = pid,
                "cannot record the stopped partition: {e}");
        }
    }

    /// Clears this partition's saved stop after a restart.
    async fn forget_stop(&self) {
        let dep = self.dep.clone();
        let pid = self.pid();
        let saved = tokio::task::spawn_blocking(move || dep.clear_stopped(pid)).await;
        if let Ok(Err(e)) = saved {
            tracing::error!(deployment = %self.dep.spec().name, partition = pid,
                "cannot clear the stopped partition: {e}");
        }
    }

    /// Bytes to read for `records` records: the last read's bytes per record times the
    /// count, with a quarter more so the batch holding the last record is usually included,
    /// capped by the deployment's `max_batch_bytes`. Reading the full cap every time cost a
    /// 1 MiB zeroed allocation, a 1 MiB read and a 1 MiB copy into the guest per invocation
    /// even when the invocation covered a tenth of it.
    fn read_budget(&self, records: usize, cap: usize) -> usize {
        if self.bytes_per_record == 0 {
            return cap;
        }
        let want = self
            .bytes_per_record
            .saturating_mul(records)
            .saturating_add(records.saturating_mul(self.bytes_per_record) / 4)
            .saturating_add(4096);
        want.clamp(4096, cap.max(1))
    }

    /// Updates `bytes_per_record` from a read of `len` bytes covering `[first, next)`.
    fn learn_record_size(&mut self, len: usize, first: Option<i64>, next: i64) {
        if let Some(first) = first {
            let records = (next - first).max(1) as usize;
            self.bytes_per_record = (len / records).max(1);
        }
    }

    /// The delay before the next try: the configured first delay, doubled per consecutive
    /// failure (of the record or of the host), up to the ceiling.
    fn backoff_delay(&self) -> Duration {
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
    fn host_failure(&mut self, kind: &str, msg: String) -> Step {
        let spec = self.dep.spec();
        tracing::warn!(deployment = %spec.name, partition = self.pid(), "{msg}");
        self.dep.metrics.error(kind, msg.clone());
        self.host_failures = self.host_failures.saturating_add(1);
        self.set_state("backoff", Some(msg));
        Step::Backoff
    }

    /// Marks `[next, offset)` done: moves on and commits. A failed commit is kept and
    /// retried on its own before anything else, never by re-running the invocation.
    fn finish(&mut self, offset: i64, handled: u64) -> Step {
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

    /// One turn from the async loop: linger if asked, take a retry-lane permit if this is a
    /// retry, then run turns on an invocation thread (see [`Worker::burst`]). The worker
    /// moves into the job and back, so the whole read-invoke-append-commit cycle runs on one
    /// thread with no hop. `None` if the worker was lost with its job (only when the pool
    /// closes before the job started).
    async fn turn(mut self) -> Option<(Self, Step)> {
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
    fn burst(&mut self, retry: bool) -> Step {
        let started = std::time::Instant::now();
        loop {
            let step = self.turn_now();
            let more = matches!(step, Step::Continue)
                && !retry
                && self.pending_commit.is_none()
                && started.elapsed() < BURST
                && *self.control.borrow() == Control::Run
                && !self.control.has_changed().unwrap_or(true)
                && self.next < self.partition.high_watermark()
                && !self.would_linger();
            if !more {
                return step;
            }
        }
    }

    /// Whether the next turn would wait for more records first.
    fn would_linger(&self) -> bool {
        let spec = self.dep.spec();
        spec.linger_ms > 0
            && self.partition.high_watermark() - self.next < i64::from(spec.max_batch_records)
    }

    /// One read-invoke-append-commit turn, on the blocking thread.
    fn turn_now(&mut self) -> Step {
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
                if next < self.partition.log_start_offset() =>
            {
                // Retention deleted records this group had not processed yet. Say so
                // loudly and carry on from what is left.
                let start = self.partition.log_start_offset();
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
                    self.partition.high_watermark()
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
                    Err(OutputError::Retry(msg)) => return self.host_failure("append", msg),
                    Err(OutputError::Reject(msg)) => {
                        return self.reject_outputs(next, covered, msg);
                    }
                }
                self.finish(covered, (covered - next) as u64)
            }
            Outcome::RecordFailed { offset, message } => {
                // Records before the failing one succeeded: keep their outputs and commit.
                let offset = offset.clamp(next, covered.max(next));
                match self.outputs.append(&invocation.emits, &self.dep.metrics) {
                    Ok(()) => {}
                    Err(OutputError::Retry(msg)) => return self.host_failure("append", msg),
                    Err(OutputError::Reject(msg)) => {
                        let end = offset.max(next + 1);
                        return self.reject_outputs(next, end, msg);
                    }
                }
                if offset > next
                    && let Step::Backoff = self.finish(offset, (offset - next) as u64)
                {
                    return Step::Backoff;
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

    fn isolate(&mut self, next: i64, end: i64, msg: &str) {
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
    fn reject_outputs(&mut self, next: i64, end: i64, msg: String) -> Step {
        if end - next > 1 {
            self.dep.metrics.error("append", msg.clone());
            self.isolate(next, end, &msg);
            return Step::Continue;
        }
        self.fail_record(next, "append", msg)
    }

    /// Reads from `start` and runs the guest on what was read. The read goes straight into
    /// the guest's input buffer (no buffer of the host's, no second copy); compressed batches
    /// are decompressed into it. A missing instance (the first invocation, or the one after a
    /// trap) is created first, in the same job: instantiation runs the guest's
    /// initialiser, which is guest code too.
    fn invoke(
        &mut self,
        start: i64,
        end: i64,
        budget: usize,
    ) -> Result<(Invocation, Read), InvokeError> {
        let instance = match &mut self.instance {
            Some(i) => i,
            None => {
                let cfg = self.instance_config();
                let i = self
                    .handler
                    .instantiate(cfg)
                    .map_err(|e| InvokeError::Instantiate(format!("instantiate: {e}")))?;
                self.instance.insert(i)
            }
        };
        read_and_invoke(instance, &self.partition, start, end, budget)
    }

    fn instance_config(&self) -> InstanceConfig {
        let spec = self.dep.spec();
        InstanceConfig {
            deployment: spec.name.clone(),
            partition: self.pid(),
            params: spec.env.clone(),
            outputs: if spec.outputs.is_empty() {
                None
            } else {
                Some(spec.outputs.clone())
            },
            limits: spec.limits.clone(),
        }
    }

    fn record_logs(&self, inv: &Invocation) {
        if inv.logs.is_empty() {
            return;
        }
        let spec = self.dep.spec();
        for line in &inv.logs {
            let level = line.level.as_str();
            // Handler lines also reach the host's own log, tagged, at debug level so a
            // chatty handler cannot drown the host's log at the default level.
            tracing::debug!(target: "rill::handler", deployment = %spec.name,
                partition = self.pid(), offset = ?line.offset, level, "{}", line.message);
            self.dep
                .logs
                .push(level, self.pid(), line.offset, line.message.clone());
        }
    }

    /// Counts a failed try of the record at `offset`; after the last try, dead-letters it or
    /// stops the partition.
    fn fail_record(&mut self, offset: i64, kind: &str, msg: String) -> Step {
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
                match self.outputs.dead_letter(
                    &spec,
                    self.pid(),
                    offset,
                    &batches,
                    kind,
                    &msg,
                    self.attempts,
                ) {
                    Ok(()) => {}
                    // The record is tried again after the backoff and dead-lettered again.
                    Err(OutputError::Retry(e)) => return self.host_failure("append", e),
                    Err(OutputError::Reject(e)) => {
                        let msg = format!("{msg}; cannot dead-letter it: {e}");
                        self.dep.metrics.error("append", msg.clone());
                        self.set_state("failed", Some(msg));
                        return Step::Stop;
                    }
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
    fn record_batches(&self, offset: i64) -> Result<Vec<u8>, String> {
        let read = match self.partition.read(offset, 1) {
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
fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Trap { message } => format!("trap: {message}"),
        Outcome::Timeout => "timeout: the invocation ran past its CPU-time limit".into(),
        Outcome::MemoryLimit => "memory limit: the guest tried to grow past its cap".into(),
        Outcome::EmitLimit => "emit limit: the guest emitted more than its cap".into(),
        Outcome::Exit { code } => format!("exit: the guest called proc_exit({code})"),
        other => format!("{other:?}"),
    }
}
