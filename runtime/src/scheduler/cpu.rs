//! The invocation threads: how many invocations run at once, and how much of that failing
//! partitions may take.
//!
//! Wasm is CPU-bound, so the host runs guests on `parallelism` dedicated threads, fed from one
//! FIFO queue of jobs (a job is one worker's burst of turns, see `worker.rs`). A thread that
//! ends a job takes the next queued one at once, on the CPU it already holds. The first
//! version took a permit from an async semaphore and then a thread from tokio's blocking
//! pool: every hand-over between partitions was two or three thread wake-ups through the
//! async runtime, and with both cores running guests each wake-up waited for a time slice.
//! The throughput bench used 1.0–1.3 of 2 cores that way.
//!
//! Without more, retries are as greedy as healthy work: a handler stuck in an infinite loop
//! holds a thread for its whole CPU limit on every try, and handlers that trap at once
//! re-instantiate and queue again after a millisecond of backoff, so five failing deployments
//! kept a healthy neighbour at 40–51 % of its throughput on two cores.
//!
//! So a job that *retries* (its record failed before, or the partition's last instantiation
//! failed) must first take a permit of the retry lane, which is a quarter of the parallelism
//! (at least one). However many deployments are failing, together they occupy at most that
//! many threads. And a lane permit stays taken, after its job ends, for [`RETRY_PENALTY`]
//! times as long as the job ran: the lane is busy at most a quarter of the time, so failing
//! work uses at most a quarter of a core per lane permit, and the infinite loop's second of
//! CPU is followed by three seconds in which other retries (and it) wait. Healthy partitions
//! keep the rest.
//!
//! First tries are not in the lane: a deployment that fails once in a while pays nothing.
//! The lane is FIFO (tokio's semaphore is fair), so failing deployments take turns among
//! themselves, and so is the job queue.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// The host's invocation threads and the retry lane.
#[derive(Debug)]
pub(crate) struct Cpu {
    pool: Arc<Pool>,
    retries: Arc<Semaphore>,
}

/// How many times its own run time a retry keeps the retry lane after it ends.
pub(crate) const RETRY_PENALTY: u32 = 3;

/// Native stack of an invocation thread. Guests get wasmtime's own stack limit (512 KiB by
/// default) on top of the host frames, so this leaves ample room.
const THREAD_STACK: usize = 4 << 20;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("jobs", &self.jobs.len())
            .field("closed", &self.closed)
            .finish()
    }
}

#[derive(Debug, Default)]
struct Pool {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Jobs run outside the lock, so a panic cannot poison it mid-update.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One invocation thread: run queued jobs until the pool closes and the queue is empty.
    fn serve(&self) {
        loop {
            let job = {
                let mut q = self.lock();
                loop {
                    if let Some(job) = q.jobs.pop_front() {
                        break job;
                    }
                    if q.closed {
                        return;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            job();
        }
    }
}

/// A retry's lane permit. Dropping it gives the lane back after the penalty for the time
/// its job ran (see the module docs).
#[derive(Debug)]
pub(crate) struct Lane {
    permit: Option<OwnedSemaphorePermit>,
    ran: Duration,
}

impl Lane {
    /// Records how long the job this lane permit admitted ran.
    pub(crate) fn ran(&mut self, ran: Duration) {
        self.ran = ran;
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        let Some(lane) = self.permit.take() else {
            return;
        };
        let penalty = penalty(self.ran);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if !penalty.is_zero() => {
                rt.spawn(async move {
                    tokio::time::sleep(penalty).await;
                    drop(lane);
                });
            }
            _ => drop(lane),
        }
    }
}

/// How long a retry that ran for `ran` keeps the lane afterwards.
fn penalty(ran: Duration) -> Duration {
    ran.saturating_mul(RETRY_PENALTY)
}

impl Cpu {
    /// `parallelism` invocation threads, a quarter of them (at least one) open to retries.
    /// The threads run inside the current tokio runtime's context, if there is one, so code
    /// they call may spawn tasks.
    pub(crate) fn new(parallelism: usize) -> Cpu {
        let parallelism = parallelism.max(1);
        let pool = Arc::new(Pool::default());
        let rt = tokio::runtime::Handle::try_current().ok();
        for i in 0..parallelism {
            let pool = pool.clone();
            let rt = rt.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("rill-invoke-{i}"))
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    let _rt = rt.as_ref().map(tokio::runtime::Handle::enter);
                    pool.serve();
                });
            if let Err(e) = spawned {
                // Fewer threads only means fewer invocations at once; none at all is fatal.
                assert!(i > 0, "cannot start an invocation thread: {e}");
                tracing::warn!("started {i} of {parallelism} invocation threads: {e}");
                break;
            }
        }
        Cpu {
            pool,
            retries: Arc::new(Semaphore::new((parallelism / 4).max(1))),
        }
    }

    /// Waits for a permit of the retry lane if `retry`; a first try passes at once.
    pub(crate) async fn lane(&self, retry: bool) -> Lane {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = if retry {
            self.retries.clone().acquire_owned().await.ok()
        } else {
            None
        };
        Lane {
            permit,
            ran: Duration::ZERO,
        }
    }

    /// Runs `job` on an invocation thread once one is free (FIFO), and returns its result
    /// with how long it ran. `None` only if the job was dropped unrun (the pool closed).
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Option<(R, Duration)> {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.pool.lock();
            if q.closed {
                return None;
            }
            q.jobs.push_back(Box::new(move || {
                let started = Instant::now();
                let r = job();
                // The receiver is gone only if the waiting task was cancelled.
                let _ = tx.send((r, started.elapsed()));
            }));
        }
        self.pool.ready.notify_one();
        rx.await.ok()
    }
}

impl Drop for Cpu {
    fn drop(&mut self) {
        // Threads finish what is queued, then exit.
        self.pool.lock().closed = true;
        self.pool.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn retries_share_a_bounded_lane_and_first_tries_do_not_wait_for_it() {
        let cpu = Cpu::new(2);
        let retrying = cpu.lane(true).await;
        // A second retry must wait for the lane...
        let got = tokio::select! {
            biased;
            _ = cpu.lane(true) => true,
            _ = std::future::ready(()) => false,
        };
        assert!(!got, "two retries at once on two cores");
        // ...while a first try passes at once.
        let healthy = cpu.lane(false).await;
        drop(retrying);
        drop(healthy);
        let _ = cpu.lane(true).await;
    }

    #[tokio::test]
    async fn a_retry_keeps_the_lane_for_its_penalty() {
        let cpu = Cpu::new(1);
        let mut retry = cpu.lane(true).await;
        // As if its job had run for ten seconds: the lane stays taken for thirty more.
        retry.ran(Duration::from_secs(10));
        drop(retry);
        assert_eq!(cpu.retries.available_permits(), 0, "the lane is not back");
        // A first try is not held up by the penalty.
        let _ = cpu.lane(false).await;
        assert_eq!(penalty(Duration::from_millis(5)), Duration::from_millis(15));
    }

    #[test]
    fn lane_is_a_quarter_of_the_cores_and_at_least_one() {
        assert_eq!(Cpu::new(1).retries.available_permits(), 1);
        assert_eq!(Cpu::new(2).retries.available_permits(), 1);
        assert_eq!(Cpu::new(16).retries.available_permits(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_parallelism_jobs_run_at_once_and_all_run() {
        let cpu = Arc::new(Cpu::new(2));
        let (running, peak, done) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let mut tasks = Vec::new();
        for i in 0..16u64 {
            let (cpu, running, peak, done) =
                (cpu.clone(), running.clone(), peak.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let (v, ran) = cpu
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                        (i * 2, std::thread::current().name().map(str::to_owned))
                    })
                    .await
                    .expect("the pool is open");
                assert!(ran >= Duration::from_millis(5));
                v
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let (v, thread) = t.await.expect("task");
            assert_eq!(v, i as u64 * 2, "each job's own result");
            assert!(thread.is_some_and(|n| n.starts_with("rill-invoke-")));
        }
        assert_eq!(done.load(Ordering::SeqCst), 16);
        assert!(
            peak.load(Ordering::SeqCst) <= 2,
            "more jobs at once than threads"
        );
    }
}
