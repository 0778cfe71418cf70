//! Where deployments run: the [`Backend`] seam, and its embedded implementation on the
//! host's own log.
//!
//! The scheduler owns deployments (specs, locks, counters, deploy/undeploy/pause); a
//! backend owns where their records are: which topics exist, how workers are started on
//! them (one per partition of the log; one per partition a Kafka group assigns to this
//! host), where positions are read for `runtime list`. Cluster mode is `crate::cluster`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use rill_engine::Handler;
use rill_log::Log;

use super::DeployError;
use super::cpu::Cpu;
use super::exactly_once::Transaction;
use super::output::Outputs;
use super::source::{LogSource, Sink, Source};
use super::state::{Control, DeploymentShared};
use super::worker::Worker;
use crate::deployment::{DeploymentSpec, Guarantee};
use crate::state::{Changelog, LogChangelog};

/// One partition's position as `runtime list` shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Position {
    /// The group's committed offset.
    pub committed: Option<i64>,
    /// The partition's end (high watermark).
    pub end: i64,
    /// The host that processes it, in cluster mode.
    pub owner: Option<String>,
    /// Its status when another host (or nobody) processes it.
    pub remote: Option<&'static str>,
}

/// What a backend needs to start a deployment's workers.
pub(crate) struct Run {
    pub shared: Arc<DeploymentShared>,
    pub handler: Handler,
    pub control: watch::Receiver<Control>,
    pub(super) cpu: Arc<Cpu>,
}

impl Run {
    /// Spawns the worker of one partition on the async runtime.
    pub fn spawn(
        &self,
        source: Arc<dyn Source>,
        sink: Box<dyn Sink>,
        control: watch::Receiver<Control>,
    ) -> JoinHandle<()> {
        let w = Worker::new(
            self.shared.clone(),
            self.handler.clone(),
            source,
            control,
            self.cpu.clone(),
            sink,
        );
        tokio::spawn(w.run())
    }
}

/// A boxed future, as a trait object's async method returns it.
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Changes to deployments that are kept outside this host (cluster mode: in a topic of
/// the cluster). The scheduler publishes each change here instead of applying it; every
/// host, this one included, applies what it reads back.
pub(crate) trait Catalog: Send + Sync {
    /// Publishes a deployment (its module too, if the catalog lacks it) and returns once
    /// this host has applied it.
    fn publish(
        &self,
        spec: &DeploymentSpec,
        wasm: Option<&[u8]>,
    ) -> Pending<'_, Result<(), DeployError>>;
    /// Publishes the removal of a deployment and returns once this host has applied it.
    fn withdraw(&self, name: &str) -> Pending<'_, Result<(), DeployError>>;
}

/// Where deployments' records are. See the module docs.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Checks that the spec's topic exists and creates its declared outputs. May block.
    fn prepare(&self, spec: &DeploymentSpec) -> Result<(), DeployError>;
    /// The partitions of `topic`, if it exists (from what is known now, without waiting).
    fn partitions(&self, topic: &str) -> Option<u32>;
    /// Starts the workers of a deployment and returns the tasks to await when it stops.
    fn start(&self, run: Run) -> Result<Vec<JoinHandle<()>>, DeployError>;
    /// Every partition's position, for `runtime list`.
    fn positions(&self, spec: &DeploymentSpec, partitions: u32) -> Vec<Position>;
    /// The changelog of a stateful deployment's stores (`crate::state`), created if need be
    /// with `partitions` partitions. May block.
    fn changelog(
        &self,
        spec: &DeploymentSpec,
        partitions: u32,
    ) -> Result<Arc<dyn Changelog>, DeployError>;
    /// Forgets the group's committed offsets.
    fn drop_offsets(&self, group: &str) -> Result<(), String>;
    /// Deletes the changelog of a deployment's state, if it has one.
    fn drop_state(&self, spec: &DeploymentSpec) -> Result<(), String> {
        let _ = spec;
        Ok(())
    }
    /// Where deployment changes are published, if they are kept outside this host.
    fn catalog(&self) -> Option<Arc<dyn Catalog>> {
        None
    }
}

/// Deployments on the host's own log: a worker per partition of the topic, positions in
/// the log's offsets store.
pub(crate) struct Embedded {
    pub log: Arc<Log>,
    /// The log's batch limit; outputs are appended in batches below it.
    pub max_append_bytes: usize,
}

impl Backend for Embedded {
    fn prepare(&self, spec: &DeploymentSpec) -> Result<(), DeployError> {
        let Some(source) = self.log.topic(&spec.topic) else {
            return Err(DeployError::UnknownTopic(spec.topic.clone()));
        };
        // Declared outputs exist from the deploy on, so consumers can subscribe before the
        // first emit. They get one partition and the source topic's flush policy.
        for output in &spec.outputs {
            if self.log.topic(output).is_none() {
                let mut cfg = source.config().clone();
                cfg.partitions = 1;
                match self.log.create_topic(output, cfg) {
                    Ok(_) | Err(rill_log::TopicError::AlreadyExists(_)) => {}
                    Err(e) => {
                        return Err(DeployError::Invalid(format!(
                            "output topic '{output}': {e}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn partitions(&self, topic: &str) -> Option<u32> {
        self.log.topic(topic).map(|t| t.partitions().len() as u32)
    }

    fn start(&self, run: Run) -> Result<Vec<JoinHandle<()>>, DeployError> {
        let spec = run.shared.spec();
        let Some(topic) = self.log.topic(&spec.topic) else {
            return Err(DeployError::UnknownTopic(spec.topic.clone()));
        };
        let mut create_config = topic.config().clone();
        create_config.partitions = 1;
        Ok(topic
            .partitions()
            .iter()
            .map(|p| {
                let exactly_once = spec.guarantee == Guarantee::ExactlyOnce;
                let mut outputs = Outputs::new(
                    self.log.clone(),
                    create_config.clone(),
                    self.max_append_bytes,
                );
                if exactly_once {
                    outputs =
                        outputs.exactly_once(Transaction::id_for(&spec.group, &spec.topic, p.id()));
                }
                let source = LogSource {
                    log: self.log.clone(),
                    partition: p.clone(),
                    committed: exactly_once,
                };
                run.spawn(Arc::new(source), Box::new(outputs), run.control.clone())
            })
            .collect())
    }

    /// The changelog lives in the host's log: the compacted topic `<name>.state` with as
    /// many partitions as the source (grown with it), the source's flush policy.
    fn changelog(
        &self,
        spec: &DeploymentSpec,
        partitions: u32,
    ) -> Result<Arc<dyn Changelog>, DeployError> {
        let name = spec.state_topic();
        let invalid = |e: String| DeployError::Invalid(format!("state changelog '{name}': {e}"));
        match self.log.topic(&name) {
            Some(t) if (t.partitions().len() as u32) < partitions => {
                self.log
                    .create_partitions(&name, partitions)
                    .map_err(|e| invalid(e.to_string()))?;
            }
            Some(_) => {}
            None => {
                let flush = self
                    .log
                    .topic(&spec.topic)
                    .map(|t| t.config().flush)
                    .unwrap_or_default();
                let cfg = rill_log::TopicConfig {
                    partitions,
                    flush,
                    cleanup_policy: rill_log::CleanupPolicy::Compact,
                    ..rill_log::TopicConfig::default()
                };
                match self.log.create_topic(&name, cfg) {
                    Ok(_) | Err(rill_log::TopicError::AlreadyExists(_)) => {}
                    Err(e) => return Err(invalid(e.to_string())),
                }
            }
        }
        Ok(Arc::new(LogChangelog {
            log: self.log.clone(),
            topic: name,
            committed: spec.guarantee == Guarantee::ExactlyOnce,
        }))
    }

    fn positions(&self, spec: &DeploymentSpec, partitions: u32) -> Vec<Position> {
        let topic = self.log.topic(&spec.topic);
        (0..partitions)
            .map(|i| Position {
                committed: self.log.offsets().fetch(&spec.group, &spec.topic, i),
                end: topic
                    .as_ref()
                    .and_then(|t| t.partition(i))
                    .map_or(0, |p| p.high_watermark()),
                owner: None,
                remote: None,
            })
            .collect()
    }

    fn drop_offsets(&self, group: &str) -> Result<(), String> {
        self.log
            .offsets()
            .delete_group(group)
            .map_err(|e| format!("cannot drop offsets: {e}"))
    }

    fn drop_state(&self, spec: &DeploymentSpec) -> Result<(), String> {
        let name = spec.state_topic();
        match self.log.delete_topic(&name) {
            Ok(()) | Err(rill_log::TopicError::NotFound(_)) => Ok(()),
            Err(e) => Err(format!("cannot delete the state changelog '{name}': {e}")),
        }
    }
}
