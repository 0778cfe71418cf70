//! Typed handlers in the scheduler: the registry it checks modules against at deploy and
//! hands their instances (`crate::schema::resolver`), and how a refused check reads.

use std::sync::Arc;

use super::{DeployError, Scheduler};

impl From<crate::schema::deploy_check::CheckError> for DeployError {
    fn from(e: crate::schema::deploy_check::CheckError) -> Self {
        use crate::schema::deploy_check::CheckError;
        match e {
            CheckError::Registry(m) => DeployError::SchemaRegistry(m),
            other => DeployError::Schema(other.to_string()),
        }
    }
}

impl Scheduler {
    /// Sets the schema registry that deploy-time checks and typed handlers use (this host's
    /// own or an external one). Deployments started before see it too.
    pub fn set_schemas(&self, source: Arc<dyn crate::schema::SchemaSource>) {
        self.schemas.set(source);
    }

    /// Checks the schemas a module declares against the registry, on the blocking pool (the
    /// registry may be reached over HTTP).
    pub(super) async fn check_schemas(&self, wasm: &[u8]) -> Result<(), DeployError> {
        let (slot, wasm) = (self.schemas.clone(), wasm.to_vec());
        tokio::task::spawn_blocking(move || {
            let source = slot.get();
            crate::schema::deploy_check::check_module(&wasm, source.as_deref())
        })
        .await
        .map_err(|e| DeployError::Invalid(format!("checking the module's schemas failed: {e}")))?
        .map_err(DeployError::from)
    }
}
