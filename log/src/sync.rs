//! Group commit: many waiters, one fsync.
//!
//! Appenders write under a short mutex, then call [`GroupCommit::wait`] with the sequence
//! number (offset) they need durable. If no sync is running, the caller becomes the leader: it
//! runs the sync closure, which snapshots how far data is written, fsyncs, and returns that
//! point. Everyone whose data is below the point is released together. Waiters that arrive
//! while a sync runs wait for it and, if their data came too late, one of them leads the next.

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug)]
struct State {
    durable: i64,
    syncing: bool,
    failed: bool,
}

/// Shared state of one group-commit domain (a partition, or the offsets store).
#[derive(Debug)]
pub struct GroupCommit {
    state: Mutex<State>,
    cv: Condvar,
}

impl GroupCommit {
    /// A domain where everything below `durable` is already durable.
    pub fn new(durable: i64) -> Self {
        GroupCommit {
            state: Mutex::new(State {
                durable,
                syncing: false,
                failed: false,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that everything below `upto` is durable (e.g. a segment sealed with an fsync).
    pub fn mark_durable(&self, upto: i64) {
        let mut st = self.lock();
        st.durable = st.durable.max(upto);
        self.cv.notify_all();
    }

    /// Marks the domain failed: every later `wait` that is not already covered fails.
    pub fn fail(&self) {
        self.lock().failed = true;
        self.cv.notify_all();
    }

    /// Blocks until everything below `target` is durable, leading a sync if none runs.
    pub fn wait(&self, target: i64, sync: impl FnOnce() -> io::Result<i64>) -> io::Result<()> {
        let mut sync = Some(sync);
        let mut st = self.lock();
        loop {
            if st.durable >= target {
                return Ok(());
            }
            if st.failed {
                return Err(io::Error::other("an earlier fsync failed"));
            }
            if !st.syncing {
                let Some(run) = sync.take() else {
                    // Our own sync returned before our data; it cannot happen because the
                    // closure snapshots after our write, but never spin on it.
                    return Err(io::Error::other("sync did not cover the write"));
                };
                st.syncing = true;
                drop(st);
                let r = run();
                st = self.lock();
                st.syncing = false;
                match r {
                    Ok(upto) => st.durable = st.durable.max(upto),
                    Err(e) => {
                        st.failed = true;
                        self.cv.notify_all();
                        return Err(e);
                    }
                }
                self.cv.notify_all();
            } else {
                st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}
