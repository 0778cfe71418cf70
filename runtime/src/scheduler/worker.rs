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

use rill_engine::{Handler, Instance};

use super::cpu::Cpu;
use super::source::{Sink, Source};
use super::{Control, DeploymentShared, PartitionState};
use crate::deployment::Guarantee;

mod failure;
mod invoke;
mod position;
mod state;
mod turn;

pub(super) struct Worker {
    dep: Arc<DeploymentShared>,
    handler: Handler,
    source: Arc<dyn Source>,
    control: watch::Receiver<Control>,
    cpu: Arc<Cpu>,
    outputs: Box<dyn Sink>,
    /// The deployment's guarantee is exactly-once: positions are committed through the
    /// sink's transactions (`position.rs`).
    exactly_once: bool,
    /// Exactly once: a commit failed, so where the group stands is unknown until the
    /// transaction is settled (`position.rs`); the position is read back before the next
    /// range runs.
    resync: bool,
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
    /// Exactly once: state changes of the open transaction, applied when it commits.
    pending_state: Option<state::PendingState>,
    /// Stored bytes per record seen in the last read (0 before the first), to size the next
    /// read to about one invocation's worth instead of `max_batch_bytes`.
    bytes_per_record: usize,
}

/// What a turn asks the loop to do next.
enum Step {
    Continue,
    Backoff,
    Stop,
    /// The worker ends (its transactional sink was fenced: the partition moved).
    Exit,
}

/// How long a worker may run turns back to back on one invocation thread (see
/// `Worker::burst`) before it goes back to the end of the queue. Each hand-back costs its
/// async task a wake-up to queue the next burst (the thread itself takes the next queued job
/// at once), so a burst amortises that; a partition waiting behind others waits at most this
/// long per thread. A partition that catches up ends its burst at once.
const BURST: Duration = Duration::from_millis(10);

impl Worker {
    pub(super) fn new(
        dep: Arc<DeploymentShared>,
        handler: Handler,
        source: Arc<dyn Source>,
        control: watch::Receiver<Control>,
        cpu: Arc<Cpu>,
        outputs: Box<dyn Sink>,
    ) -> Worker {
        Worker {
            exactly_once: dep.spec().guarantee == Guarantee::ExactlyOnce,
            resync: false,
            dep,
            handler,
            source,
            control,
            cpu,
            outputs,
            instance: None,
            isolate_until: -1,
            attempts: 0,
            host_failures: 0,
            pending_commit: None,
            next: 0,
            pending_state: None,
            bytes_per_record: 0,
        }
    }

    fn pid(&self) -> u32 {
        self.source.id()
    }

    fn state(&self) -> Option<&std::sync::Mutex<PartitionState>> {
        self.dep.partitions.get(self.pid() as usize)
    }

    fn set_state(&self, status: &'static str, error: Option<String>) {
        let Some(state) = self.state() else { return };
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.status = status;
        if error.is_some() || status == "running" {
            s.error = error;
        }
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
        // Finding the start may ask a remote cluster (cluster mode): off the async threads,
        // and retried with backoff, since a cluster that does not answer now may later.
        self.next = loop {
            let found = self.find_start().await;
            match found {
                Ok(o) => break o,
                Err(e) => {
                    self.host_failure("start", e);
                    let delay = self.backoff_delay();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        r = self.control.changed() => if r.is_err() {
                            self.set_state("stopped", None);
                            return;
                        },
                    }
                    if *self.control.borrow() == Control::Stop {
                        self.set_state("stopped", None);
                        return;
                    }
                }
            }
        };
        self.host_failures = 0;
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
            if self.next >= self.source.high_watermark() {
                self.set_state("running", None);
                let listener = self.source.listen();
                if self.next < self.source.high_watermark() {
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
                // The partition's state says why.
                Step::Exit => {
                    self.release_store().await;
                    return;
                }
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
        self.release_store().await;
        self.set_state("stopped", None);
    }

    /// Snapshots the partition's store and releases it: this worker no longer keeps it.
    async fn release_store(&self) {
        if let Some(store) = self.store().cloned() {
            let _ = tokio::task::spawn_blocking(move || store.release()).await;
        }
    }

    /// Where to start: the group's committed offset (`Source::start_offset`), or, for a
    /// stateful deployment whose store is ahead of it (its changes were written, the group's
    /// commit was not), the store's position, committed at once. The store is restored
    /// first. Off the async threads: both may read a lot or ask a remote cluster.
    async fn find_start(&mut self) -> Result<i64, String> {
        let (source, dep, pid) = (self.source.clone(), self.dep.clone(), self.pid());
        tokio::task::spawn_blocking(move || {
            let committed = source.start_offset(&dep)?;
            let position = state::restore(&dep, pid)?;
            if position > committed {
                source.commit(&dep.spec(), position)?;
                return Ok(position);
            }
            Ok(committed)
        })
        .await
        .unwrap_or_else(|e| Err(format!("finding the start offset panicked: {e}")))
    }

    /// Writes this partition's stop into the spec, so a restart shows it `failed`.
    async fn persist_stop(&self) {
        let error = self
            .state()
            .and_then(|s| s.lock().unwrap_or_else(|e| e.into_inner()).error.clone())
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
}
