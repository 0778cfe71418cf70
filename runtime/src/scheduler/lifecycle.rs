//! Undeploy, pause and resume. In cluster mode each is a record written to the catalog and
//! applied by every host (`applied.rs`); here, directly.

use super::{Control, DeployError, DeploymentInfo, Scheduler};

impl Scheduler {
    /// Removes a deployment, running or broken. Its group's committed offsets stay unless
    /// `drop_offsets`.
    pub async fn undeploy(&self, name: &str, drop_offsets: bool) -> Result<(), DeployError> {
        let _guard = self.lock_name(name).await;
        let (group, readable) = self.with(name, |e| {
            (
                e.shared.spec().group.clone(),
                e.broken.as_ref().is_none_or(|b| b.spec_readable),
            )
        })?;
        if drop_offsets && !readable {
            return Err(DeployError::Invalid(format!(
                "cannot drop the offsets of '{name}': its spec file is unreadable, so its group \
                 is unknown; undeploy it without dropping offsets"
            )));
        }
        match self.backend.catalog() {
            Some(catalog) => {
                drop(_guard);
                catalog.withdraw(name).await?;
            }
            None => {
                if let Some(entry) = self.take(name) {
                    entry.stop().await;
                }
                self.store.remove(name)?;
            }
        }
        if drop_offsets {
            let mut spec = super::placeholder_spec(name);
            spec.group = group;
            self.forget_progress(&spec).await?;
        }
        Ok(())
    }

    /// Pauses or resumes a deployment; the state survives restarts. Resuming also restarts
    /// partitions that stopped on a failure, and retries starting a deployment that could
    /// not be restored.
    pub async fn set_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<DeploymentInfo, DeployError> {
        let guard = self.lock_name(name).await;
        if let Some(catalog) = self.backend.catalog() {
            let mut spec = self
                .with(name, |e| {
                    let readable = e.broken.as_ref().is_none_or(|b| b.spec_readable);
                    readable.then(|| (*e.shared.spec()).clone())
                })?
                .ok_or_else(|| {
                    DeployError::Invalid(format!("'{name}' cannot run: redeploy or undeploy it"))
                })?;
            spec.paused = paused;
            spec.stopped.clear();
            drop(guard);
            catalog.publish(&spec, None).await?;
            return self.info(name);
        }
        self.pause_locked(name, paused).await
    }

    /// Pauses or resumes a deployment here; callers hold the name's lock.
    pub(super) async fn pause_locked(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<DeploymentInfo, DeployError> {
        let (shared, broken) = self.with(name, |e| {
            (
                e.shared.clone(),
                e.broken
                    .as_ref()
                    .map(|b| (b.spec_readable, b.error.clone())),
            )
        })?;
        match broken {
            Some((false, error)) => {
                return Err(DeployError::Invalid(format!(
                    "'{name}' cannot run ({error}): redeploy or undeploy it"
                )));
            }
            Some((true, _)) => {
                shared.update_spec(|s| {
                    s.paused = paused;
                    s.stopped.clear();
                })?;
                if !paused {
                    let spec = (*shared.spec()).clone();
                    let kept = Some((shared.metrics.clone(), shared.logs.clone()));
                    match self.load_handler(&spec.module_hash).await {
                        Ok(handler) => self.start(spec, handler, kept).await?,
                        Err(e) => {
                            self.take(name);
                            self.insert_broken(spec, e.to_string(), true, kept);
                            return Err(e);
                        }
                    }
                }
                return self.info(name);
            }
            None => {}
        }
        shared.update_spec(|s| {
            s.paused = paused;
            if !paused {
                s.stopped.clear();
            }
        })?;
        if !paused {
            // The workers wake after this answer is built: show the restart already, not a
            // `failed` that is no longer true.
            for p in &shared.partitions {
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                if p.status == "failed" {
                    p.status = "starting";
                }
            }
        }
        self.with(name, |e| {
            let _ = e
                .control
                .send(if paused { Control::Pause } else { Control::Run });
        })?;
        self.info(name)
    }
}
