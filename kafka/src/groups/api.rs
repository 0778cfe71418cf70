//! The wire side of the group APIs: FindCoordinator (10), JoinGroup (11), Heartbeat (12),
//! LeaveGroup (13), SyncGroup (14), DescribeGroups (15), ListGroups (16).

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{JoinOutcome, JoinParams, Reply, SyncOutcome};
use crate::conn::Client;
use crate::server::Broker;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn code(broker: &Broker, e: Option<ResponseError>) -> i16 {
    let c = e.map_or(0, |e| e.code());
    broker.stats.count_error(c);
    c
}

/// FindCoordinator: this broker coordinates every group and every transactional id.
pub(crate) fn find_coordinator(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let (host, port) = broker.advertised();
    let node = BrokerId(broker.cfg.node_id);
    // key_type 0 = consumer group, 1 = transaction.
    let (err, msg) = match req.key_type {
        0 | 1 => (None, None),
        _ => (
            Some(ResponseError::InvalidRequest),
            Some("unknown coordinator key type"),
        ),
    };
    let c = code(broker, err);
    let message = msg.map(s);
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                CoordinatorEntry::default()
                    .with_key(key)
                    .with_node_id(if c == 0 { node } else { BrokerId(-1) })
                    .with_host(s(if c == 0 { host } else { "" }))
                    .with_port(if c == 0 { port } else { -1 })
                    .with_error_code(c)
                    .with_error_message(message.clone())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let mut r = FindCoordinatorResponse::default().with_error_code(c);
    if c == 0 {
        r = r.with_node_id(node).with_host(s(host)).with_port(port);
    } else {
        r = r.with_node_id(BrokerId(-1)).with_host(s("")).with_port(-1);
    }
    if version >= 1 {
        r = r.with_error_message(message);
    }
    r
}

/// JoinGroup: waits until the rebalance step completes.
pub(crate) async fn join_group(
    broker: &Broker,
    client: &Client,
    req: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let ms = |v: i32| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    // v0 has no rebalance timeout; Kafka uses the session timeout then.
    let rebalance = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let params = JoinParams {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: client.client_id.clone(),
        client_host: format!("/{}", client.peer.ip()),
        session_timeout: ms(req.session_timeout_ms),
        rebalance_timeout: ms(rebalance),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member: version >= 4 && req.group_instance_id.is_none(),
    };
    let group = req.group_id.0.as_str();
    let outcome = match broker.groups.join(group, params) {
        Reply::Now(o) => o,
        Reply::Wait(rx) => rx.await.unwrap_or_else(|_| JoinOutcome {
            // The member sent another JoinGroup that replaced this one.
            error: Some(ResponseError::RebalanceInProgress),
            generation: -1,
            protocol_type: String::new(),
            protocol_name: String::new(),
            leader: String::new(),
            member_id: req.member_id.to_string(),
            members: Vec::new(),
        }),
    };
    let members = outcome
        .members
        .into_iter()
        .map(|(id, instance, meta)| {
            let mut m = JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_metadata(meta);
            if version >= 5 {
                m = m.with_group_instance_id(instance.map(s));
            }
            m
        })
        .collect();
    let mut r = JoinGroupResponse::default()
        .with_error_code(code(broker, outcome.error))
        .with_generation_id(outcome.generation)
        .with_leader(s(outcome.leader))
        .with_member_id(s(outcome.member_id))
        .with_members(members);
    // v7+ make the protocol fields nullable; older versions need a string.
    let null_ok = version >= 7 && outcome.error.is_some();
    r = r.with_protocol_name(if null_ok {
        None
    } else {
        Some(s(outcome.protocol_name))
    });
    if version >= 7 {
        r = r.with_protocol_type(if null_ok {
            None
        } else {
            Some(s(outcome.protocol_type))
        });
    }
    r
}

/// SyncGroup: the leader hands in the assignment; everyone gets theirs.
pub(crate) async fn sync_group(broker: &Broker, req: SyncGroupRequest) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let outcome = match broker.groups.sync(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.generation_id,
        assignments,
    ) {
        Reply::Now(o) => o,
        Reply::Wait(rx) => rx
            .await
            .unwrap_or_else(|_| SyncOutcome::err(ResponseError::RebalanceInProgress)),
    };
    let ok = outcome.error.is_none();
    SyncGroupResponse::default()
        .with_error_code(code(broker, outcome.error))
        .with_protocol_type(ok.then(|| s(outcome.protocol_type)))
        .with_protocol_name(ok.then(|| s(outcome.protocol_name)))
        .with_assignment(outcome.assignment)
}

/// Heartbeat.
pub(crate) fn heartbeat(broker: &Broker, req: HeartbeatRequest) -> HeartbeatResponse {
    let e = broker.groups.heartbeat(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code(broker, e))
}

/// LeaveGroup: one member (v0-2) or a batch (v3+).
pub(crate) fn leave_group(
    broker: &Broker,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = req.group_id.0.as_str();
    if version < 3 {
        let e = broker
            .groups
            .leave(group, &[req.member_id.to_string()])
            .pop()
            .flatten();
        return LeaveGroupResponse::default().with_error_code(code(broker, e));
    }
    let ids: Vec<String> = req
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    let results = broker.groups.leave(group, &ids);
    let members = req
        .members
        .into_iter()
        .zip(results)
        .map(|(m, e)| {
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(code(broker, e))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

/// DescribeGroups: live groups from the coordinator; groups known only by their committed
/// offsets (including the host's Wasm deployments) show as `Empty` with protocol type `""`,
/// as Kafka reports a group that only ever committed offsets (a "simple" group: no member
/// joined through the group protocol); others as `Dead`, as Kafka reports unknown groups.
pub(crate) fn describe_groups(
    broker: &Broker,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let known = broker.log.offsets().groups();
    let groups = req
        .groups
        .into_iter()
        .map(|gid| {
            let d = DescribedGroup::default().with_group_id(gid.clone());
            match broker.groups.describe(gid.0.as_str()) {
                Some(info) => {
                    let members = info
                        .members
                        .into_iter()
                        .map(|(id, instance, client_id, host, meta, assignment)| {
                            DescribedGroupMember::default()
                                .with_member_id(s(id))
                                .with_group_instance_id(instance.map(s))
                                .with_client_id(s(client_id))
                                .with_client_host(s(host))
                                .with_member_metadata(meta)
                                .with_member_assignment(assignment)
                        })
                        .collect();
                    d.with_group_state(s(info.state))
                        .with_protocol_type(s(info.protocol_type))
                        .with_protocol_data(s(info.protocol))
                        .with_members(members)
                }
                None if known.iter().any(|g| g.as_str() == gid.0.as_str()) => d
                    .with_group_state(s("Empty"))
                    .with_protocol_type(s(OFFSETS_ONLY_PROTOCOL_TYPE)),
                None => d.with_group_state(s("Dead")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// The protocol type of a group known only by its committed offsets: `""`, as Kafka reports
/// a group no member joined through the group protocol (admin clients call it "simple").
/// Found by the differential suite (`tests/all/differential.rs`, scenario `admin`): Rill
/// said `consumer`.
const OFFSETS_ONLY_PROTOCOL_TYPE: &str = "";

/// The type of every group Rill coordinates: Kafka's classic group protocol (ListGroups v5+
/// names it; KIP-848 `consumer` and KIP-932 `share` groups do not exist here).
const CLASSIC: &str = "classic";

/// ListGroups: live groups plus groups that only have committed offsets, filtered by state
/// (v4+) and by type (v5+: only `classic` matches).
pub(crate) fn list_groups(broker: &Broker, req: ListGroupsRequest) -> ListGroupsResponse {
    let type_wanted = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case(CLASSIC));
    if !type_wanted {
        return ListGroupsResponse::default();
    }
    let mut all = broker.groups.list();
    for g in broker.log.offsets().groups() {
        if !all.iter().any(|(n, _, _)| *n == g) {
            all.push((g, OFFSETS_ONLY_PROTOCOL_TYPE.to_string(), "Empty"));
        }
    }
    let wanted = |state: &str| {
        req.states_filter.is_empty()
            || req
                .states_filter
                .iter()
                .any(|f| f.as_str().eq_ignore_ascii_case(state))
    };
    let groups = all
        .into_iter()
        .filter(|(_, _, st)| wanted(st))
        .map(|(n, pt, st)| {
            ListedGroup::default()
                .with_group_id(GroupId(s(n)))
                .with_protocol_type(s(pt))
                .with_group_state(s(st))
                .with_group_type(s(CLASSIC))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A group that only committed offsets is listed and described as Kafka does: `Empty`,
    /// protocol type `""` (a "simple" group), no members.
    #[test]
    fn a_group_with_only_committed_offsets_is_empty_with_no_protocol_type() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            Arc::new(rill_log::Log::open(dir.path(), rill_log::LogOptions::default()).unwrap());
        log.offsets().commit("simple", "t", 0, 3).unwrap();
        let broker = Broker::new(log, crate::KafkaConfig::default()).unwrap();

        let listed = list_groups(&broker, ListGroupsRequest::default());
        let g = listed
            .groups
            .iter()
            .find(|g| g.group_id.0.as_str() == "simple")
            .expect("listed");
        assert_eq!(g.protocol_type.as_str(), "");
        assert_eq!(g.group_state.as_str(), "Empty");

        let described = describe_groups(
            &broker,
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_static_str("simple"))]),
        );
        let d = &described.groups[0];
        assert_eq!(d.protocol_type.as_str(), "");
        assert_eq!(d.group_state.as_str(), "Empty");
        assert!(d.members.is_empty());
    }

    #[test]
    fn list_groups_names_every_group_classic_and_honours_the_type_filter() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            Arc::new(rill_log::Log::open(dir.path(), rill_log::LogOptions::default()).unwrap());
        log.create_topic("t", rill_log::TopicConfig::default())
            .unwrap();
        log.offsets().commit("g", "t", 0, 3).unwrap();
        let broker = Broker::new(log, crate::KafkaConfig::default()).unwrap();
        let listed = |types: &[&'static str]| {
            list_groups(
                &broker,
                ListGroupsRequest::default()
                    .with_types_filter(types.iter().map(|t| s(*t)).collect()),
            )
            .groups
        };
        let all = listed(&[]);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].group_id.0.as_str(), "g");
        assert_eq!(all[0].group_type.as_str(), "classic");
        assert_eq!(listed(&["Classic", "Consumer"]).len(), 1);
        assert!(listed(&["consumer"]).is_empty());
        assert!(listed(&["share"]).is_empty());
    }
}
