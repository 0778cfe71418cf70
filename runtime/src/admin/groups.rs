//! Consumer groups as the offsets store knows them: deployments' groups and Kafka
//! consumers' groups alike, so a slow Kafka consumer is as visible as a slow handler.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::api::GroupLag;
use crate::host::Host;

/// Every committed (group, topic, partition) with its lag, sorted.
pub fn group_lag(host: &Host) -> Vec<GroupLag> {
    let offsets = host.log.offsets();
    let mut out = Vec::new();
    for group in offsets.groups() {
        for (topic, partition, committed) in offsets.committed(&group) {
            // A group may hold offsets of a deleted topic; its end is then unknown.
            let Some(end) = host
                .log
                .topic(&topic)
                .and_then(|t| t.partition(partition).map(|p| p.high_watermark()))
            else {
                continue;
            };
            out.push(GroupLag {
                group: group.clone(),
                topic,
                partition,
                committed,
                end,
                // A negative commit (a Kafka client's reset marker, stored as is) is no
                // position: count the lag as for a group that has not consumed yet.
                lag: (end - committed.max(0)).max(0),
            });
        }
    }
    out.sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    out
}

/// `GET /v1/groups`
pub(super) async fn list_groups(State(host): State<Arc<Host>>) -> Json<Vec<GroupLag>> {
    Json(group_lag(&host))
}
