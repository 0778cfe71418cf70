//! The group coordinator: Kafka's classic consumer-group protocol.
//!
//! A group moves through Kafka's states:
//!
//! ```text
//! Empty ──join──► PreparingRebalance ──all members rejoined, or deadline──► CompletingRebalance
//!   ▲                  ▲   (members that did not rejoin are removed)             │ leader's SyncGroup
//!   └─ last member ────┴── join / leave / session timeout ◄───────── Stable ◄────┘
//! ```
//!
//! Each completed join starts a new generation. The coordinator picks a leader, sends it
//! every member's subscription, and the leader computes the assignment client-side and hands
//! it back in SyncGroup, which the coordinator then gives to every member. Members learn of a
//! rebalance from Heartbeat's `REBALANCE_IN_PROGRESS` and rejoin. The state lives in memory:
//! after a host restart, members get `UNKNOWN_MEMBER_ID` and rejoin; committed offsets are in
//! the log's durable store and survive.
//!
//! All state sits behind one mutex that is never held across an await; JoinGroup and
//! SyncGroup wait on oneshot channels filled when the rebalance step completes.

pub(crate) mod api;
mod group;
#[cfg(test)]
mod tests;

pub(crate) use group::State;
use group::{Group, Member};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, watch};

use crate::server::Broker;

/// How often session timeouts and rebalance deadlines are checked.
const TICK: Duration = Duration::from_millis(100);
/// Accepted session timeouts (Kafka's group.min/max.session.timeout.ms are 6 s and 30 min;
/// we allow shorter ones so tests can expire members quickly).
const MIN_SESSION: Duration = Duration::from_millis(1000);
const MAX_SESSION: Duration = Duration::from_secs(30 * 60);

/// What a JoinGroup request gets once its rebalance step completes.
#[derive(Debug, Clone)]
pub(crate) struct JoinOutcome {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// Every member's id, instance id and metadata for the chosen protocol; leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// What a SyncGroup request gets.
#[derive(Debug, Clone)]
pub(crate) struct SyncOutcome {
    pub error: Option<ResponseError>,
    pub protocol_type: String,
    pub protocol_name: String,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn err(e: ResponseError) -> Self {
        SyncOutcome {
            error: Some(e),
            protocol_type: String::new(),
            protocol_name: String::new(),
            assignment: Bytes::new(),
        }
    }
}

/// A member's JoinGroup parameters.
#[derive(Debug)]
pub(crate) struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ without a group instance id (KIP-394): a member joining with an empty
    /// id is first given one with `MEMBER_ID_REQUIRED`, and enters the group only when it
    /// joins again with it, so a JoinGroup whose response is lost leaves no member behind.
    pub require_known_member: bool,
}

/// Snapshot of a group for DescribeGroups.
#[derive(Debug)]
pub(crate) struct GroupInfo {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// member id, instance id, client id, client host, metadata, assignment.
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// Every group's membership state.
#[derive(Debug)]
pub(crate) struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    initial_delay: Duration,
    next_member: AtomicU64,
    seed: u64,
}

/// Either an answer now or one to wait for.
pub(crate) enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

impl Coordinator {
    pub(crate) fn new(initial_delay: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Coordinator {
            groups: Mutex::new(HashMap::new()),
            initial_delay,
            next_member: AtomicU64::new(1),
            seed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let n = self.next_member.fetch_add(1, Ordering::Relaxed);
        let prefix = if client_id.is_empty() {
            "member"
        } else {
            client_id
        };
        format!(
            "{prefix}-{:08x}-{n}",
            (self.seed ^ (self.seed >> 32)) as u32
        )
    }

    /// JoinGroup. Errors come back as an immediate outcome.
    pub(crate) fn join(&self, group_id: &str, p: JoinParams) -> Reply<JoinOutcome> {
        let now = Instant::now();
        let fail = |e: ResponseError, member_id: &str| {
            Reply::Now(JoinOutcome {
                error: Some(e),
                generation: -1,
                protocol_type: String::new(),
                protocol_name: String::new(),
                leader: String::new(),
                member_id: member_id.to_string(),
                members: Vec::new(),
            })
        };
        if group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId, &p.member_id);
        }
        if !(MIN_SESSION..=MAX_SESSION).contains(&p.session_timeout) {
            return fail(ResponseError::InvalidSessionTimeout, &p.member_id);
        }
        if p.protocol_type.is_empty() || p.protocols.is_empty() {
            return fail(ResponseError::InconsistentGroupProtocol, &p.member_id);
        }
        let mut groups = self.lock();
        let g = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(now));
        let type_ok = g.members.is_empty() || g.protocol_type == p.protocol_type;
        let common = p.protocols.iter().any(|(n, _)| {
            g.members
                .iter()
                .filter(|(id, _)| **id != p.member_id)
                .all(|(_, m)| m.supports(n))
        });
        if !type_ok || !common {
            return fail(ResponseError::InconsistentGroupProtocol, &p.member_id);
        }
        let member_id = if p.member_id.is_empty() {
            let id = self.new_member_id(&p.client_id);
            if p.require_known_member {
                g.pending.insert(id.clone(), now + p.session_timeout);
                return fail(ResponseError::MemberIdRequired, &id);
            }
            id
        } else if g.members.contains_key(&p.member_id) || g.pending.remove(&p.member_id).is_some() {
            p.member_id.clone()
        } else {
            return fail(ResponseError::UnknownMemberId, &p.member_id);
        };
        let (tx, rx) = oneshot::channel();
        g.protocol_type = p.protocol_type;
        let m = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                session_timeout: p.session_timeout,
                rebalance_timeout: p.rebalance_timeout,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_seen: now,
                join: None,
                sync: None,
            });
        m.instance_id = p.instance_id;
        m.client_id = p.client_id;
        m.client_host = p.client_host;
        m.session_timeout = p.session_timeout;
        m.rebalance_timeout = p.rebalance_timeout;
        m.protocols = p.protocols;
        m.last_seen = now;
        // A repeated JoinGroup replaces the earlier one, whose waiter sees a closed channel.
        m.join = Some(tx);
        if g.state != State::PreparingRebalance {
            g.start_rebalance(now, self.initial_delay);
        }
        g.try_complete_join(now);
        Reply::Wait(rx)
    }

    /// SyncGroup.
    pub(crate) fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Reply<SyncOutcome> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Reply::Now(SyncOutcome::err(ResponseError::UnknownMemberId));
        };
        if !g.members.contains_key(member_id) {
            return Reply::Now(SyncOutcome::err(ResponseError::UnknownMemberId));
        }
        if generation != g.generation {
            return Reply::Now(SyncOutcome::err(ResponseError::IllegalGeneration));
        }
        let ok = |g: &Group, assignment: Bytes| SyncOutcome {
            error: None,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            assignment,
        };
        match g.state {
            State::Empty => Reply::Now(SyncOutcome::err(ResponseError::UnknownMemberId)),
            State::PreparingRebalance => {
                Reply::Now(SyncOutcome::err(ResponseError::RebalanceInProgress))
            }
            State::Stable => Reply::Now(ok(g, g.members[member_id].assignment.clone())),
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let now = Instant::now();
                if let Some(m) = g.members.get_mut(member_id) {
                    m.sync = Some(tx);
                    m.last_seen = now;
                }
                if g.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    g.state = State::Stable;
                    let (pt, pn) = (g.protocol_type.clone(), g.protocol.clone());
                    for m in g.members.values_mut() {
                        if let Some(tx) = m.sync.take() {
                            let _ = tx.send(SyncOutcome {
                                error: None,
                                protocol_type: pt.clone(),
                                protocol_name: pn.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                }
                Reply::Wait(rx)
            }
        }
    }

    /// Heartbeat: keeps the member alive and tells it whether to rejoin.
    pub(crate) fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Option<ResponseError> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        let state = g.state;
        let current = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        m.last_seen = Instant::now();
        if state == State::PreparingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        if generation != current {
            return Some(ResponseError::IllegalGeneration);
        }
        None
    }

    /// LeaveGroup for each member id; returns the error per member.
    pub(crate) fn leave(&self, group_id: &str, members: &[String]) -> Vec<Option<ResponseError>> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return members
                .iter()
                .map(|_| Some(ResponseError::UnknownMemberId))
                .collect();
        };
        let now = Instant::now();
        let results: Vec<_> = members
            .iter()
            .map(|id| match g.members.remove(id) {
                Some(_) => {
                    tracing::info!(group = group_id, member = %id, "member left");
                    None
                }
                None => Some(ResponseError::UnknownMemberId),
            })
            .collect();
        if results.iter().any(Option::is_none) {
            g.members_removed(now);
        }
        results
    }

    /// Whether `member_id` at `generation` may commit offsets for `group_id` now.
    pub(crate) fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let mut groups = self.lock();
        let g = groups.get_mut(group_id);
        // A commit from outside group management (an admin tool, or a consumer that assigns
        // partitions itself) is allowed while the group has no members, as in Kafka.
        if generation < 0 && member_id.is_empty() {
            return match g {
                Some(g) if g.state != State::Empty => Err(ResponseError::UnknownMemberId),
                _ => Ok(()),
            };
        }
        let Some(g) = g else {
            return Err(ResponseError::UnknownMemberId);
        };
        let (state, current) = (g.state, g.generation);
        let Some(m) = g.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation != current {
            return Err(ResponseError::IllegalGeneration);
        }
        if state == State::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        m.last_seen = Instant::now();
        Ok(())
    }

    /// Expires members whose session timed out and completes overdue rebalances.
    pub(crate) fn tick(&self, now: Instant) {
        let mut groups = self.lock();
        for (name, g) in groups.iter_mut() {
            g.pending.retain(|_, lapses| now <= *lapses);
            // A member blocked in JoinGroup or SyncGroup is alive by definition; Kafka does
            // not expire it. Every other member must keep heartbeating, in every state: a
            // member that went silent while a rebalance waits for it to rejoin is removed
            // after its session timeout, as Kafka removes it, rather than holding the whole
            // group for the rebalance timeout (minutes).
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join.is_none()
                        && m.sync.is_none()
                        && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    tracing::info!(group = %name, member = %id, "member session expired");
                    g.members.remove(id);
                }
                g.members_removed(now);
            }
            g.try_complete_join(now);
        }
    }

    /// Forgets `group` if it has no members (DeleteGroups); `false` if it has some. An
    /// empty group is otherwise kept, as Kafka keeps it while its offsets live: it is still
    /// listed and described with the protocol type its members used (`consumer`), where a
    /// group that only ever committed offsets is a "simple" one.
    pub(crate) fn remove_if_empty(&self, group: &str) -> bool {
        let mut groups = self.lock();
        match groups.get(group) {
            Some(g) if !g.members.is_empty() => false,
            _ => {
                groups.remove(group);
                true
            }
        }
    }

    /// DescribeGroups data, if the coordinator knows the group.
    pub(crate) fn describe(&self, group_id: &str) -> Option<GroupInfo> {
        let groups = self.lock();
        let g = groups.get(group_id)?;
        let members = g
            .members
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    m.metadata(&g.protocol),
                    m.assignment.clone(),
                )
            })
            .collect();
        Some(GroupInfo {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            members,
        })
    }

    /// Every group the coordinator knows, empty ones included: name, protocol type, state.
    pub(crate) fn list(&self) -> Vec<(String, String, &'static str)> {
        let groups = self.lock();
        let mut v: Vec<_> = groups
            .iter()
            .map(|(n, g)| (n.clone(), g.protocol_type.clone(), g.state.name()))
            .collect();
        v.sort();
        v
    }
}

/// Runs [`Coordinator::tick`] until `stop` turns true.
pub(crate) async fn run_ticker(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => broker.groups.tick(Instant::now()),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
