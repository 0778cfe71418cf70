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

use std::collections::{BTreeMap, HashMap};
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

/// A group's state, named as Kafka names it in DescribeGroups/ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

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
}

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join: Option<oneshot::Sender<JoinOutcome>>,
    sync: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == protocol)
    }
}

#[derive(Debug)]
struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// When PreparingRebalance gives up on members that have not rejoined.
    deadline: Instant,
    /// Until when the first join of an empty group waits for more members.
    initial_until: Option<Instant>,
}

impl Group {
    fn new(now: Instant) -> Self {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: None,
            members: BTreeMap::new(),
            deadline: now,
            initial_until: None,
        }
    }

    fn start_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        let was_empty = self.state == State::Empty;
        self.state = State::PreparingRebalance;
        for m in self.members.values_mut() {
            if let Some(tx) = m.sync.take() {
                let _ = tx.send(SyncOutcome::err(ResponseError::RebalanceInProgress));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.deadline = now + timeout;
        self.initial_until =
            (was_empty && !initial_delay.is_zero()).then(|| now + initial_delay.min(timeout));
    }

    /// Completes the join step if every member has rejoined (and any initial delay has
    /// passed) or the deadline has come.
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join.is_some());
        let delayed = self.initial_until.is_some_and(|t| now < t);
        let ready = all_joined && !delayed;
        if !ready && now < self.deadline {
            return;
        }
        self.initial_until = None;
        let before = self.members.len();
        self.members.retain(|_, m| m.join.is_some());
        if self.members.len() < before {
            tracing::info!(
                removed = before - self.members.len(),
                "members did not rejoin in time"
            );
        }
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            self.protocol.clear();
            return;
        }
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => self.members.keys().next().cloned().unwrap_or_default(),
        };
        // The leader's most preferred protocol that every member supports; join validated
        // that one exists.
        let protocol = self.members[&leader]
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .find(|n| self.members.values().all(|m| m.supports(n)))
            .unwrap_or_default();
        self.leader = Some(leader.clone());
        self.protocol = protocol.clone();
        self.state = State::CompletingRebalance;
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
            .collect();
        tracing::info!(generation = self.generation, members = all.len(), %leader, %protocol, "group rebalanced");
        for (id, m) in self.members.iter_mut() {
            m.last_seen = now;
            m.assignment = Bytes::new();
            if let Some(tx) = m.join.take() {
                let _ = tx.send(JoinOutcome {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// After members left or expired: rebalance the rest, or become empty.
    fn members_removed(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            self.protocol.clear();
            self.generation = self.generation.wrapping_add(1);
            return;
        }
        if self.state != State::PreparingRebalance {
            self.start_rebalance(now, Duration::ZERO);
        }
        self.try_complete_join(now);
    }
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
            self.new_member_id(&p.client_id)
        } else if g.members.contains_key(&p.member_id) {
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
            // A member blocked in JoinGroup is alive by definition; Kafka does not expire it.
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join.is_none() && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            if !expired.is_empty() && g.state != State::PreparingRebalance {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(member: &str, protocols: &[&str]) -> JoinParams {
        JoinParams {
            member_id: member.to_string(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
        }
    }

    fn now_join(r: Reply<JoinOutcome>) -> JoinOutcome {
        match r {
            Reply::Now(o) => o,
            Reply::Wait(mut rx) => rx.try_recv().expect("join completed"),
        }
    }

    #[test]
    fn second_member_triggers_a_rebalance_and_both_get_the_leaders_assignment() {
        let c = Coordinator::new(Duration::ZERO);
        let a = now_join(c.join("g", params("", &["range", "roundrobin"])));
        assert_eq!((a.error, a.generation), (None, 1));
        assert_eq!(a.leader, a.member_id);
        assert_eq!(a.members.len(), 1);
        let Reply::Wait(mut rx_a) = c.sync(
            "g",
            &a.member_id,
            1,
            vec![(a.member_id.clone(), Bytes::from_static(b"all"))],
        ) else {
            panic!("leader sync waits");
        };
        assert_eq!(
            rx_a.try_recv().expect("synced").assignment,
            Bytes::from_static(b"all")
        );
        assert_eq!(c.heartbeat("g", &a.member_id, 1), None);

        // B joins: it waits until A rejoins, which A learns from its heartbeat.
        let Reply::Wait(mut rx_b) = c.join("g", params("", &["roundrobin"])) else {
            panic!("waits")
        };
        assert!(rx_b.try_recv().is_err());
        assert_eq!(
            c.heartbeat("g", &a.member_id, 1),
            Some(ResponseError::RebalanceInProgress)
        );
        let a2 = now_join(c.join("g", params(&a.member_id, &["range", "roundrobin"])));
        let b = rx_b.try_recv().expect("b joined");
        assert_eq!((a2.generation, b.generation), (2, 2));
        assert_eq!(a2.leader, a.member_id, "the leader stays");
        assert_eq!(a2.members.len(), 2);
        assert!(b.members.is_empty(), "only the leader gets the member list");
        assert_eq!(
            a2.protocol_name, "roundrobin",
            "the only protocol both support"
        );

        // B syncs first and waits; the leader's sync releases both.
        let Reply::Wait(mut rx_b) = c.sync("g", &b.member_id, 2, vec![]) else {
            panic!("waits")
        };
        let given = vec![
            (a.member_id.clone(), Bytes::from_static(b"p0")),
            (b.member_id.clone(), Bytes::from_static(b"p1")),
        ];
        let Reply::Wait(mut rx_a) = c.sync("g", &a.member_id, 2, given) else {
            panic!("waits")
        };
        assert_eq!(
            rx_a.try_recv().expect("a").assignment,
            Bytes::from_static(b"p0")
        );
        assert_eq!(
            rx_b.try_recv().expect("b").assignment,
            Bytes::from_static(b"p1")
        );
        assert_eq!(c.describe("g").expect("group").state, "Stable");
        // A stale generation is refused.
        assert_eq!(
            c.heartbeat("g", &b.member_id, 1),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            c.check_commit("g", &b.member_id, 1),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(c.check_commit("g", &b.member_id, 2), Ok(()));
        assert_eq!(
            c.check_commit("g", "", -1),
            Err(ResponseError::UnknownMemberId)
        );

        // A leaves: B alone forms generation 3 once it rejoins.
        assert_eq!(c.leave("g", std::slice::from_ref(&a.member_id)), vec![None]);
        assert_eq!(
            c.heartbeat("g", &b.member_id, 2),
            Some(ResponseError::RebalanceInProgress)
        );
        let b3 = now_join(c.join("g", params(&b.member_id, &["roundrobin"])));
        assert_eq!(
            (b3.generation, b3.leader.as_str()),
            (3, b.member_id.as_str())
        );
    }

    #[test]
    fn silent_members_expire_and_an_empty_group_accepts_simple_commits() {
        let c = Coordinator::new(Duration::ZERO);
        let a = now_join(c.join("g", params("", &["range"])));
        let _ = c.sync("g", &a.member_id, 1, vec![]);
        assert_eq!(c.list().len(), 1);
        c.tick(Instant::now() + Duration::from_secs(11));
        assert_eq!(
            c.heartbeat("g", &a.member_id, 1),
            Some(ResponseError::UnknownMemberId)
        );
        // Kept, empty, with its members' protocol type, as Kafka keeps it.
        let listed = c.list();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].0.as_str(), listed[0].2), ("g", "Empty"));
        assert!(
            !listed[0].1.is_empty(),
            "the members' protocol type is kept"
        );
        assert_eq!(c.check_commit("g", "", -1), Ok(()));
        assert_eq!(
            c.check_commit("g", "ghost", 4),
            Err(ResponseError::UnknownMemberId)
        );
        // DeleteGroups forgets it.
        assert!(c.remove_if_empty("g"));
        assert!(c.list().is_empty());
    }

    #[test]
    fn incompatible_members_are_refused() {
        let c = Coordinator::new(Duration::ZERO);
        let _ = now_join(c.join("g", params("", &["range"])));
        assert_eq!(
            now_join(c.join("g", params("", &["sticky"]))).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        assert_eq!(
            now_join(c.join("g", params("nobody", &["range"]))).error,
            Some(ResponseError::UnknownMemberId)
        );
        let mut p = params("", &["range"]);
        p.session_timeout = Duration::from_millis(10);
        assert_eq!(
            now_join(c.join("g", p)).error,
            Some(ResponseError::InvalidSessionTimeout)
        );
    }
}
