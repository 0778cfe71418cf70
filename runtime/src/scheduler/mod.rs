//! Deployments as consumer groups: one worker per partition, started, paused, redeployed and
//! stopped here.
//!
//! Workers are tokio tasks that sleep on their partition's listener; the Wasm itself runs on
//! a fixed set of invocation threads, one per core, fed from one FIFO queue (`cpu.rs`, which
//! also keeps failing deployments to a bounded share), so a thousand idle partitions cost a
//! thousand parked tasks, not a thousand threads.

mod applied;
mod backend;
mod cpu;
mod exactly_once;
mod info;
mod lifecycle;
mod output;
mod schemas;
mod source;
mod state;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{OwnedMutexGuard, watch};

use rill_engine::{Engine, Handler};

use crate::deployment::{DeploymentSpec, DeploymentStore, StoreError};
use crate::handler_logs::HandlerLogs;
use crate::metrics::DeploymentMetrics;

pub(crate) use backend::{Backend, Catalog, Embedded, Pending, Position, Run};
pub use info::{DeploymentInfo, PartitionInfo};
pub(crate) use output::{DeadLetterRecord, OutputError};
pub(crate) use source::{DeadLetter, Sink, Source};
use state::{Broken, Entry, Kept};
pub(crate) use state::{Control, DeploymentShared, PartitionState};

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
    #[error("{0}")]
    Store(StoreError),
    /// A reader schema the module declares cannot read a version registered under its
    /// subject, or its schemas do not parse.
    #[error("{0}")]
    Schema(String),
    /// The module declares schemas, but the schema registry is missing or unreachable.
    #[error("{0}")]
    SchemaRegistry(String),
}

impl From<StoreError> for DeployError {
    fn from(e: StoreError) -> Self {
        DeployError::Store(e)
    }
}

/// Owns every deployment.
pub struct Scheduler {
    backend: Arc<dyn Backend>,
    engine: Engine,
    store: DeploymentStore,
    cpu: Arc<cpu::Cpu>,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// One lock per deployment name, held across deploy, undeploy, pause and resume: without
    /// it two deploys of one name could both start workers on the same group, and an
    /// undeploy racing a redeploy could delete the new spec. Operations on different names
    /// do not wait for each other (a redeploy waits for in-flight invocations, which can take
    /// a CPU limit's time).
    names: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The host's schema registry, once set ([`Scheduler::set_schemas`]).
    schemas: Arc<crate::schema::resolver::SchemaSlot>,
    /// What typed handlers' instances resolve schemas through (over `schemas`).
    resolver: rill_engine::SchemaHandle,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

/// Holds a name's operation lock, and forgets the lock once nobody holds or awaits it.
struct NameGuard<'a> {
    scheduler: &'a Scheduler,
    name: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        let mut names = self
            .scheduler
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        // Waiters clone the lock under `names`, so a count of one (the map's) here means
        // nobody else can be holding or awaiting it.
        if names
            .get(&self.name)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            names.remove(&self.name);
        }
    }
}

impl Scheduler {
    /// A scheduler with nothing deployed, running deployments on `backend`. `parallelism`
    /// bounds concurrent invocations.
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        engine: Engine,
        store: DeploymentStore,
        parallelism: usize,
    ) -> Self {
        let schemas = Arc::new(crate::schema::resolver::SchemaSlot::default());
        Scheduler {
            backend,
            engine,
            store,
            cpu: Arc::new(cpu::Cpu::new(parallelism)),
            entries: Mutex::new(BTreeMap::new()),
            names: Mutex::new(HashMap::new()),
            resolver: rill_engine::SchemaHandle(Arc::new(
                crate::schema::resolver::SourceResolver::new(schemas.clone()),
            )),
            schemas,
        }
    }

    async fn lock_name(&self, name: &str) -> NameGuard<'_> {
        let lock = self
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        NameGuard {
            scheduler: self,
            name: name.to_owned(),
            guard: Some(guard),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, name: &str) -> Option<Entry> {
        self.entries().remove(name)
    }

    /// Starts every stored deployment at its committed offsets. Each spec file is read and
    /// started on its own: one that cannot start (an unreadable file, its topic deleted, its
    /// module gone) is logged, listed as `failed` and returned with why; the others start.
    pub async fn restore(&self) -> Vec<(String, String)> {
        let stored = match self.store.load_all() {
            Ok(s) => s,
            Err(e) => return vec![("*".into(), e.to_string())],
        };
        let mut failed = Vec::new();
        for (name, spec) in stored {
            let _guard = self.lock_name(&name).await;
            let result = match spec {
                Ok(spec) => match self.load_handler(&spec.module_hash).await {
                    Ok(handler) => self.start(spec, handler, None).await,
                    Err(e) => {
                        self.insert_broken(spec, e.to_string(), true, None);
                        Err(e)
                    }
                },
                Err(e) => {
                    self.insert_broken(placeholder_spec(&name), e.to_string(), false, None);
                    Err(e.into())
                }
            };
            if let Err(e) = result {
                tracing::error!(deployment = %name, "cannot restore deployment: {e}");
                failed.push((name, e.to_string()));
            }
        }
        failed
    }

    /// Reads a stored module and compiles it (or loads it from the compile cache), on the
    /// blocking pool: compiling can take seconds.
    async fn load_handler(&self, hash: &str) -> Result<Handler, DeployError> {
        let (store, engine, hash) = (self.store.clone(), self.engine.clone(), hash.to_owned());
        tokio::task::spawn_blocking(move || {
            let wasm = store.load_module(&hash)?;
            Ok(engine.load(&wasm)?)
        })
        .await
        .map_err(|e| DeployError::Invalid(format!("loading the module failed: {e}")))?
    }

    /// Deploys a module under `name`, or redeploys it (keeping the group's offsets, its
    /// counters and its handler logs). `make_spec` is given the current spec, if there is
    /// one, and is called under the name's lock so nothing changes it meanwhile.
    pub async fn deploy(
        &self,
        name: &str,
        wasm: &[u8],
        reset: bool,
        make_spec: impl FnOnce(Option<&DeploymentSpec>) -> DeploymentSpec,
    ) -> Result<DeploymentInfo, DeployError> {
        crate::deployment::validate_name(name).map_err(DeployError::Invalid)?;
        let guard = self.lock_name(name).await;
        let existing = self
            .with(name, |e| {
                let readable = e.broken.as_ref().is_none_or(|b| b.spec_readable);
                readable.then(|| (*e.shared.spec()).clone())
            })
            .ok()
            .flatten();
        let mut spec = make_spec(existing.as_ref());
        if spec.name != name {
            return Err(DeployError::Invalid(format!(
                "the spec is named '{}', not '{name}'",
                spec.name
            )));
        }
        if spec.max_attempts == 0 || spec.max_batch_records == 0 || spec.max_batch_bytes == 0 {
            return Err(DeployError::Invalid(
                "max attempts, batch records and batch bytes must be at least 1".into(),
            ));
        }
        let backend = self.backend.clone();
        let checked = spec.clone();
        tokio::task::spawn_blocking(move || backend.prepare(&checked))
            .await
            .map_err(|e| DeployError::Invalid(format!("checking the topics failed: {e}")))??;
        let handler = self.compile_and_probe(&spec, wasm).await?;
        self.check_schemas(wasm).await?;
        spec.module_hash = handler.hash().to_owned();
        spec.state = handler.uses_state();
        if let Some(catalog) = self.backend.catalog() {
            if reset {
                return Err(DeployError::Invalid(
                    "--reset is not available in cluster mode yet: reset the group's offsets \
                     with kafka-consumer-groups --reset-offsets instead"
                        .into(),
                ));
            }
            // Every host applies it from the catalog, this one too: the name's lock is taken
            // again there.
            drop(guard);
            catalog.publish(&spec, Some(wasm)).await?;
            return self.info(name);
        }
        self.replace(spec, handler, existing, reset).await?;
        self.info(name)
    }

    /// Stops what runs under the spec's name, saves the spec and starts it. Callers hold
    /// the name's lock.
    async fn replace(
        &self,
        spec: DeploymentSpec,
        handler: Handler,
        existing: Option<DeploymentSpec>,
        reset: bool,
    ) -> Result<(), DeployError> {
        // Replacing a deployment: stop its workers first, so two versions never commit for
        // the same group at once, and so none of them writes the old spec after the new one
        // is saved. Its offsets stay, unless this is a replay.
        let old = self.take(&spec.name);
        let kept = old
            .as_ref()
            .map(|o| (o.shared.metrics.clone(), o.shared.logs.clone()));
        if let Some(old) = old {
            old.stop().await;
        }
        if reset {
            // Nothing of it runs now: forget where its group is and what its state holds.
            if let Err(e) = self.forget_progress(&spec).await {
                let listed = existing.unwrap_or(spec);
                self.insert_broken(listed, format!("replay failed: {e}"), true, kept);
                return Err(e);
            }
        }
        if let Err(e) = self.store.save(&spec) {
            // Keep it listed (as failed), whatever version it is now.
            let listed = existing.unwrap_or(spec);
            self.insert_broken(listed, format!("redeploy failed: {e}"), true, kept);
            return Err(e.into());
        }
        self.start(spec, handler, kept).await
    }

    /// Compiles a module and instantiates it once under the deployment's own limits, on the
    /// blocking pool (compiling takes a while; instantiating runs the guest's initialiser),
    /// then stores its bytes.
    async fn compile_and_probe(
        &self,
        spec: &DeploymentSpec,
        wasm: &[u8],
    ) -> Result<Handler, DeployError> {
        let (engine, store, wasm) = (self.engine.clone(), self.store.clone(), wasm.to_vec());
        let probe = rill_engine::InstanceConfig {
            params: spec.env.clone(),
            limits: spec.limits.clone(),
            ..rill_engine::InstanceConfig::new(spec.name.clone(), 0)
        };
        tokio::task::spawn_blocking(move || {
            let handler = engine.load(&wasm)?;
            // A module that cannot start under this deployment's own limits (a data segment
            // larger than its memory cap) would fail every record forever: refuse it now. A
            // full instance pool is transient, so it is not a reason to refuse.
            match handler.instantiate(probe) {
                Ok(_) | Err(rill_engine::InstantiateError::PoolExhausted(_)) => {}
                Err(e) => {
                    return Err(DeployError::Invalid(format!(
                        "the module cannot start under this deployment's limits: {e}"
                    )));
                }
            }
            store.save_module(handler.hash(), &wasm)?;
            Ok(handler)
        })
        .await
        .map_err(|e| DeployError::Invalid(format!("compiling the module failed: {e}")))?
    }

    /// Starts the workers of `spec`. Whatever ran under this name before is stopped first
    /// (callers hold the name's lock and normally have done so already). If the topic is
    /// gone, the deployment is kept as broken and the error returned.
    async fn start(
        &self,
        spec: DeploymentSpec,
        handler: Handler,
        kept: Option<Kept>,
    ) -> Result<(), DeployError> {
        let mut kept = kept;
        if let Some(prev) = self.take(&spec.name) {
            kept = kept.or_else(|| Some((prev.shared.metrics.clone(), prev.shared.logs.clone())));
            prev.stop().await;
        }
        let Some(n) = self.backend.partitions(&spec.topic) else {
            let e = DeployError::UnknownTopic(spec.topic.clone());
            self.insert_broken(spec, e.to_string(), true, kept);
            return Err(e);
        };
        let mut spec = spec;
        spec.state = handler.uses_state();
        let state = if spec.state {
            let backend = self.backend.clone();
            let (checked, dir) = (spec.clone(), self.store.state_dir(&spec.name));
            let made = tokio::task::spawn_blocking(move || {
                let changelog = backend.changelog(&checked, n)?;
                Ok::<_, DeployError>(crate::state::DeploymentState::new(
                    &checked.name,
                    n,
                    dir,
                    changelog,
                ))
            })
            .await
            .map_err(|e| DeployError::Invalid(format!("preparing the state failed: {e}")))
            .and_then(|r| r);
            match made {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    self.insert_broken(spec, e.to_string(), true, kept);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let (metrics, logs) = kept.unwrap_or_default();
        let initial = if spec.paused {
            Control::Pause
        } else {
            Control::Run
        };
        let (control, rx) = watch::channel(initial);
        let name = spec.name.clone();
        let shared = Arc::new(DeploymentShared {
            store: self.store.clone(),
            spec: RwLock::new(Arc::new(spec)),
            spec_write: Mutex::new(()),
            metrics,
            logs,
            partitions: (0..n)
                .map(|_| {
                    Mutex::new(PartitionState {
                        status: "starting",
                        error: None,
                    })
                })
                .collect(),
            state,
            schemas: self.resolver.clone(),
        });
        let run = Run {
            shared: shared.clone(),
            handler,
            control: rx,
            cpu: self.cpu.clone(),
        };
        let tasks = match self.backend.start(run) {
            Ok(tasks) => tasks,
            Err(e) => {
                let spec = (*shared.spec()).clone();
                let kept = Some((shared.metrics.clone(), shared.logs.clone()));
                self.insert_broken(spec, e.to_string(), true, kept);
                return Err(e);
            }
        };
        let entry = Entry {
            shared,
            control,
            tasks,
            broken: None,
        };
        self.entries().insert(name, entry);
        Ok(())
    }

    /// Lists a deployment that does not run, with why.
    fn insert_broken(
        &self,
        spec: DeploymentSpec,
        error: String,
        spec_readable: bool,
        kept: Option<Kept>,
    ) {
        let (metrics, logs) = kept.unwrap_or_default();
        *metrics.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.clone());
        let name = spec.name.clone();
        let shared = Arc::new(DeploymentShared {
            store: self.store.clone(),
            spec: RwLock::new(Arc::new(spec)),
            spec_write: Mutex::new(()),
            metrics,
            logs,
            partitions: Vec::new(),
            state: None,
            schemas: self.resolver.clone(),
        });
        let entry = Entry {
            shared,
            control: watch::channel(Control::Stop).0,
            tasks: Vec::new(),
            broken: Some(Broken {
                error,
                spec_readable,
            }),
        };
        // Nothing runs under a broken entry's name (callers took the old one out), so a
        // replaced entry here has no tasks to wait for.
        self.entries().insert(name, entry);
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&Entry) -> T) -> Result<T, DeployError> {
        self.entries()
            .get(name)
            .map(f)
            .ok_or_else(|| DeployError::UnknownDeployment(name.to_owned()))
    }

    /// Forgets a stopped deployment's progress: its group's offsets, its state's changelog
    /// and its snapshots (a replay, or an undeploy that drops offsets).
    pub(crate) async fn forget_progress(&self, spec: &DeploymentSpec) -> Result<(), DeployError> {
        let backend = self.backend.clone();
        let (spec, dir) = (spec.clone(), self.store.state_dir(&spec.name));
        tokio::task::spawn_blocking(move || {
            backend.drop_offsets(&spec.group)?;
            backend.drop_state(&spec)?;
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("cannot remove {}: {e}", dir.display())),
            }
        })
        .await
        .map_err(|e| DeployError::Invalid(format!("cannot forget progress: {e}")))?
        .map_err(DeployError::Invalid)
    }

    /// The durable state of deployment `name`, for queries.
    pub(crate) fn state(
        &self,
        name: &str,
    ) -> Result<Arc<crate::state::DeploymentState>, DeployError> {
        self.with(name, |e| e.shared.state.clone())?.ok_or_else(|| {
            DeployError::Invalid(format!(
                "deployment '{name}' keeps no state: its module does not use the state functions"
            ))
        })
    }

    pub(crate) fn handler_logs(&self, name: &str) -> Result<Arc<HandlerLogs>, DeployError> {
        self.with(name, |e| e.shared.logs.clone())
    }

    /// Topics that deployments consume, with the consuming deployment's name.
    pub fn consumed_topics(&self) -> Vec<(String, String)> {
        self.entries()
            .values()
            .filter(|e| e.broken.as_ref().is_none_or(|b| b.spec_readable))
            .map(|e| {
                let s = e.shared.spec();
                (s.topic.clone(), s.name.clone())
            })
            .collect()
    }

    /// One deployment's status.
    pub fn info(&self, name: &str) -> Result<DeploymentInfo, DeployError> {
        let (shared, broken) = self.with(name, |e| {
            (e.shared.clone(), e.broken.as_ref().map(|b| b.error.clone()))
        })?;
        Ok(info::describe(&*self.backend, &shared, broken.as_deref()))
    }

    /// Every deployment's status, sorted by name.
    pub fn list(&self) -> Vec<DeploymentInfo> {
        let all: Vec<_> = self
            .entries()
            .values()
            .map(|e| (e.shared.clone(), e.broken.as_ref().map(|b| b.error.clone())))
            .collect();
        all.iter()
            .map(|(s, b)| info::describe(&*self.backend, s, b.as_deref()))
            .collect()
    }

    /// Renders every deployment's metrics, one family at a time.
    pub fn render_metrics(&self, out: &mut String) {
        let all: Vec<(String, Arc<DeploymentMetrics>)> = self
            .entries()
            .iter()
            .map(|(name, e)| (name.clone(), e.shared.metrics.clone()))
            .collect();
        crate::metrics::render_deployments(&all, out);
        let states: Vec<(String, Arc<crate::state::DeploymentState>)> = self
            .entries()
            .iter()
            .filter_map(|(name, e)| Some((name.clone(), e.shared.state.clone()?)))
            .collect();
        crate::state::render_metrics(&states, out);
    }

    /// Stops every worker and waits for in-flight invocations to finish and commit.
    pub async fn shutdown(&self) {
        let all: Vec<Entry> = std::mem::take(&mut *self.entries()).into_values().collect();
        for e in &all {
            let _ = e.control.send(Control::Stop);
        }
        for e in all {
            e.stop().await;
        }
    }
}

/// The spec listed for a deployment whose spec file cannot be read: its name, nothing else.
fn placeholder_spec(name: &str) -> DeploymentSpec {
    DeploymentSpec {
        name: name.to_owned(),
        topic: String::new(),
        group: name.to_owned(),
        from: crate::deployment::StartFrom::Earliest,
        outputs: Vec::new(),
        env: Vec::new(),
        limits: rill_engine::Limits::default(),
        max_attempts: 0,
        on_failure: crate::deployment::OnFailure::default(),
        guarantee: crate::deployment::Guarantee::default(),
        max_batch_records: 0,
        max_batch_bytes: 0,
        linger_ms: 0,
        backoff_initial_ms: crate::deployment::DEFAULT_BACKOFF_MS,
        backoff_max_ms: crate::deployment::DEFAULT_BACKOFF_MAX_MS,
        module_hash: String::new(),
        paused: false,
        stopped: Vec::new(),
        state: false,
    }
}
