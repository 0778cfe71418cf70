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

/// Error kinds counted separately: the guest's outcomes (matching
/// `rill_engine::Outcome::kind`), then the host's own steps around an invocation.
pub const ERROR_KINDS: [&str; 10] = [
    "record_error",
    "trap",
    "timeout",
    "memory_limit",
    "emit_limit",
    "exit",
    // Appending outputs or a dead letter failed.
    "append",
    // Reading the source partition failed (I/O, a damaged batch).
    "read",
    // Creating the instance failed.
    "instantiate",
    // Committing the offset failed.
    "commit",
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
}

/// Writes a metric family's `# HELP` and `# TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Renders the per-deployment families. The text format wants each family's samples
/// together under one `HELP`/`TYPE`, so this goes family by family, deployment by
/// deployment, not the other way round.
pub fn render_deployments<M: std::ops::Deref<Target = DeploymentMetrics>>(
    deployments: &[(String, M)],
    out: &mut String,
) {
    let labelled: Vec<(String, &DeploymentMetrics)> = deployments
        .iter()
        .map(|(name, m)| (format!("deployment=\"{}\"", escape(name)), &**m))
        .collect();
    type Read = fn(&DeploymentMetrics) -> u64;
    let counters: [(&str, &str, Read); 3] = [
        (
            "rill_records_in_total",
            "Records handled by the deployment and committed.",
            |m| m.records_in.load(Relaxed),
        ),
        (
            "rill_records_out_total",
            "Records emitted by the deployment and appended.",
            |m| m.records_out.load(Relaxed),
        ),
        (
            "rill_dead_lettered_total",
            "Records sent to the dead-letter topic.",
            |m| m.dead_lettered.load(Relaxed),
        ),
    ];
    for (name, help, get) in counters {
        family(out, name, "counter", help);
        for (l, m) in &labelled {
            let _ = writeln!(out, "{name}{{{l}}} {}", get(m));
        }
    }
    family(
        out,
        "rill_invocation_errors_total",
        "counter",
        "Failed invocations and host steps, by kind.",
    );
    for (l, m) in &labelled {
        for (kind, n) in ERROR_KINDS.iter().zip(&m.errors) {
            let _ = writeln!(
                out,
                "rill_invocation_errors_total{{{l},kind=\"{kind}\"}} {}",
                n.load(Relaxed)
            );
        }
    }
    family(
        out,
        "rill_invocation_seconds",
        "histogram",
        "Wall time of one invocation.",
    );
    for (l, m) in &labelled {
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(&m.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(
                out,
                "rill_invocation_seconds_bucket{{{l},le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = m.invocations.load(Relaxed);
        let _ = writeln!(
            out,
            "rill_invocation_seconds_bucket{{{l},le=\"+Inf\"}} {count}"
        );
        let sum = m.latency_sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "rill_invocation_seconds_sum{{{l}}} {sum}");
        let _ = writeln!(out, "rill_invocation_seconds_count{{{l}}} {count}");
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

    /// Every sample line belongs to the family announced by the last `# TYPE` line, and no
    /// family is announced twice: the text format's grouping rule.
    pub(crate) fn assert_grouped(text: &str) {
        let mut seen = std::collections::BTreeSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap_or_default().to_owned();
                assert!(
                    seen.insert(current.clone()),
                    "{current} announced twice:\n{text}"
                );
            } else if !line.starts_with('#') && !line.is_empty() {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| *b == current))
                    .unwrap_or(name);
                assert_eq!(base, current, "sample outside its family: {line}\n{text}");
            }
        }
    }

    #[test]
    fn histogram_is_cumulative() {
        let m = DeploymentMetrics::default();
        m.observe(Duration::from_micros(30));
        m.observe(Duration::from_millis(3));
        let mut s = String::new();
        render_deployments(&[("d".to_owned(), &m)], &mut s);
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

    #[test]
    fn families_of_several_deployments_are_contiguous() {
        let a = DeploymentMetrics::default();
        let b = DeploymentMetrics::default();
        a.error("commit", "x".into());
        b.error("instantiate", "y".into());
        let mut s = String::new();
        render_deployments(&[("a".to_owned(), &a), ("b".to_owned(), &b)], &mut s);
        assert_grouped(&s);
        assert!(s.contains("rill_invocation_errors_total{deployment=\"a\",kind=\"commit\"} 1"));
        assert!(
            s.contains("rill_invocation_errors_total{deployment=\"b\",kind=\"instantiate\"} 1")
        );
        assert!(s.contains("rill_records_in_total{deployment=\"b\"} 0"));
    }
}
