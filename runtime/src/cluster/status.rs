//! What a host knows of the cluster: whether it answers, and for each deployment, which
//! host owns each partition, its committed offset and its end.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::Cluster;
use crate::scheduler::Position;

/// How long a status request may take: status must not hold up the member's polling.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// The cluster as `runtime status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The bootstrap servers.
    pub bootstrap: String,
    /// This host's id (its members' `client.id`).
    pub host_id: String,
    /// Whether the last metadata request was answered.
    pub reachable: bool,
    /// Brokers in the last metadata answer.
    pub brokers: usize,
    /// The last error a client reported, if any since the cluster last answered.
    pub error: Option<String>,
}

#[derive(Debug)]
struct HealthState {
    reachable: bool,
    brokers: usize,
    error: Option<String>,
}

/// Reachability, refreshed by the health thread; errors noted by any client.
#[derive(Debug)]
pub(super) struct Health(Mutex<HealthState>);

impl Health {
    pub(super) fn new(brokers: usize) -> Self {
        Health(Mutex::new(HealthState {
            reachable: true,
            brokers,
            error: None,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn note_error(&self, error: String) {
        self.state().error = Some(error);
    }

    pub(super) fn refresh<C: ConsumerContext>(&self, reader: &BaseConsumer<C>) {
        let r = reader.fetch_metadata(None, STATUS_TIMEOUT);
        let mut s = self.state();
        match r {
            Ok(m) => {
                s.reachable = true;
                s.brokers = m.brokers().len();
                s.error = None;
            }
            Err(e) => {
                s.reachable = false;
                s.error = Some(e.to_string());
            }
        }
    }

    pub(super) fn snapshot(&self, cluster: &Cluster) -> ClusterStatus {
        let s = self.state();
        ClusterStatus {
            bootstrap: cluster.bootstrap().to_owned(),
            host_id: cluster.host_id().to_owned(),
            reachable: s.reachable,
            brokers: s.brokers,
            error: s.error.clone(),
        }
    }
}

/// Every partition of `topic` for group `group`: committed offset, end, owner. Partitions
/// in `owned` are this host's (their status is the worker's). `None` if the cluster did
/// not answer (the last positions are then kept by the caller... and replaced by this).
pub(super) fn positions<C: ConsumerContext>(
    cluster: &Cluster,
    consumer: &BaseConsumer<C>,
    topic: &str,
    group: &str,
    owned: &[u32],
) -> Option<Vec<Position>> {
    let n = cluster.fetch_partitions(topic).ok().flatten()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        let _ = tpl.add_partition_offset(topic, p as i32, Offset::Invalid);
    }
    let committed = consumer.committed_offsets(tpl, STATUS_TIMEOUT).ok()?;
    let owners = group_owners(consumer, group, topic);
    let mut out = Vec::with_capacity(n as usize);
    for p in 0..n {
        let committed = committed
            .find_partition(topic, p as i32)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        let end = consumer
            .fetch_watermarks(topic, p as i32, STATUS_TIMEOUT)
            .map_or(0, |(_, high)| high);
        let mine = owned.contains(&p);
        let owner = if mine {
            Some(cluster.host_id().to_owned())
        } else {
            owners
                .iter()
                .find(|(_, ps)| ps.contains(&p))
                .map(|(h, _)| h.clone())
        };
        let remote = match (&owner, mine) {
            (_, true) => None,
            (Some(_), false) => Some("remote"),
            (None, false) => Some("unassigned"),
        };
        out.push(Position {
            committed,
            end,
            owner,
            remote,
        });
    }
    Some(out)
}

/// The group's members (by `client.id`) and the partitions of `topic` each is assigned.
fn group_owners<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    group: &str,
    topic: &str,
) -> Vec<(String, Vec<u32>)> {
    let Ok(list) = consumer.fetch_group_list(Some(group), STATUS_TIMEOUT) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for g in list.groups().iter().filter(|g| g.name() == group) {
        for m in g.members() {
            let parts = m
                .assignment()
                .map(|a| assigned_partitions(a, topic))
                .unwrap_or_default();
            out.push((m.client_id().to_owned(), parts));
        }
    }
    out
}

/// The partitions of `topic` in a consumer protocol assignment (version, then an array of
/// topic name and partition array; user data after is ignored). Malformed bytes give what
/// was read before them.
pub(super) fn assigned_partitions(bytes: &[u8], topic: &str) -> Vec<u32> {
    struct R<'a>(&'a [u8]);
    impl R<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_first_chunk::<N>()?;
            self.0 = rest;
            Some(*head)
        }
        fn bytes(&mut self, n: usize) -> Option<&[u8]> {
            if self.0.len() < n {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }
    }
    let mut r = R(bytes);
    let mut out = Vec::new();
    let parse = |r: &mut R<'_>, out: &mut Vec<u32>| -> Option<()> {
        let _version = i16::from_be_bytes(r.take::<2>()?);
        let topics = i32::from_be_bytes(r.take::<4>()?);
        for _ in 0..topics.max(0) {
            let len = i16::from_be_bytes(r.take::<2>()?).max(0) as usize;
            let name = r.bytes(len)?.to_vec();
            let count = i32::from_be_bytes(r.take::<4>()?);
            for _ in 0..count.max(0) {
                let p = i32::from_be_bytes(r.take::<4>()?);
                if name == topic.as_bytes() && p >= 0 {
                    out.push(p as u32);
                }
            }
        }
        Some(())
    };
    let _ = parse(&mut r, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::assigned_partitions;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
            b.extend_from_slice(&(ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
        b.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
        b
    }

    #[test]
    fn reads_the_partitions_of_one_topic() {
        let a = assignment(&[("other", &[0, 1]), ("orders", &[3, 1])]);
        assert_eq!(assigned_partitions(&a, "orders"), vec![3, 1]);
        assert_eq!(assigned_partitions(&a, "none"), Vec::<u32>::new());
        // Truncated: what was read before the cut.
        assert_eq!(assigned_partitions(&a[..a.len() - 10], "other"), vec![0, 1]);
        assert!(assigned_partitions(&[], "orders").is_empty());
    }
}
