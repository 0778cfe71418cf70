//! What `runtime list` and the admin API show of a deployment.

use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};

use super::{Backend, DeploymentShared, PartitionState};
use crate::deployment::DeploymentSpec;

/// Per-partition figures for `runtime list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// Committed offset: the next record the group will process.
    pub committed: Option<i64>,
    /// The partition's high watermark.
    pub end: i64,
    /// `end - committed`; no commit, or a negative one (a Kafka client's reset marker),
    /// counts as 0.
    pub lag: i64,
    /// Worker status.
    pub status: String,
    /// Last error, if the partition is failing.
    pub error: Option<String>,
    /// Cluster mode: the host whose member of the group owns it (none if unassigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A deployment as `runtime list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentInfo {
    /// The spec it was deployed with.
    pub spec: DeploymentSpec,
    /// `running`, `paused`, `failed` (some partition stopped) or `degraded` (retrying).
    pub state: String,
    /// Sum of partition lags.
    pub lag: i64,
    /// Records handled.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Failed invocations.
    pub errors: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// The last error seen.
    pub last_error: Option<String>,
    /// Per partition.
    pub partitions: Vec<PartitionInfo>,
}

/// A deployment's status: its spec, its partitions' offsets and states, its counters.
/// `broken` is why it does not run, if it does not.
pub(super) fn describe(
    backend: &dyn Backend,
    shared: &DeploymentShared,
    broken: Option<&str>,
) -> DeploymentInfo {
    let spec = shared.spec();
    let n = match broken {
        // A broken deployment has no workers; show its topic's partitions as failed.
        Some(_) => backend.partitions(&spec.topic).unwrap_or(0),
        None => shared.partitions.len() as u32,
    };
    let positions = backend.positions(&spec, n);
    let mut partitions = Vec::new();
    for (i, pos) in positions.into_iter().enumerate() {
        let state = match shared.partitions.get(i) {
            Some(s) => s.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            None => PartitionState {
                status: "failed",
                error: None,
            },
        };
        let (status, error) = match pos.remote {
            Some(remote) => (remote, None),
            None => (state.status, state.error),
        };
        partitions.push(PartitionInfo {
            partition: i as u32,
            committed: pos.committed,
            end: pos.end,
            // A negative commit (a Kafka client's reset marker) is no position, like none.
            lag: (pos.end - pos.committed.unwrap_or(0).max(0)).max(0),
            status: status.to_owned(),
            error,
            owner: pos.owner,
        });
    }
    let state = if broken.is_some() {
        "failed"
    } else if spec.paused {
        "paused"
    } else if partitions.iter().any(|p| p.status == "failed") {
        "failed"
    } else if partitions.iter().any(|p| p.status == "backoff") {
        "degraded"
    } else {
        "running"
    };
    let last_error = match broken {
        Some(e) => Some(e.to_owned()),
        None => shared
            .metrics
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    };
    DeploymentInfo {
        state: state.to_owned(),
        lag: partitions.iter().map(|p| p.lag).sum(),
        records_in: shared.metrics.records_in.load(Relaxed),
        records_out: shared.metrics.records_out.load(Relaxed),
        errors: shared.metrics.errors_total(),
        dead_lettered: shared.metrics.dead_lettered.load(Relaxed),
        last_error,
        partitions,
        spec: (*spec).clone(),
    }
}
