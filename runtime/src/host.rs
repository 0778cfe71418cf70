//! The host: opens the data dir, recovers the log and the deployments, and serves the admin
//! API and the Kafka listener until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;

use rill_engine::{Engine, EngineConfig};
use rill_log::{Log, LogOptions};

use crate::config::Config;
use crate::deployment::DeploymentStore;
use crate::scheduler::Scheduler;

/// Why the host could not start or stopped with an error.
///
/// Each message already names its cause, so no variant exposes a `source`: the binary
/// prints an error with its whole chain, which would say the cause twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Another host already uses this data dir.
    #[error("data dir {0} is in use by another host (lock file {0}/LOCK is held)")]
    Locked(PathBuf),
    /// The data dir could not be prepared.
    #[error("cannot use data dir {path}: {cause}")]
    DataDir {
        /// The data dir.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// Opening the log failed.
    #[error("cannot open the log: {0}")]
    Log(rill_log::OpenError),
    /// The Wasm engine could not start.
    #[error("cannot start the Wasm engine: {0}")]
    Engine(rill_engine::EngineError),
    /// The deployment store could not be read.
    #[error("{0}")]
    Store(crate::deployment::StoreError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} for the {what}: {cause}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// The admin server failed.
    #[error("admin API failed: {0}")]
    Admin(std::io::Error),
    /// The Kafka front door could not start.
    #[error("cannot start the Kafka listener: {0}")]
    Kafka(rill_kafka::KafkaError),
    /// Cluster mode could not start.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The schema registry's store could not be read.
    #[error("cannot open the schema registry: {0}")]
    SchemaRegistry(String),
}

impl From<rill_log::OpenError> for HostError {
    fn from(e: rill_log::OpenError) -> Self {
        HostError::Log(e)
    }
}

impl From<rill_engine::EngineError> for HostError {
    fn from(e: rill_engine::EngineError) -> Self {
        HostError::Engine(e)
    }
}

impl From<crate::deployment::StoreError> for HostError {
    fn from(e: crate::deployment::StoreError) -> Self {
        HostError::Store(e)
    }
}

impl From<rill_kafka::KafkaError> for HostError {
    fn from(e: rill_kafka::KafkaError) -> Self {
        HostError::Kafka(e)
    }
}

/// Everything the doors (admin API, Kafka listener) and the scheduler share.
pub struct Host {
    /// The configuration the host runs with.
    pub config: Config,
    /// The log.
    pub log: Arc<Log>,
    /// Deployments.
    pub scheduler: Scheduler,
    /// When the host started.
    pub started: Instant,
    /// Deployments that could not be restored at start-up, with why.
    pub restore_failures: Vec<(String, String)>,
    /// The Kafka listener's address, when it runs.
    pub kafka_addr: Option<SocketAddr>,
    /// The Kafka front door, when it runs (its counters feed `/metrics`).
    pub kafka: Option<Arc<rill_kafka::Broker>>,
    /// Cluster mode: the Kafka cluster deployments run on.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Where schemas come from: this host's registry, an external one, or none.
    pub schemas: Option<Arc<dyn crate::schema::SchemaSource>>,
    /// This host's own registry, when it serves one.
    pub schema_registry: Option<Arc<crate::schema::registry::Registry>>,
    /// The registry's address, when this host serves one.
    pub schema_registry_addr: Option<SocketAddr>,
    /// Checks records bound for topics with schema validation on, at both doors.
    pub schema_validator: Arc<crate::schema::validation::Validator>,
    /// Becomes true when the host starts shutting down, so long polls end at once.
    stopping: watch::Receiver<bool>,
}

impl Host {
    /// Whether the host is shutting down.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves when the host starts shutting down.
    pub async fn stopping(&self) {
        let mut rx = self.stopping.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

/// The addresses a started host listens on (the real ports, when port 0 was asked for).
#[derive(Debug, Clone)]
pub struct Listening {
    /// The admin API.
    pub admin: SocketAddr,
    /// The Kafka listener, when on.
    pub kafka: Option<SocketAddr>,
    /// This host's schema registry, when it serves one.
    pub schema_registry: Option<SocketAddr>,
    /// The external schema registry the host uses instead, if any.
    pub schema_registry_url: Option<String>,
}

/// Runs a host until `shutdown` resolves, then stops cleanly: listeners close, every worker
/// finishes (and commits) its in-flight invocation, and the log writes its recovery
/// checkpoint, so the next start scans nothing. `ready` is called once with the bound
/// addresses, so callers that asked for port 0 learn the real ports.
///
/// `shutdown` is watched from the start: if it resolves during recovery or restore, the host
/// finishes starting (the log must be consistent to close it) and then stops at once, without
/// serving.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Listening),
) -> Result<(), HostError> {
    // One signal fans out to every part.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let mut config = config;
    if config.cluster.is_some() {
        // Records live in the cluster: the embedded log's Kafka door would only confuse.
        config.kafka.enabled = false;
    }
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|cause| HostError::DataDir {
        path: data_dir.clone(),
        cause,
    })?;
    let _lock = lock_data_dir(&data_dir)?;

    let opened = Instant::now();
    let log_options = LogOptions::default();
    let max_append_bytes = log_options.max_batch_bytes;
    let log = Arc::new(Log::open(&data_dir, log_options)?);
    for event in log.recovery_report() {
        tracing::warn!("recovery: {event}");
    }
    // From here on the log is open: whatever happens, it is closed cleanly before returning,
    // so the next start needs no recovery.
    let served = serve(
        config,
        log.clone(),
        max_append_bytes,
        opened,
        stop_rx,
        ready,
    )
    .await;
    close_log(&log);
    if served.is_ok() {
        tracing::info!("stopped cleanly");
    }
    served
}

/// Everything between opening the log and closing it.
async fn serve(
    config: Config,
    log: Arc<Log>,
    max_append_bytes: usize,
    opened: Instant,
    stop_rx: watch::Receiver<bool>,
    ready: impl FnOnce(&Listening),
) -> Result<(), HostError> {
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let data_dir = config.data_dir.clone();
    let engine = Engine::new(EngineConfig {
        max_instances: config.max_instances,
        cache_dir: Some(data_dir.join("cache")),
        perf_map: config.wasm_perf_map,
        ..EngineConfig::default()
    })?;
    let store = DeploymentStore::open(&data_dir)?;

    let (admin_listener, kafka_listener) = bind(&config).await?;
    let admin_addr = admin_listener.local_addr().map_err(HostError::Admin)?;
    let kafka_addr = kafka_listener.as_ref().and_then(|l| l.local_addr().ok());
    let schemas = open_schemas(&config, &log).await?;

    // Cluster mode: deployments run on the Kafka cluster; the embedded log stays for the
    // data dir's own use, its Kafka door off.
    let cluster = match &config.cluster {
        Some(c) => {
            let (c, id) = (c.clone(), crate::cluster::host_id(c, admin_addr));
            let connected =
                tokio::task::spawn_blocking(move || crate::cluster::Cluster::connect(c, id))
                    .await
                    .map_err(|e| {
                        HostError::Cluster(crate::cluster::ClusterError::Config(e.to_string()))
                    })??;
            Some(connected)
        }
        None => None,
    };
    let backend: Arc<dyn crate::scheduler::Backend> = match &cluster {
        Some(c) => Arc::new(crate::cluster::ClusterBackend(c.clone())),
        None => Arc::new(crate::scheduler::Embedded {
            log: log.clone(),
            max_append_bytes,
        }),
    };
    let scheduler = Scheduler::new(backend, engine, store, config.parallelism());
    // Typed handlers (deploy-time checks, `schema_get`/`schema_id`) use the same registry.
    if let Some(source) = &schemas.source {
        scheduler.set_schemas(source.clone());
    }

    let schema_validator = Arc::new(crate::schema::validation::Validator::new(
        schemas.source.clone(),
    ));
    let broker = match &kafka_listener {
        Some(_) => {
            let mut cfg = config.kafka.config.clone();
            if let Some(a) = kafka_addr {
                // Clients are told to reconnect to the address actually bound (port 0 → real).
                cfg.listen = a;
            }
            // Topics created over Kafka get the host's defaults, like topics created here:
            // `[kafka] default_partitions` when set, else `[defaults] partitions`.
            cfg.default_partitions = config.kafka_default_partitions();
            cfg.topic_defaults = Some(rill_log::TopicConfig {
                partitions: cfg.default_partitions,
                flush: config.defaults.flush,
                ..rill_log::TopicConfig::default()
            });
            let broker = rill_kafka::Broker::new(log.clone(), cfg)?;
            broker.set_validator(schema_validator.clone());
            if schemas.registry.is_some() {
                broker.reserve_topic(crate::schema::store::TOPIC);
            }
            Some(broker)
        }
        None => None,
    };

    // In cluster mode the catalog, not the data dir, says what runs (below).
    let restore_failures = match cluster {
        Some(_) => Vec::new(),
        None => scheduler.restore().await,
    };
    tracing::info!(
        elapsed_ms = opened.elapsed().as_millis() as u64,
        deployments = scheduler.list().len(),
        "recovered log and deployments"
    );

    let host = Arc::new(Host {
        stopping: stop_rx.clone(),
        config,
        log: log.clone(),
        scheduler,
        started: Instant::now(),
        restore_failures,
        kafka_addr,
        kafka: broker.clone(),
        cluster: cluster.clone(),
        schemas: schemas.source.clone(),
        schema_registry: schemas.registry.clone(),
        schema_registry_addr: schemas.addr,
        schema_validator,
    });
    if let Some(c) = &cluster {
        crate::cluster::run_catalog(host.clone(), c.clone()).await?;
        c.spawn_health();
    }

    let kafka_task = kafka_listener.zip(broker).map(|(listener, broker)| {
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = broker.serve(listener, stop).await {
                tracing::error!("Kafka listener stopped: {e}");
            }
        })
    });
    let retention_task = tokio::spawn(retention_loop(host.clone(), stopped(stop_rx.clone())));
    let registry_task = schemas
        .listener
        .zip(schemas.registry)
        .map(|(listener, registry)| {
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                let app = crate::schema::server::router(registry);
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!("schema registry stopped: {e}");
                }
            })
        });

    ready(&Listening {
        admin: admin_addr,
        kafka: kafka_addr,
        schema_registry: schemas.addr,
        schema_registry_url: host.config.schema_registry.url.clone(),
    });
    let app = crate::admin::router(host.clone());
    // An admin server that fails still lets everything below run: workers finish and
    // commit before the error is returned (and the caller closes the log).
    let served = axum::serve(admin_listener, app)
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .await
        .map_err(HostError::Admin);
    if let Err(e) = &served {
        tracing::error!("{e}");
    }

    tracing::info!("shutting down: finishing in-flight invocations");
    host.scheduler.shutdown().await;
    if let Some(t) = kafka_task {
        let _ = t.await;
    }
    if let Some(t) = registry_task {
        let _ = t.await;
    }
    // Awaited, not aborted: aborting would not stop a pass already running on the blocking
    // pool, and the log must not close under it. The loop ends at the stop signal, or at the
    // end of its current pass.
    let _ = retention_task.await;
    served
}

/// The host's schemas: its own registry (served on its listener), an external one, or none.
struct Schemas {
    source: Option<Arc<dyn crate::schema::SchemaSource>>,
    registry: Option<Arc<crate::schema::registry::Registry>>,
    listener: Option<TcpListener>,
    addr: Option<SocketAddr>,
}

async fn open_schemas(config: &Config, log: &Arc<Log>) -> Result<Schemas, HostError> {
    let section = &config.schema_registry;
    if let Some(url) = &section.url {
        let client = crate::schema::client::RegistryClient::new(url);
        return Ok(Schemas {
            source: Some(Arc::new(client)),
            registry: None,
            listener: None,
            addr: None,
        });
    }
    if !section.served(config.cluster.is_some()) {
        return Ok(Schemas {
            source: None,
            registry: None,
            listener: None,
            addr: None,
        });
    }
    let store = crate::schema::store::LogStore::new(log.clone());
    let (registry, warnings) = crate::schema::registry::Registry::open(Box::new(store))
        .map_err(|e| HostError::SchemaRegistry(e.message))?;
    for w in warnings {
        tracing::warn!("schema registry: {w}");
    }
    let listener = TcpListener::bind(section.listen)
        .await
        .map_err(|cause| HostError::Bind {
            what: "schema registry",
            addr: section.listen,
            cause,
        })?;
    let addr = listener.local_addr().ok();
    let registry = Arc::new(registry);
    Ok(Schemas {
        source: Some(registry.clone()),
        registry: Some(registry),
        listener: Some(listener),
        addr,
    })
}

fn close_log(log: &Log) {
    if let Err(e) = log.close() {
        tracing::error!("closing the log failed: {e}");
    }
}

/// Binds the admin API and (when enabled) the Kafka listener.
async fn bind(config: &Config) -> Result<(TcpListener, Option<TcpListener>), HostError> {
    let admin = TcpListener::bind(config.admin_addr)
        .await
        .map_err(|cause| HostError::Bind {
            what: "admin API",
            addr: config.admin_addr,
            cause,
        })?;
    let kafka = if config.kafka.enabled {
        let addr = config.kafka.config.listen;
        Some(
            TcpListener::bind(addr)
                .await
                .map_err(|cause| HostError::Bind {
                    what: "Kafka listener",
                    addr,
                    cause,
                })?,
        )
    } else {
        None
    };
    Ok((admin, kafka))
}

async fn retention_loop(host: Arc<Host>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    // The config refuses 0; the floor keeps a zero from spinning if one gets here anyway.
    let every = host
        .config
        .retention_check_interval
        .max(std::time::Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
        let log = host.log.clone();
        match tokio::task::spawn_blocking(move || log.enforce_retention()).await {
            Ok(Ok(report)) => tracing::debug!(?report, "retention"),
            Ok(Err(e)) => tracing::error!("retention failed: {e}"),
            Err(e) => tracing::error!("retention task failed: {e}"),
        }
        // Compaction of `compact` topics on the same schedule; a pass is skipped cheaply
        // when no segment was sealed since the last and nothing became due.
        let log = host.log.clone();
        match tokio::task::spawn_blocking(move || log.compact()).await {
            Ok(Ok(report)) if report.ran => tracing::debug!(?report, "compaction"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("compaction failed: {e}"),
            Err(e) => tracing::error!("compaction task failed: {e}"),
        }
    }
}

/// Holds an exclusive lock on `<data>/LOCK` for as long as the returned file lives, so two
/// hosts never write one log.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, HostError> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|cause| HostError::DataDir {
            path: path.clone(),
            cause,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(HostError::Locked(dir.to_owned())),
        Err(std::fs::TryLockError::Error(cause)) => Err(HostError::DataDir { path, cause }),
    }
}
