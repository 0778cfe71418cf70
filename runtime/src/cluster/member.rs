//! A deployment's member of its consumer group on this host: one thread polling one
//! librdkafka consumer, a worker per assigned partition.
//!
//! - **Assign** (cooperative: only the partitions added): a [`ClusterSource`] and a worker
//!   are created for each, at once, inside the rebalance callback.
//! - **Revoke**: each revoked partition's worker is told to stop and awaited before the
//!   callback returns, so its in-flight invocation finishes, produces and commits before
//!   the partition changes hands. A *lost* assignment (the session expired) is abandoned
//!   instead: nothing more is committed, the new owner re-runs from the last commit.
//! - **Fetch**: messages are routed to their partition's source; a source holding more than
//!   [`PAUSE_BYTES`] has its partition paused until it drains below [`RESUME_BYTES`].
//! - Every [`STATUS_EVERY`], the group's positions and owners are read for `runtime list`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Cluster;
use super::commit::GroupCommit;
use super::sink::ClusterSink;
use super::source::ClusterSource;
use super::txn::{Transactions, transactional_id};
use crate::deployment::{Guarantee, StartFrom};
use crate::scheduler::{Control, Run};

/// Buffered bytes above which a partition's fetching is paused, and below which it resumes.
/// Bounded per partition so a host with many partitions stays small; 4 MiB is dozens of
/// default invocations ahead.
const PAUSE_BYTES: usize = 4 << 20;
const RESUME_BYTES: usize = 1 << 20;

/// How often the member reads the group's positions and owners.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Messages routed per poll round before the sources are flushed (woken).
const ROUND: usize = 5000;

/// A partition this member owns.
struct Slot {
    source: Arc<ClusterSource>,
    control: watch::Sender<Control>,
    task: Option<JoinHandle<()>>,
    paused: bool,
}

/// The member's state, shared by its thread and librdkafka's rebalance callbacks (which run
/// on that same thread, inside `poll`).
pub(crate) struct MemberContext {
    cluster: Arc<Cluster>,
    topic: String,
    run: Run,
    slots: Mutex<HashMap<u32, Slot>>,
    consumer: OnceLock<Weak<BaseConsumer<MemberContext>>>,
    /// The workers' commits, grouped into one request per round.
    pub(crate) commits: GroupCommit,
}

impl MemberContext {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn name(&self) -> String {
        self.run.shared.spec().name.clone()
    }

    /// Starts a worker for each partition just assigned.
    fn assigned(&self, tpl: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let control = *self.run.control.borrow();
        let mut slots = self.slots();
        for e in tpl.elements_for_topic(&self.topic) {
            let p = e.partition() as u32;
            if slots.contains_key(&p) {
                continue;
            }
            let spec = self.run.shared.spec();
            let (source, sink) = match spec.guarantee {
                Guarantee::AtLeastOnce => (
                    ClusterSource::new(&self.topic, p, consumer.clone(), None),
                    ClusterSink::new(self.cluster.clone()),
                ),
                Guarantee::ExactlyOnce => {
                    let id = transactional_id(&spec.group, &self.topic, p);
                    let config = self.cluster.config.transactional(self.cluster.host_id());
                    let txn = Arc::new(Transactions::new(id, config));
                    (
                        ClusterSource::new(&self.topic, p, consumer.clone(), Some(txn.clone())),
                        ClusterSink::transactional(self.cluster.clone(), txn, consumer.clone()),
                    )
                }
            };
            let (source, sink) = (Arc::new(source), Box::new(sink));
            let (tx, rx) = watch::channel(control);
            let task = self.run.spawn(source.clone(), sink, rx);
            tracing::info!(deployment = %self.name(), partition = p, host = %self.cluster.host_id(),
                "partition assigned");
            slots.insert(
                p,
                Slot {
                    source,
                    control: tx,
                    task: Some(task),
                    paused: false,
                },
            );
        }
    }

    /// Stops the workers of revoked partitions and waits for them; `lost` abandons their
    /// in-flight work instead of committing it.
    fn revoked(&self, tpl: &TopicPartitionList, lost: bool) {
        let taken: Vec<(u32, Slot)> = {
            let mut slots = self.slots();
            tpl.elements_for_topic(&self.topic)
                .iter()
                .filter_map(|e| {
                    let p = e.partition() as u32;
                    slots.remove(&p).map(|s| (p, s))
                })
                .collect()
        };
        stop_all(&self.cluster, taken, lost, &self.name());
    }
}

/// Tells every slot's worker to stop and waits for each. A lost assignment is not waited
/// for: its partitions already belong to another member, and its workers may be blocked in
/// a commit that cannot complete before this rebalance does; they end on their own, and
/// commit nothing more.
fn stop_all(cluster: &Cluster, slots: Vec<(u32, Slot)>, lost: bool, name: &str) {
    for (_, s) in &slots {
        if lost {
            s.source.revoke();
        }
        let _ = s.control.send(Control::Stop);
    }
    for (p, mut s) in slots {
        if let Some(t) = s.task.take()
            && !lost
        {
            let _ = cluster.runtime.block_on(t);
        }
        tracing::info!(deployment = %name, partition = p, lost, "partition released");
    }
}

impl ClientContext for MemberContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(deployment = %self.name(), "kafka: {error}: {reason}");
        self.cluster.status.note_error(format!("{error}: {reason}"));
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(deployment = %self.name(), ?level, "librdkafka {fac}: {log_message}");
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.revoked(tpl, consumer.assignment_lost());
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // A partition paused for flow control, revoked and assigned again starts with
            // an empty buffer: it must fetch.
            if let Err(e) = consumer.resume(tpl) {
                tracing::warn!(deployment = %self.name(), "resuming assigned partitions: {e}");
            }
            self.assigned(tpl);
        }
    }
}

/// A deployment's member, before its thread runs.
pub(crate) struct Member {
    consumer: Arc<BaseConsumer<MemberContext>>,
    control: watch::Receiver<Control>,
}

impl Member {
    pub(crate) fn new(cluster: Arc<Cluster>, run: Run) -> Result<Member, String> {
        let spec = run.shared.spec();
        let reset = match spec.from {
            StartFrom::Latest => "latest",
            _ => "earliest",
        };
        let control = run.control.clone();
        let ctx = MemberContext {
            topic: spec.topic.clone(),
            slots: Mutex::new(HashMap::new()),
            consumer: OnceLock::new(),
            commits: GroupCommit::default(),
            cluster: cluster.clone(),
            run,
        };
        let consumer: BaseConsumer<MemberContext> = cluster
            .config
            .member(cluster.host_id(), &spec.group, reset, spec.guarantee)
            .create_with_context(ctx)
            .map_err(|e| format!("cannot create the group member of '{}': {e}", spec.name))?;
        let consumer = Arc::new(consumer);
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        consumer
            .subscribe(&[&spec.topic])
            .map_err(|e| format!("cannot subscribe to '{}': {e}", spec.topic))?;
        Ok(Member { consumer, control })
    }

    /// The member's thread: poll, route, pause and resume, report; on stop, stop every
    /// worker (each commits what it finished) and leave the group.
    pub(crate) fn run(mut self) {
        let ctx = self.consumer.context().clone();
        let name = ctx.name();
        let mut status_at = Instant::now();
        loop {
            match self.control.has_changed() {
                // The scheduler's entry is gone: nobody supervises this member any more.
                Err(_) => break,
                Ok(false) => {}
                Ok(true) => {
                    let c = *self.control.borrow_and_update();
                    if c == Control::Stop {
                        break;
                    }
                    for s in ctx.slots().values() {
                        let _ = s.control.send(c);
                    }
                }
            }
            self.poll_round(&ctx);
            self.flow_control(&ctx);
            if status_at.elapsed() >= STATUS_EVERY {
                let owned: Vec<u32> = ctx.slots().keys().copied().collect();
                let spec = ctx.run.shared.spec();
                let positions = super::status::positions(
                    &ctx.cluster,
                    &self.consumer,
                    &spec.topic,
                    &spec.group,
                    &owned,
                );
                ctx.cluster.set_positions(&name, positions);
                status_at = Instant::now();
            }
        }
        let all: Vec<(u32, Slot)> = ctx.slots().drain().collect();
        stop_all(&ctx.cluster, all, false, &name);
        ctx.cluster.set_positions(&name, None);
        self.consumer.unsubscribe();
        // Dropping the last handle closes the consumer: it leaves the group now rather than
        // after the session timeout, so the other members take the partitions over at once.
        drop(self.consumer);
    }

    /// One poll, then whatever else is already fetched, routed to the partitions' sources.
    fn poll_round(&self, ctx: &MemberContext) {
        let first = self.consumer.poll(Duration::from_millis(100));
        let mut touched: Vec<Arc<ClusterSource>> = Vec::new();
        let mut next = first;
        let mut n = 0;
        while let Some(r) = next {
            match r {
                Ok(m) => {
                    let p = m.partition() as u32;
                    let slots = ctx.slots();
                    match slots.get(&p) {
                        Some(s) => {
                            s.source.push(&m);
                            if !touched.iter().any(|t| Arc::ptr_eq(t, &s.source)) {
                                touched.push(s.source.clone());
                            }
                        }
                        None => tracing::debug!(partition = p, "message of an unowned partition"),
                    }
                }
                Err(e) => {
                    tracing::warn!(deployment = %ctx.name(), "fetch: {e}");
                    ctx.cluster.status.note_error(e.to_string());
                    break;
                }
            }
            n += 1;
            if n >= ROUND {
                break;
            }
            next = self.consumer.poll(Duration::ZERO);
        }
        for s in touched {
            s.flush();
        }
    }

    /// Pauses partitions whose sources hold too much, resumes those that drained.
    fn flow_control(&self, ctx: &MemberContext) {
        let mut slots = ctx.slots();
        for (p, s) in slots.iter_mut() {
            let buffered = s.source.buffered();
            let change = if !s.paused && buffered > PAUSE_BYTES {
                Some(true)
            } else if s.paused && buffered < RESUME_BYTES {
                Some(false)
            } else {
                None
            };
            let Some(pause) = change else { continue };
            let mut tpl = TopicPartitionList::new();
            let _ = tpl.add_partition_offset(&ctx.topic, *p as i32, Offset::Invalid);
            let r = if pause {
                self.consumer.pause(&tpl)
            } else {
                self.consumer.resume(&tpl)
            };
            match r {
                Ok(()) => s.paused = pause,
                Err(e) => tracing::warn!(partition = p, "pausing or resuming fetch: {e}"),
            }
        }
    }
}
