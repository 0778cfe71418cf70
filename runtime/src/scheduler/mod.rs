//! Deployments as consumer groups: one worker per partition, started, paused, redeployed and
//! stopped here.
//!
//! Workers are tokio tasks that sleep on their partition's listener; the Wasm itself runs on
//! the blocking pool, and a semaphore sized to the cores bounds how many invocations run at
//! once, so a thousand idle partitions cost a thousand parked tasks, not a thousand threads.

mod output;
mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use rill_engine::{Engine, Handler};
use rill_log::Log;

use crate::deployment::{DeploymentSpec, DeploymentStore};
use crate::handler_logs::HandlerLogs;
use crate::metrics::DeploymentMetrics;

/// What the workers of a deployment should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    Pause,
    Stop,
}

/// The live status of one partition's worker.
#[derive(Debug, Clone)]
pub(crate) struct PartitionState {
    /// `starting`, `running`, `backoff`, `paused`, `failed` or `stopped`.
    pub status: &'static str,
    /// The last error, kept until the partition makes progress again.
    pub error: Option<String>,
}

/// What every worker of one deployment shares.
pub(crate) struct DeploymentShared {
    pub log: Arc<Log>,
    spec: RwLock<Arc<DeploymentSpec>>,
    handler: RwLock<Handler>,
    pub metrics: DeploymentMetrics,
    pub logs: HandlerLogs,
    pub partitions: Vec<Mutex<PartitionState>>,
}

impl DeploymentShared {
    pub fn spec(&self) -> Arc<DeploymentSpec> {
        self.spec.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn handler(&self) -> Handler {
        self.handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn count_in(&self, n: u64) {
        self.metrics.records_in.fetch_add(n, Relaxed);
    }
}

struct Running {
    shared: Arc<DeploymentShared>,
    control: watch::Sender<Control>,
    tasks: Vec<JoinHandle<()>>,
}

/// Why a deployment operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The module was rejected by the engine.
    #[error(transparent)]
    Module(#[from] rill_engine::DeployError),
    /// The topic to consume does not exist.
    #[error("unknown topic '{0}': create it first with 'runtime topic create {0}'")]
    UnknownTopic(String),
    /// No deployment has this name.
    #[error("unknown deployment '{0}'")]
    UnknownDeployment(String),
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
    /// Storing the deployment failed.
    #[error(transparent)]
    Store(#[from] crate::deployment::StoreError),
}

/// Per-partition figures for `runtime list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// Committed offset: the next record the group will process.
    pub committed: Option<i64>,
    /// The partition's high watermark.
    pub end: i64,
    /// `end - committed`.
    pub lag: i64,
    /// Worker status.
    pub status: String,
    /// Last error, if the partition is failing.
    pub error: Option<String>,
}

/// A deployment as `runtime list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentInfo {
    /// The spec it was deployed with.
    pub spec: DeploymentSpec,
    /// `running`, `paused`, `failed` (some partition stopped) or `degraded` (retrying).
    pub state: String,
    /// Sum of partition lags.
    pub lag: i64,
    /// Records handled.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Failed invocations.
    pub errors: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// The last error seen.
    pub last_error: Option<String>,
    /// Per partition.
    pub partitions: Vec<PartitionInfo>,
}

/// Owns every running deployment.
pub struct Scheduler {
    log: Arc<Log>,
    engine: Engine,
    store: DeploymentStore,
    cpu: Arc<Semaphore>,
    running: Mutex<BTreeMap<String, Running>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler with nothing deployed. `parallelism` bounds concurrent invocations.
    pub fn new(log: Arc<Log>, engine: Engine, store: DeploymentStore, parallelism: usize) -> Self {
        Scheduler {
            log,
            engine,
            store,
            cpu: Arc::new(Semaphore::new(parallelism.max(1))),
            running: Mutex::new(BTreeMap::new()),
        }
    }

    /// Starts every stored deployment at its committed offsets. A deployment that cannot
    /// start (its topic was deleted, its module no longer loads) is logged and skipped.
    pub fn restore(&self) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let specs = match self.store.load_all() {
            Ok(s) => s,
            Err(e) => return vec![("*".into(), e.to_string())],
        };
        for spec in specs {
            let name = spec.name.clone();
            let result = self
                .store
                .load_module(&spec.module_hash)
                .map_err(DeployError::from)
                .and_then(|wasm| Ok(self.engine.load(&wasm)?))
                .and_then(|handler| self.start(spec, handler));
            if let Err(e) = result {
                tracing::error!(deployment = %name, "cannot restore deployment: {e}");
                failed.push((name, e.to_string()));
            }
        }
        failed
    }

    /// Deploys (or redeploys under the same name, keeping offsets) a module.
    pub async fn deploy(
        &self,
        mut spec: DeploymentSpec,
        wasm: &[u8],
    ) -> Result<DeploymentInfo, DeployError> {
        crate::deployment::validate_name(&spec.name).map_err(DeployError::Invalid)?;
        if self.log.topic(&spec.topic).is_none() {
            return Err(DeployError::UnknownTopic(spec.topic.clone()));
        }
        if spec.max_attempts == 0 || spec.max_batch_records == 0 || spec.max_batch_bytes == 0 {
            return Err(DeployError::Invalid(
                "max attempts, batch records and batch bytes must be at least 1".into(),
            ));
        }
        let handler = self.engine.load(wasm)?;
        // A module that cannot start under this deployment's own limits (a data segment
        // larger than its memory cap) would fail every record forever: refuse it now. A full
        // instance pool is transient, so it is not a reason to refuse.
        let probe = rill_engine::InstanceConfig {
            params: spec.env.clone(),
            limits: spec.limits.clone(),
            ..rill_engine::InstanceConfig::new(spec.name.clone(), 0)
        };
        match handler.instantiate(probe) {
            Ok(_) | Err(rill_engine::InstantiateError::PoolExhausted(_)) => {}
            Err(e) => {
                return Err(DeployError::Invalid(format!(
                    "the module cannot start under this deployment's limits: {e}"
                )));
            }
        }
        // Declared outputs exist from the deploy on, so consumers can subscribe before the
        // first emit. They get one partition and the source topic's flush policy.
        for output in &spec.outputs {
            if self.log.topic(output).is_none() {
                let mut cfg = self
                    .log
                    .topic(&spec.topic)
                    .map(|t| t.config().clone())
                    .unwrap_or_default();
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
        spec.module_hash = handler.hash().to_owned();
        self.store.save_module(&spec.module_hash, wasm)?;
        // Replacing a running deployment: stop its workers first, so two versions never
        // commit for the same group at once. Its offsets stay in the log.
        if let Some(tasks) = self.stop(&spec.name) {
            for t in tasks {
                let _ = t.await;
            }
        }
        self.store.save(&spec)?;
        let name = spec.name.clone();
        self.start(spec, handler)?;
        self.info(&name)
    }

    fn start(&self, spec: DeploymentSpec, handler: Handler) -> Result<(), DeployError> {
        let topic = self
            .log
            .topic(&spec.topic)
            .ok_or_else(|| DeployError::UnknownTopic(spec.topic.clone()))?;
        let n = topic.partitions().len();
        let initial = if spec.paused {
            Control::Pause
        } else {
            Control::Run
        };
        let (control, rx) = watch::channel(initial);
        let shared = Arc::new(DeploymentShared {
            log: self.log.clone(),
            spec: RwLock::new(Arc::new(spec.clone())),
            handler: RwLock::new(handler),
            metrics: DeploymentMetrics::default(),
            logs: HandlerLogs::default(),
            partitions: (0..n)
                .map(|_| {
                    Mutex::new(PartitionState {
                        status: "starting",
                        error: None,
                    })
                })
                .collect(),
        });
        let mut create_config = topic.config().clone();
        create_config.partitions = 1;
        let tasks = topic
            .partitions()
            .iter()
            .map(|p| {
                let w = worker::Worker {
                    dep: shared.clone(),
                    partition: p.clone(),
                    control: rx.clone(),
                    cpu: self.cpu.clone(),
                    outputs: output::Outputs::new(self.log.clone(), create_config.clone()),
                    instance: None,
                    isolate_until: -1,
                    attempts: 0,
                    next: 0,
                    bytes_per_record: 0,
                };
                tokio::spawn(w.run())
            })
            .collect();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.insert(
            spec.name.clone(),
            Running {
                shared,
                control,
                tasks,
            },
        );
        Ok(())
    }

    /// Signals a deployment's workers to stop and hands back their tasks: each finishes its
    /// in-flight invocation, appends and commits, then exits.
    fn stop(&self, name: &str) -> Option<Vec<JoinHandle<()>>> {
        let r = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)?;
        let _ = r.control.send(Control::Stop);
        Some(r.tasks)
    }

    /// Removes a deployment. Its group's committed offsets stay unless `drop_offsets`.
    pub async fn undeploy(&self, name: &str, drop_offsets: bool) -> Result<(), DeployError> {
        let group = self.with(name, |r| r.shared.spec().group.clone())?;
        if let Some(tasks) = self.stop(name) {
            for t in tasks {
                let _ = t.await;
            }
        }
        self.store.remove(name)?;
        if drop_offsets {
            self.log
                .offsets()
                .delete_group(&group)
                .map_err(|e| DeployError::Invalid(format!("cannot drop offsets: {e}")))?;
        }
        Ok(())
    }

    /// Pauses or resumes a deployment; the state survives restarts.
    pub fn set_paused(&self, name: &str, paused: bool) -> Result<DeploymentInfo, DeployError> {
        self.with(name, |r| -> Result<(), DeployError> {
            let mut spec = (*r.shared.spec()).clone();
            spec.paused = paused;
            self.store.save(&spec)?;
            *r.shared.spec.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(spec);
            // Resuming also restarts partitions that stopped on a failure.
            let _ = r
                .control
                .send(if paused { Control::Pause } else { Control::Run });
            Ok(())
        })??;
        self.info(name)
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&Running) -> T) -> Result<T, DeployError> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .get(name)
            .map(f)
            .ok_or_else(|| DeployError::UnknownDeployment(name.to_owned()))
    }

    /// The shared state of a deployment (logs, metrics).
    pub(crate) fn shared(&self, name: &str) -> Result<Arc<DeploymentShared>, DeployError> {
        self.with(name, |r| r.shared.clone())
    }

    /// Names of topics that deployments consume.
    pub fn consumed_topics(&self) -> Vec<(String, String)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .values()
            .map(|r| {
                let s = r.shared.spec();
                (s.topic.clone(), s.name.clone())
            })
            .collect()
    }

    /// One deployment's status.
    pub fn info(&self, name: &str) -> Result<DeploymentInfo, DeployError> {
        let shared = self.shared(name)?;
        Ok(self.describe(&shared))
    }

    /// Every deployment's status, sorted by name.
    pub fn list(&self) -> Vec<DeploymentInfo> {
        let all: Vec<_> = {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running.values().map(|r| r.shared.clone()).collect()
        };
        all.iter().map(|s| self.describe(s)).collect()
    }

    fn describe(&self, shared: &DeploymentShared) -> DeploymentInfo {
        let spec = shared.spec();
        let topic = self.log.topic(&spec.topic);
        let mut partitions = Vec::new();
        for (i, state) in shared.partitions.iter().enumerate() {
            let state = state.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let end = topic
                .as_ref()
                .and_then(|t| t.partition(i as u32))
                .map(|p| p.high_watermark())
                .unwrap_or(0);
            let committed = self.log.offsets().fetch(&spec.group, &spec.topic, i as u32);
            partitions.push(PartitionInfo {
                partition: i as u32,
                committed,
                end,
                lag: (end - committed.unwrap_or(0)).max(0),
                status: state.status.to_owned(),
                error: state.error,
            });
        }
        let state = if spec.paused {
            "paused"
        } else if partitions.iter().any(|p| p.status == "failed") {
            "failed"
        } else if partitions.iter().any(|p| p.status == "backoff") {
            "degraded"
        } else {
            "running"
        };
        DeploymentInfo {
            state: state.to_owned(),
            lag: partitions.iter().map(|p| p.lag).sum(),
            records_in: shared.metrics.records_in.load(Relaxed),
            records_out: shared.metrics.records_out.load(Relaxed),
            errors: shared.metrics.errors_total(),
            dead_lettered: shared.metrics.dead_lettered.load(Relaxed),
            last_error: shared
                .metrics
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            partitions,
            spec: (*spec).clone(),
        }
    }

    /// Renders every deployment's metrics.
    pub fn render_metrics(&self, out: &mut String) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for (name, r) in running.iter() {
            r.shared.metrics.render(name, out);
        }
    }

    /// Stops every worker and waits for in-flight invocations to finish and commit.
    pub async fn shutdown(&self) {
        let all: Vec<_> = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *running).into_values().collect()
        };
        for r in &all {
            let _ = r.control.send(Control::Stop);
        }
        for r in all {
            for t in r.tasks {
                let _ = t.await;
            }
        }
    }
}
