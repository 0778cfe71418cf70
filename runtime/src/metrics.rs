//! Counters the scheduler updates on its hot path, and their Prometheus text rendering.
//!
//! Everything is a relaxed atomic: a scrape may see one counter a few increments ahead of
//! another, which Prometheus tolerates, and the workers never take a lock to count.
//! Lag and log sizes are not counted at all: they are read from the log at scrape time, so
//! they cannot drift from the truth.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the invocation latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0,
];

/// Error kinds counted separately, matching `rill_engine::Outcome::kind`.
pub const ERROR_KINDS: [&str; 7] = [
    "record_error",
    "trap",
    "timeout",
    "memory_limit",
    "emit_limit",
    "exit",
    "append",
];

/// The counters of one deployment.
#[derive(Debug, Default)]
pub struct DeploymentMetrics {
    /// Records handed to the guest and committed.
    pub records_in: AtomicU64,
    /// Records the guest emitted and the host appended.
    pub records_out: AtomicU64,
    /// Invocations, successful or not.
    pub invocations: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    errors: [AtomicU64; ERROR_KINDS.len()],
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_ns: AtomicU64,
    /// The last error, for `runtime list` and `runtime status`.
    pub last_error: Mutex<Option<String>>,
}

impl DeploymentMetrics {
    /// Records one invocation's latency.
    pub fn observe(&self, elapsed: Duration) {
        self.invocations.fetch_add(1, Relaxed);
        self.latency_sum_ns
            .fetch_add(elapsed.as_nanos() as u64, Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts an error of a kind from [`ERROR_KINDS`] and remembers its message.
    pub fn error(&self, kind: &str, message: String) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Relaxed);
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    /// Total errors of all kinds.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().map(|e| e.load(Relaxed)).sum()
    }

    /// Appends this deployment's series to a Prometheus text body.
    pub fn render(&self, deployment: &str, out: &mut String) {
        let l = format!("deployment=\"{}\"", escape(deployment));
        let _ = writeln!(
            out,
            "rill_records_in_total{{{l}}} {}",
            self.records_in.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "rill_records_out_total{{{l}}} {}",
            self.records_out.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "rill_dead_lettered_total{{{l}}} {}",
            self.dead_lettered.load(Relaxed)
        );
        for (kind, n) in ERROR_KINDS.iter().zip(&self.errors) {
            let _ = writeln!(
                out,
                "rill_invocation_errors_total{{{l},kind=\"{kind}\"}} {}",
                n.load(Relaxed)
            );
        }
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(
                out,
                "rill_invocation_seconds_bucket{{{l},le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.invocations.load(Relaxed);
        let _ = writeln!(
            out,
            "rill_invocation_seconds_bucket{{{l},le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "rill_invocation_seconds_sum{{{l}}} {sum}");
        let _ = writeln!(out, "rill_invocation_seconds_count{{{l}}} {count}");
    }
}

/// The `# HELP`/`# TYPE` preamble for the per-deployment families.
pub fn render_headers(out: &mut String) {
    for (name, kind, help) in [
        (
            "rill_records_in_total",
            "counter",
            "Records handled by the deployment and committed.",
        ),
        (
            "rill_records_out_total",
            "counter",
            "Records emitted by the deployment and appended.",
        ),
        (
            "rill_dead_lettered_total",
            "counter",
            "Records sent to the dead-letter topic.",
        ),
        (
            "rill_invocation_errors_total",
            "counter",
            "Failed invocations by kind.",
        ),
        (
            "rill_invocation_seconds",
            "histogram",
            "Wall time of one invocation.",
        ),
        (
            "rill_consumer_lag",
            "gauge",
            "End offset minus committed offset, per group and partition.",
        ),
        (
            "rill_consumer_committed_offset",
            "gauge",
            "Committed offset, per group and partition.",
        ),
        (
            "rill_log_end_offset",
            "gauge",
            "High watermark per partition.",
        ),
        (
            "rill_log_size_bytes",
            "gauge",
            "Bytes on disk per partition.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
}

/// Escapes a Prometheus label value.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = DeploymentMetrics::default();
        m.observe(Duration::from_micros(30));
        m.observe(Duration::from_millis(3));
        let mut s = String::new();
        m.render("d", &mut s);
        assert!(
            s.contains("rill_invocation_seconds_bucket{deployment=\"d\",le=\"0.00005\"} 1"),
            "{s}"
        );
        assert!(
            s.contains("rill_invocation_seconds_bucket{deployment=\"d\",le=\"+Inf\"} 2"),
            "{s}"
        );
        assert!(
            s.contains("rill_invocation_seconds_bucket{deployment=\"d\",le=\"0.005\"} 2"),
            "{s}"
        );
    }
}
