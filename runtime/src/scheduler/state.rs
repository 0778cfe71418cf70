//! The state of one deployment: what its workers share, and the scheduler's entry for it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::deployment::{DeploymentSpec, DeploymentStore, StoppedPartition, StoreError};
use crate::handler_logs::HandlerLogs;
use crate::metrics::DeploymentMetrics;

/// What the workers of a deployment should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    Pause,
    Stop,
}

/// The live status of one partition's worker.
#[derive(Debug, Clone)]
pub(crate) struct PartitionState {
    /// `starting`, `running`, `backoff`, `paused`, `failed` or `stopped`.
    pub status: &'static str,
    /// The last error, kept until the partition makes progress again.
    pub error: Option<String>,
}

/// What every worker of one deployment shares.
pub(crate) struct DeploymentShared {
    pub(super) store: DeploymentStore,
    pub(super) spec: RwLock<Arc<DeploymentSpec>>,
    /// Held across read-modify-write-save of the spec (pause, a partition stopping), so two
    /// such updates cannot lose one another.
    pub(super) spec_write: Mutex<()>,
    /// Counters and handler logs live as long as the deployment's name, across redeploys,
    /// so counters stay monotonic and `runtime logs --follow` keeps following.
    pub metrics: Arc<DeploymentMetrics>,
    pub logs: Arc<HandlerLogs>,
    pub partitions: Vec<Mutex<PartitionState>>,
    /// The durable state of a stateful module (`crate::state`), one store per partition.
    pub state: Option<Arc<crate::state::DeploymentState>>,
    /// Where typed handlers' `schema_get` and `schema_id` imports get schemas.
    pub schemas: rill_engine::SchemaHandle,
}

impl DeploymentShared {
    pub fn spec(&self) -> Arc<DeploymentSpec> {
        self.spec.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn count_in(&self, n: u64) {
        self.metrics.records_in.fetch_add(n, Relaxed);
    }

    /// Changes the spec and saves it.
    pub(super) fn update_spec(
        &self,
        f: impl FnOnce(&mut DeploymentSpec),
    ) -> Result<(), StoreError> {
        let _w = self.spec_write.lock().unwrap_or_else(|e| e.into_inner());
        let mut spec = (*self.spec()).clone();
        f(&mut spec);
        self.store.save(&spec)?;
        *self.spec.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(spec);
        Ok(())
    }

    /// Forgets that `partition` stopped (it restarted), if the spec still says so: a resume
    /// clears every stop, but a stop saved just after the resume would otherwise linger.
    pub(super) fn clear_stopped(&self, partition: u32) -> Result<(), StoreError> {
        if self.spec().stopped.iter().all(|p| p.partition != partition) {
            return Ok(());
        }
        self.update_spec(|s| s.stopped.retain(|p| p.partition != partition))
    }

    /// Records that `partition` stopped at `offset`, so a restart shows it `failed`.
    pub(super) fn mark_stopped(
        &self,
        partition: u32,
        offset: i64,
        error: String,
    ) -> Result<(), StoreError> {
        self.update_spec(|s| {
            s.stopped.retain(|p| p.partition != partition);
            s.stopped.push(StoppedPartition {
                partition,
                offset,
                error,
            });
        })
    }
}

/// A deployment the scheduler knows: running (with workers), or broken.
pub(super) struct Entry {
    pub(super) shared: Arc<DeploymentShared>,
    pub(super) control: watch::Sender<Control>,
    pub(super) tasks: Vec<JoinHandle<()>>,
    /// Why it does not run: it could not be restored at start-up (its spec file is
    /// unreadable, its module or topic is gone). It is listed as `failed`, can be undeployed,
    /// redeployed, or resumed to try again.
    pub(super) broken: Option<Broken>,
}

pub(super) struct Broken {
    pub(super) error: String,
    /// Whether the spec was read; if not, the entry's spec is a placeholder.
    pub(super) spec_readable: bool,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // Workers whose entry is gone must not run on unsupervised.
        let _ = self.control.send(Control::Stop);
    }
}

impl Entry {
    /// Tells the workers to stop and waits until each has finished its in-flight
    /// invocation, appended and committed.
    pub(super) async fn stop(mut self) {
        let _ = self.control.send(Control::Stop);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

/// Counters and logs carried from one version of a deployment to the next.
pub(super) type Kept = (Arc<DeploymentMetrics>, Arc<HandlerLogs>);
