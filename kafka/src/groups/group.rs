//! One group's membership and its rebalance steps: the state machine that
//! [`Coordinator`](super::Coordinator) drives under its lock.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::{JoinOutcome, SyncOutcome};

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

/// One member: what it joined with, its assignment, and the JoinGroup or SyncGroup it is
/// blocked in, if any.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) last_seen: Instant,
    pub(super) join: Option<oneshot::Sender<JoinOutcome>>,
    pub(super) sync: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    pub(super) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == protocol)
    }
}

/// One group: its state, generation, leader and members.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) state: State,
    pub(super) generation: i32,
    pub(super) protocol_type: String,
    pub(super) protocol: String,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// When PreparingRebalance gives up on members that have not rejoined.
    pub(super) deadline: Instant,
    /// Until when the first join of an empty group waits for more members.
    pub(super) initial_until: Option<Instant>,
    /// Member ids handed out with `MEMBER_ID_REQUIRED` and not yet used, with when each
    /// lapses (its session timeout after it was given, as in Kafka).
    pub(super) pending: HashMap<String, Instant>,
}

impl Group {
    pub(super) fn new(now: Instant) -> Self {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: None,
            members: BTreeMap::new(),
            deadline: now,
            initial_until: None,
            pending: HashMap::new(),
        }
    }

    pub(super) fn start_rebalance(&mut self, now: Instant, initial_delay: Duration) {
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
    pub(super) fn try_complete_join(&mut self, now: Instant) {
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
    pub(super) fn members_removed(&mut self, now: Instant) {
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
