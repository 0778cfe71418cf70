//! DeleteGroups (42): forgets the committed offsets of groups nobody is consuming with.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::server::Broker;

/// The outcome for one group, as Kafka decides it.
fn delete_one(broker: &Broker, group: &str) -> Result<(), ResponseError> {
    if group.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let known = broker.groups.describe(group);
    if known.as_ref().is_some_and(|g| !g.members.is_empty()) {
        return Err(ResponseError::NonEmptyGroup);
    }
    let offsets = broker.log.offsets();
    if known.is_none() && offsets.committed(group).is_empty() {
        return Err(ResponseError::GroupIdNotFound);
    }
    if !broker.groups.remove_if_empty(group) {
        return Err(ResponseError::NonEmptyGroup);
    }
    // A Wasm deployment commits under its name too, but is no member the coordinator
    // knows: its offsets go like those of any empty group (see docs/kafka.md).
    offsets.delete_group(group).map_err(|e| {
        tracing::warn!(group, "deleting group offsets failed: {e}");
        ResponseError::KafkaStorageError
    })?;
    tracing::info!(group, "deleted consumer group offsets");
    Ok(())
}

/// DeleteGroups: each group must have no active member; its committed offsets are deleted.
/// An unknown group is `GROUP_ID_NOT_FOUND`, one with members `NON_EMPTY_GROUP`.
pub(crate) fn delete_groups(broker: &Broker, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|g| {
            let r = DeletableGroupResult::default().with_group_id(g.clone());
            match delete_one(broker, g.0.as_str()) {
                Ok(()) => r,
                Err(e) => {
                    broker.stats.count_error(e.code());
                    r.with_error_code(e.code())
                }
            }
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
