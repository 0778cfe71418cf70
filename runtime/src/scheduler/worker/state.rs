//! The worker's side of durable state (`crate::state`): restoring the partition's store
//! before the first record, writing an invocation's changes to the changelog with the
//! position, and applying them to the store once they are durable.
//!
//! At least once, the changes are applied as soon as their changelog batch is appended,
//! before the group's commit: the store's position may then be ahead of the group, and the
//! worker resumes from the later of the two, so a change is never applied twice. Exactly
//! once, they are applied after the transaction holding them commits.

use std::sync::Arc;

use rill_engine::StateWrites;

use super::super::DeploymentShared;
use super::super::output::OutputError;
use super::Worker;
use crate::state::PartitionStore;

/// Changes written in the open transaction, applied when it commits.
pub(super) struct PendingState {
    writes: StateWrites,
    next: i64,
    changelog_next: Option<i64>,
}

/// Rebuilds `partition`'s store from its snapshot and changelog, and returns its position
/// (-1 if it has none, or the deployment is stateless). Blocking.
pub(super) fn restore(dep: &DeploymentShared, partition: u32) -> Result<i64, String> {
    let Some(state) = dep.state.as_ref() else {
        return Ok(-1);
    };
    let Some(store) = state.store(partition) else {
        return Ok(-1);
    };
    let started = std::time::Instant::now();
    let r = store
        .restore(&*state.changelog)
        .map_err(|e| format!("restoring state: {e}"))?;
    tracing::info!(deployment = %dep.spec().name, partition, keys = r.keys,
        from_snapshot = r.from_snapshot, from_changelog = r.from_changelog,
        position = r.position, elapsed_ms = started.elapsed().as_millis() as u64,
        "state restored");
    Ok(r.position)
}

impl Worker {
    /// This partition's store, if the deployment is stateful.
    pub(super) fn store(&self) -> Option<&Arc<PartitionStore>> {
        self.dep.state.as_ref()?.store(self.pid())
    }

    /// Writes the changes of the invocation that ends at `next` to the changelog. At least
    /// once they are then applied; exactly once they wait for the commit.
    /// A rejected append (changes too large for one batch) is the handler's doing, like a
    /// rejected output.
    pub(super) fn write_state(
        &mut self,
        writes: StateWrites,
        next: i64,
    ) -> Result<(), OutputError> {
        if writes.is_empty() {
            return Ok(());
        }
        let Some(state) = self.dep.state.clone() else {
            return Ok(());
        };
        let changelog_next =
            self.outputs
                .append_changelog(&state.topic, self.pid(), &writes, next)?;
        let pending = PendingState {
            writes,
            next,
            changelog_next,
        };
        if self.exactly_once {
            self.pending_state = Some(pending);
        } else {
            self.apply_state(pending);
        }
        Ok(())
    }

    /// Exactly once: the transaction committed; its changes are durable.
    pub(super) fn state_committed(&mut self) {
        if let Some(p) = self.pending_state.take() {
            self.apply_state(p);
        }
    }

    fn apply_state(&self, p: PendingState) {
        if let Some(store) = self.store() {
            store.apply(&p.writes, p.next, p.changelog_next);
            store.maybe_snapshot(false);
        }
    }
}
