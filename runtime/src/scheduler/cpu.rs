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
//! occupy at most that many cores, and healthy partitions keep the rest. First tries are
//! not in the lane: a deployment that fails once in a while pays nothing, and the
//! single-deployment fast path takes one uncontended permit as before. The lane is FIFO
//! (tokio's semaphore is fair), so failing deployments take turns among themselves.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The host's invocation permits.
#[derive(Debug)]
pub(crate) struct Cpu {
    permits: Arc<Semaphore>,
    retries: Arc<Semaphore>,
}

/// Held for the length of one invocation (instantiation included).
#[derive(Debug)]
pub(crate) struct CpuPermit {
    _permit: OwnedSemaphorePermit,
    _lane: Option<OwnedSemaphorePermit>,
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
            _permit: permit,
            _lane: lane,
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

    #[test]
    fn lane_is_a_quarter_of_the_cores_and_at_least_one() {
        assert_eq!(Cpu::new(1).retries.available_permits(), 1);
        assert_eq!(Cpu::new(2).retries.available_permits(), 1);
        assert_eq!(Cpu::new(16).retries.available_permits(), 4);
    }
}
