//! Cluster mode: the same deployments, run as consumer-group members of an external Kafka
//! cluster, on as many Rill hosts as attach to it.
//!
//! Nothing here coordinates hosts: Kafka does. Each deployment is one consumer group
//! (cooperative-sticky); each host runs a member of it (`member.rs`) and one worker — the
//! same worker as embedded mode, through the `Source`/`Sink` seam — per partition the group
//! assigns it. Records are fetched by librdkafka and re-encoded as v2 batches for the guest
//! (`source.rs`); outputs and dead letters are produced with acks=all and idempotence and
//! awaited before the offset is committed to the group (`sink.rs`). Deployments themselves
//! are records of a compacted topic (`catalog.rs`) that every host reads and applies.
//!
//! The seam to the scheduler is [`ClusterBackend`] (a `scheduler::Backend`) and the
//! scheduler's `apply`/`remove`, which the catalog calls.

mod catalog;
mod commit;
mod config;
mod member;
mod sink;
mod source;
mod state;
mod status;
mod txn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureProducer;
use tokio::task::JoinHandle;

use crate::deployment::DeploymentSpec;
use crate::scheduler::{Backend, Catalog, DeployError, Position, Run};

pub use catalog::run_catalog;
pub use config::{ClusterConfig, DEFAULT_CATALOG_TOPIC};
pub use status::ClusterStatus;

/// This host's id in the cluster: the configured one, else `<hostname>:<admin port>`.
pub fn host_id(config: &ClusterConfig, admin: std::net::SocketAddr) -> String {
    if let Some(id) = &config.host_id {
        return id.clone();
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rill".to_owned());
    format!("{name}:{}", admin.port())
}

/// How long a request to the cluster may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The configuration is invalid.
    #[error("cluster config: {0}")]
    Config(String),
    /// A client could not be created (an invalid librdkafka property, say).
    #[error("cannot create a Kafka client for {bootstrap}: {error}")]
    Client {
        /// The bootstrap servers.
        bootstrap: String,
        /// librdkafka's error.
        error: String,
    },
    /// The cluster did not answer.
    #[error("the Kafka cluster at {bootstrap} is unreachable: {error}")]
    Unreachable {
        /// The bootstrap servers.
        bootstrap: String,
        /// What failed.
        error: String,
    },
    /// The catalog topic could not be created or read.
    #[error("the catalog topic '{topic}': {error}")]
    Catalog {
        /// Its name.
        topic: String,
        /// What failed.
        error: String,
    },
}

/// One host's connection to the cluster: its clients, its name there, what it knows.
pub struct Cluster {
    config: ClusterConfig,
    host_id: String,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Metadata, watermarks and offset lookups outside any group.
    reader: BaseConsumer,
    /// Blocking threads (invocation threads, members) wait on the clients' futures here.
    runtime: tokio::runtime::Handle,
    /// Partition counts of topics seen, so `partitions` answers without a request.
    topics: Mutex<HashMap<String, u32>>,
    /// Positions of every running deployment's partitions, refreshed by its member.
    positions: Mutex<HashMap<String, Vec<Position>>>,
    /// The catalog, once started.
    catalog: Mutex<Option<Arc<catalog::CatalogWriter>>>,
    status: status::Health,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.config.bootstrap)
            .field("host_id", &self.host_id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Creates the clients and checks that the cluster answers. `host_id` names this host
    /// in the groups it joins. Called inside the async runtime.
    pub fn connect(config: ClusterConfig, host_id: String) -> Result<Arc<Cluster>, ClusterError> {
        config.validate().map_err(ClusterError::Config)?;
        let client_err = |e: rdkafka::error::KafkaError| ClusterError::Client {
            bootstrap: config.bootstrap.clone(),
            error: e.to_string(),
        };
        let producer: FutureProducer = config.producer(&host_id).create().map_err(client_err)?;
        let admin: AdminClient<DefaultClientContext> =
            config.client(&host_id).create().map_err(client_err)?;
        let reader: BaseConsumer = config.reader(&host_id).create().map_err(client_err)?;
        let meta = reader.fetch_metadata(None, REQUEST_TIMEOUT).map_err(|e| {
            ClusterError::Unreachable {
                bootstrap: config.bootstrap.clone(),
                error: e.to_string(),
            }
        })?;
        let brokers = meta.brokers().len();
        Ok(Arc::new(Cluster {
            status: status::Health::new(brokers),
            config,
            host_id,
            producer,
            admin,
            reader,
            runtime: tokio::runtime::Handle::current(),
            topics: Mutex::new(HashMap::new()),
            positions: Mutex::new(HashMap::new()),
            catalog: Mutex::new(None),
        }))
    }

    /// This host's name in the cluster.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// The bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.config.bootstrap
    }

    /// Partitions of `topic` in the cluster, `None` if it does not exist. Blocking.
    fn fetch_partitions(&self, topic: &str) -> Result<Option<u32>, String> {
        Ok(self.fetch_topic(topic)?.map(|(n, _)| n))
    }

    /// Partitions of `topic`, and whether each has a leader now; `None` if it does not
    /// exist. Blocking.
    fn fetch_topic(&self, topic: &str) -> Result<Option<(u32, bool)>, String> {
        let meta = self
            .reader
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| format!("metadata of '{topic}': {e}"))?;
        let Some(t) = meta.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match t.error() {
            None => {}
            Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
                return Ok(None);
            }
            Some(e) => {
                return Err(format!(
                    "metadata of '{topic}': {}",
                    RDKafkaErrorCode::from(e)
                ));
            }
        }
        let n = t.partitions().len() as u32;
        if n == 0 {
            return Ok(None);
        }
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_owned(), n);
        Ok(Some((n, t.partitions().iter().all(|p| p.leader() >= 0))))
    }

    /// Creates `topic` if it does not exist (with `partitions`, `replication` and
    /// `configs`). Blocking.
    fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
        configs: &[(&str, &str)],
    ) -> Result<(), String> {
        if self.fetch_partitions(topic)?.is_some() {
            return Ok(());
        }
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
        for (k, v) in configs {
            new = new.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = self
            .runtime
            .block_on(self.admin.create_topics([&new], &opts))
            .map_err(|e| format!("cannot create topic '{topic}': {e}"))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, e)) => return Err(format!("cannot create topic '{topic}': {e}")),
            }
        }
        // Wait until the metadata names it with a leader for every partition, so the first
        // produce or read finds it (a new topic reaches the brokers one by one).
        for _ in 0..300 {
            if let Some((_, true)) = self.fetch_topic(topic)? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "topic '{topic}' was created but the cluster's metadata does not show it led"
        ))
    }

    /// The replication factor of topics Rill creates (outputs, dead letters, the catalog):
    /// three, or every broker if there are fewer, so that losing one broker of a
    /// three-broker cluster loses nothing and stops nothing.
    pub(crate) fn replication(&self) -> i32 {
        self.status().brokers.clamp(1, 3) as i32
    }

    pub(crate) fn set_positions(&self, name: &str, positions: Option<Vec<Position>>) {
        let mut all = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        match positions {
            Some(p) => all.insert(name.to_owned(), p),
            None => all.remove(name),
        };
    }

    /// The host's view of the cluster, for `runtime status` and `/metrics`.
    pub fn status(&self) -> ClusterStatus {
        self.status.snapshot(self)
    }

    /// Refreshes reachability every few seconds until the process ends. Call once.
    pub fn spawn_health(self: &Arc<Self>) {
        let cluster = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("rill-cluster-health".into())
            .spawn(move || {
                while let Some(c) = cluster.upgrade() {
                    c.status.refresh(&c.reader);
                    drop(c);
                    std::thread::sleep(Duration::from_secs(3));
                }
            })
            .expect("spawn the cluster health thread");
    }
}

/// Deployments on the cluster: the scheduler's `Backend` in cluster mode.
#[derive(Debug, Clone)]
pub struct ClusterBackend(pub Arc<Cluster>);

impl Backend for ClusterBackend {
    fn prepare(&self, spec: &DeploymentSpec) -> Result<(), DeployError> {
        let c = &self.0;
        match c.fetch_partitions(&spec.topic) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(DeployError::Invalid(format!(
                    "unknown topic '{}' in the Kafka cluster at {}: create it with your Kafka \
                     tools first",
                    spec.topic,
                    c.bootstrap()
                )));
            }
            Err(e) => return Err(DeployError::Invalid(e)),
        }
        for output in &spec.outputs {
            c.ensure_topic(output, 1, c.replication(), &[])
                .map_err(|e| DeployError::Invalid(format!("output topic '{output}': {e}")))?;
        }
        Ok(())
    }

    fn partitions(&self, topic: &str) -> Option<u32> {
        let known = self
            .0
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .copied();
        known.or_else(|| self.0.fetch_partitions(topic).ok().flatten())
    }

    fn start(&self, run: Run) -> Result<Vec<JoinHandle<()>>, DeployError> {
        let member = member::Member::new(self.0.clone(), run).map_err(DeployError::Invalid)?;
        Ok(vec![tokio::task::spawn_blocking(move || member.run())])
    }

    fn positions(&self, spec: &DeploymentSpec, partitions: u32) -> Vec<Position> {
        let known = self
            .0
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&spec.name)
            .cloned()
            .unwrap_or_default();
        (0..partitions as usize)
            .map(|i| {
                known.get(i).cloned().unwrap_or(Position {
                    remote: Some("unassigned"),
                    ..Position::default()
                })
            })
            .collect()
    }

    /// The changelog is a compacted topic of the cluster (`state.rs`).
    fn changelog(
        &self,
        spec: &DeploymentSpec,
        partitions: u32,
    ) -> Result<Arc<dyn crate::state::Changelog>, DeployError> {
        state::ensure_changelog(&self.0, spec, partitions)
            .map_err(|e| DeployError::Invalid(format!("state changelog: {e}")))
    }

    fn drop_offsets(&self, group: &str) -> Result<(), String> {
        let c = &self.0;
        let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        // Other hosts leave the group as they apply the undeploy; until then it is not
        // empty and Kafka refuses to delete it.
        let mut last = String::new();
        for _ in 0..40 {
            let results = c
                .runtime
                .block_on(c.admin.delete_groups(&[group], &opts))
                .map_err(|e| format!("cannot delete group '{group}': {e}"))?;
            match results.into_iter().next() {
                Some(Ok(_)) | None => return Ok(()),
                Some(Err((_, RDKafkaErrorCode::GroupIdNotFound))) => return Ok(()),
                Some(Err((_, e))) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!("cannot delete group '{group}': {last}"))
    }

    fn drop_state(&self, spec: &DeploymentSpec) -> Result<(), String> {
        state::drop_changelog(&self.0, spec)
    }

    fn catalog(&self) -> Option<Arc<dyn Catalog>> {
        let writer = self
            .0
            .catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(writer)
    }
}
