//! What the catalog applies in cluster mode (docs/cluster.md): a deployment started,
//! restarted, paused or resumed here because its record says so, or removed here only.

use super::{DeployError, Kept, Scheduler};
use crate::deployment::{DeploymentSpec, StoreError};

impl Scheduler {
    /// Applies a deployment read from the catalog (cluster mode): starts it, restarts it if
    /// its spec or module changed, or only pauses or resumes it. Its module was stored
    /// before.
    pub(crate) async fn apply(&self, spec: DeploymentSpec) -> Result<(), DeployError> {
        let name = spec.name.clone();
        let _guard = self.lock_name(&name).await;
        // Learns the topic's partitions and creates declared outputs, as a deploy here would.
        let backend = self.backend.clone();
        let checked = spec.clone();
        let prepared = tokio::task::spawn_blocking(move || backend.prepare(&checked))
            .await
            .map_err(|e| DeployError::Invalid(format!("checking the topics failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = prepared {
            let kept = self.stop_and_keep(&name).await;
            self.insert_broken(spec, e.to_string(), true, kept);
            return Err(e);
        }
        let current = self
            .with(&name, |e| (e.broken.is_none(), (*e.shared.spec()).clone()))
            .ok();
        if let Some((true, cur)) = &current {
            let mut same = cur.clone();
            same.paused = spec.paused;
            same.stopped.clone_from(&spec.stopped);
            if serde_json::to_value(&same).ok() == serde_json::to_value(&spec).ok() {
                if cur.paused != spec.paused {
                    self.pause_locked(&name, spec.paused).await?;
                }
                return Ok(());
            }
        }
        let handler = match self.load_handler(&spec.module_hash).await {
            Ok(h) => h,
            Err(e) => {
                let kept = self.stop_and_keep(&name).await;
                self.insert_broken(spec, e.to_string(), true, kept);
                return Err(e);
            }
        };
        self.replace(spec, handler, current.map(|c| c.1), false)
            .await
    }

    /// Stops and forgets a deployment here only (cluster mode: it was withdrawn from the
    /// catalog). Its offsets stay.
    pub(crate) async fn remove(&self, name: &str) -> Result<(), DeployError> {
        let _guard = self.lock_name(name).await;
        if let Some(entry) = self.take(name) {
            entry.stop().await;
        }
        self.store.remove(name)?;
        Ok(())
    }

    /// Stops what runs under `name`, if anything, and returns its counters and logs.
    pub(super) async fn stop_and_keep(&self, name: &str) -> Option<Kept> {
        let old = self.take(name)?;
        let kept = (old.shared.metrics.clone(), old.shared.logs.clone());
        old.stop().await;
        Some(kept)
    }

    /// Stores module bytes read from the catalog, so `apply` can load them by hash.
    pub(crate) fn save_module(&self, hash: &str, wasm: &[u8]) -> Result<(), StoreError> {
        self.store.save_module(hash, wasm)
    }

    /// Whether a deployment of this name is known here.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.entries().contains_key(name)
    }
}
