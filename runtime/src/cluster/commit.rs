//! Group commit of a member's offsets: one OffsetCommit carries every partition whose
//! worker is waiting to commit.
//!
//! librdkafka runs one consumer's commits one after another, and Kafka's group coordinator
//! holds each for `group.coordinator.append.linger.ms` (5 ms by default) — so one commit per
//! invocation per partition capped a host at about 150 commits a second per deployment
//! whatever its partitions did (docs/benchmarks.md, "Cluster mode"). Here a worker that
//! commits joins the next round: the first waiting worker leads it and commits every pending
//! offset at once, the others wait for that round. Each still returns only once its own
//! offset is committed (or the round failed), so the delivery contract is unchanged.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

#[derive(Debug, Default)]
struct Rounds {
    /// Offsets waiting for the next round, per partition.
    pending: BTreeMap<u32, i64>,
    /// Rounds started and finished (a round starts when its leader takes `pending`).
    started: u64,
    finished: u64,
    /// Whether a round is running now.
    running: bool,
    /// The failure of a partition's last round, with the round.
    failed: HashMap<u32, (u64, String)>,
}

/// One member's committer (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    rounds: Mutex<Rounds>,
    done: Condvar,
}

impl GroupCommit {
    /// Commits `offset` for `partition` of `topic` with the next round and returns once that
    /// round is over: `Ok` if it committed this offset.
    pub(crate) fn commit<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<(), String> {
        self.commit_with(partition, offset, |batch| {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in batch {
                let _ = tpl.add_partition_offset(topic, *p as i32, Offset::Offset(*o));
            }
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| format!("commit to the group failed: {e}"))
        })
    }

    /// The rounds, with `send` committing one round's offsets.
    fn commit_with(
        &self,
        partition: u32,
        offset: i64,
        send: impl Fn(&BTreeMap<u32, i64>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut r = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        r.pending.insert(partition, offset);
        // The first round to start from now on takes this offset.
        let mine = r.started + 1;
        loop {
            if r.finished >= mine {
                return match r.failed.get(&partition) {
                    Some((round, e)) if *round == mine => Err(e.clone()),
                    _ => Ok(()),
                };
            }
            if r.running {
                r = self.done.wait(r).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Lead the next round.
            r.running = true;
            r.started += 1;
            let round = r.started;
            let batch = std::mem::take(&mut r.pending);
            drop(r);
            let result = send(&batch);
            r = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = result {
                for p in batch.keys() {
                    r.failed.insert(*p, (round, e.clone()));
                }
            }
            r.running = false;
            r.finished = round;
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn waiting_commits_share_a_round_and_each_sees_its_own_result() {
        let gc = Arc::new(GroupCommit::default());
        let rounds = Arc::new(Mutex::new(Vec::<BTreeMap<u32, i64>>::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let send = {
            let (gc, rounds, calls) = (gc.clone(), rounds.clone(), calls.clone());
            move |b: &BTreeMap<u32, i64>| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    // The first round is slow: the three others queue behind it meanwhile.
                    for _ in 0..1000 {
                        let queued = gc.rounds.lock().unwrap().pending.len();
                        if queued == 3 {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                rounds.lock().unwrap().push(b.clone());
                if b.contains_key(&3) {
                    Err("refused".to_owned())
                } else {
                    Ok(())
                }
            }
        };
        let first = {
            let (gc, send) = (gc.clone(), send.clone());
            std::thread::spawn(move || gc.commit_with(0, 100, send))
        };
        while calls.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let threads: Vec<_> = std::iter::once(first)
            .chain((1..4u32).map(|p| {
                let (gc, send) = (gc.clone(), send.clone());
                std::thread::spawn(move || gc.commit_with(p, 100 + i64::from(p), send))
            }))
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // Partition 0 leads alone; 1, 2 and 3 arrive during its round and share the next.
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "{:?}",
            rounds.lock().unwrap()
        );
        let all: BTreeMap<u32, i64> = rounds
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|(p, o)| (*p, *o))
            .collect();
        assert_eq!(all, (0..4).map(|p| (p, 100 + i64::from(p))).collect());
        // The failed round fails each of its partitions, not the earlier round's.
        assert_eq!(results[0], Ok(()));
        for r in &results[1..] {
            assert_eq!(r.as_ref().map_err(String::as_str), Err("refused"));
        }
        // The next commit of a partition whose round failed starts afresh.
        assert_eq!(gc.commit_with(1, 200, |_| Ok(())), Ok(()));
    }
}
