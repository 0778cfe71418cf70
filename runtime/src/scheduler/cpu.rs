//! CPU permits: how many invocations run at once, and how much of that failing partitions
//! may take.
//!
//! Wasm is CPU-bound, so the host runs at most `parallelism` invocations at a time (one
//! permit each). Without more, retries are as greedy as healthy work: a handler stuck in an
//! infinite loop holds a permit for its whole CPU limit on every try, and handlers that trap
//! at once re-instantiate and queue again after a millisecond of backoff, so five failing
//! deployments kept a healthy neighbour at 40–51 % of its throughput on two cores.
//!
//! So an invocation that *retries* (its record failed before, or the partition's last
//! instantiation failed) must first take a permit of the retry lane, which is a quarter of
//! the parallelism (at least one). However many deployments are failing, together they
//! occupy at most that many permits. And a lane permit stays taken, after its invocation
//! ends, for [`RETRY_PENALTY`] times as long as the invocation held it: the lane is busy at
//! most a quarter of the time, so failing work uses at most a quarter of a core per lane
//! permit, and the infinite loop's second of CPU is followed by three seconds in which other
//! retries (and it) wait. Healthy partitions keep the rest.
//!
//! First tries are not in the lane: a deployment that fails once in a while pays nothing,
//! and the single-deployment fast path takes one uncontended permit as before. The lane is
//! FIFO (tokio's semaphore is fair), so failing deployments take turns among themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The host's invocation permits.
#[derive(Debug)]
pub(crate) struct Cpu {
    permits: Arc<Semaphore>,
    retries: Arc<Semaphore>,
}

/// How many times its own run time a retry keeps the retry lane after it ends.
pub(crate) const RETRY_PENALTY: u32 = 3;

/// Held for the length of one invocation (instantiation included).
#[derive(Debug)]
pub(crate) struct CpuPermit {
    permit: Option<OwnedSemaphorePermit>,
    lane: Option<OwnedSemaphorePermit>,
    started: Instant,
}

impl Drop for CpuPermit {
    fn drop(&mut self) {
        // The CPU permit goes back at once; a lane permit only after its penalty.
        drop(self.permit.take());
        let Some(lane) = self.lane.take() else {
            return;
        };
        let penalty = penalty(self.started.elapsed());
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

/// How long a retry that held its permits for `ran` keeps the lane afterwards.
fn penalty(ran: Duration) -> Duration {
    ran.saturating_mul(RETRY_PENALTY)
}

impl Cpu {
    /// `parallelism` invocations at once, a quarter of them (at least one) retries.
    pub(crate) fn new(parallelism: usize) -> Cpu {
        let parallelism = parallelism.max(1);
        Cpu {
            permits: Arc::new(Semaphore::new(parallelism)),
            retries: Arc::new(Semaphore::new((parallelism / 4).max(1))),
        }
    }

    /// Waits for a permit. A retry first waits for its lane, then for a permit like anyone
    /// else, so the lane never holds a permit idle; the order (lane, then permit) is the same
    /// for every caller, so the two cannot deadlock.
    pub(crate) async fn acquire(&self, retry: bool) -> CpuPermit {
        // The semaphores are never closed, so acquiring cannot fail.
        let lane = if retry {
            self.retries.clone().acquire_owned().await.ok()
        } else {
            None
        };
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the CPU semaphore is never closed");
        CpuPermit {
            permit: Some(permit),
            lane,
            started: Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_share_a_bounded_lane_and_first_tries_do_not_wait_for_it() {
        let cpu = Cpu::new(2);
        let retrying = cpu.acquire(true).await;
        // A second retry must wait for the lane even though a permit is free...
        let got = tokio::select! {
            biased;
            _ = cpu.acquire(true) => true,
            _ = std::future::ready(()) => false,
        };
        assert!(!got, "two retries at once on two cores");
        // ...while a first try gets the free permit at once.
        let healthy = cpu.acquire(false).await;
        drop(retrying);
        drop(healthy);
        let _ = cpu.acquire(true).await;
    }

    #[tokio::test]
    async fn a_retry_keeps_the_lane_for_its_penalty_but_frees_its_permit_at_once() {
        let cpu = Cpu::new(1);
        let mut retry = cpu.acquire(true).await;
        // As if it had run for ten seconds: the lane stays taken for thirty more.
        retry.started = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .expect("the clock is past ten seconds");
        drop(retry);
        assert_eq!(cpu.permits.available_permits(), 1, "the CPU permit is back");
        assert_eq!(cpu.retries.available_permits(), 0, "the lane is not");
        // A first try is not held up by the penalty.
        let _ = cpu.acquire(false).await;
        assert_eq!(penalty(Duration::from_millis(5)), Duration::from_millis(15));
    }

    #[test]
    fn lane_is_a_quarter_of_the_cores_and_at_least_one() {
        assert_eq!(Cpu::new(1).retries.available_permits(), 1);
        assert_eq!(Cpu::new(2).retries.available_permits(), 1);
        assert_eq!(Cpu::new(16).retries.available_permits(), 4);
    }
}
