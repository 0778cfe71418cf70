//! Handler logs: what guests logged (and printed, for WASI guests), kept per deployment.
//!
//! Each deployment keeps its most recent lines in a bounded ring, numbered by a sequence
//! that never repeats, so `runtime logs --follow` can ask for "everything after N" and
//! wait for more. The ring outlives redeploys of its deployment, so a follower keeps
//! following the new version. Lines are also passed to `tracing`, so they reach the host's own log.
//! The ring lives in memory: lines from before a restart are only in the host's log.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// How many lines a deployment keeps.
pub const RING_CAPACITY: usize = 10_000;

/// One line a handler logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in this deployment's log, starting at 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The partition whose instance logged it.
    pub partition: u32,
    /// The offset of the record being handled, when known.
    pub offset: Option<i64>,
    /// The text.
    pub message: String,
}

/// The ring of one deployment.
#[derive(Debug, Default)]
pub struct HandlerLogs {
    inner: Mutex<Ring>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Ring {
    next_seq: u64,
    lines: VecDeque<LogEntry>,
}

impl HandlerLogs {
    /// Appends a line and wakes followers.
    pub fn push(&self, level: &str, partition: u32, offset: Option<i64>, message: String) {
        let ts_ms = crate::now_ms();
        {
            let mut ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            ring.next_seq += 1;
            let seq = ring.next_seq;
            if ring.lines.len() == RING_CAPACITY {
                ring.lines.pop_front();
            }
            ring.lines.push_back(LogEntry {
                seq,
                ts_ms,
                level: level.to_owned(),
                partition,
                offset,
                message,
            });
        }
        self.notify.notify_waiters();
    }

    /// Lines with a sequence above `after`, at most `limit`.
    pub fn after(&self, after: u64, limit: usize) -> Vec<LogEntry> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        ring.lines
            .iter()
            .filter(|l| l.seq > after)
            .take(limit)
            .cloned()
            .collect()
    }

    /// The newest `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogEntry> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let skip = ring.lines.len().saturating_sub(n);
        ring.lines.iter().skip(skip).cloned().collect()
    }

    /// Waits until a line above `after` exists or `timeout` passes.
    pub async fn wait_after(&self, after: u64, timeout: std::time::Duration) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.last_seq() > after {
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
    }

    fn last_seq(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_ordered() {
        let logs = HandlerLogs::default();
        for i in 0..(RING_CAPACITY + 5) {
            logs.push("info", 0, Some(i as i64), format!("line {i}"));
        }
        let all = logs.after(0, usize::MAX);
        assert_eq!(all.len(), RING_CAPACITY);
        assert_eq!(all[0].seq, 6);
        assert_eq!(logs.after(all.last().unwrap().seq, 10).len(), 0);
        let tail = logs.tail(3);
        assert_eq!(
            tail.iter().map(|l| l.seq).collect::<Vec<_>>(),
            [
                RING_CAPACITY as u64 + 3,
                RING_CAPACITY as u64 + 4,
                RING_CAPACITY as u64 + 5
            ]
        );
    }
}
