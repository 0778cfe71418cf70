//! The broker object and its accept loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rill_log::Log;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::KafkaConfig;
use crate::error::KafkaError;
use crate::groups::Coordinator;
use crate::stats::{self, KafkaStats};
use crate::validation::RecordValidator;

/// How long shutdown waits for open connections to finish their current request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A Kafka broker over one [`Log`]: the state shared by every connection (group coordinator,
/// producer ids, counters). Create it with [`Broker::new`], keep an `Arc` to read
/// [`stats`](Broker::stats), and run it with [`Broker::serve`].
#[derive(Debug)]
pub struct Broker {
    pub(crate) log: Arc<Log>,
    pub(crate) cfg: KafkaConfig,
    pub(crate) stats: KafkaStats,
    /// Host and port given to clients; set by `serve` from the bound listener so that
    /// port 0 works.
    advertised: OnceLock<(String, i32)>,
    pub(crate) groups: Coordinator,
    /// Request memory, in KiB units: a frame's bytes are reserved before it is read.
    pub(crate) request_memory: Arc<Semaphore>,
    /// Checks batches for topics that validate records against schemas; set once by the
    /// host. Without one, such topics refuse every batch (never append unchecked).
    validator: OnceLock<Arc<dyn RecordValidator>>,
    /// Topics the host owns (the schema registry's `_schemas`): Kafka clients may read
    /// them, never produce to or delete them.
    reserved: std::sync::RwLock<Vec<String>>,
}

impl Broker {
    /// A broker serving `log` with `cfg`. Fails only if `cfg` is unusable.
    pub fn new(log: Arc<Log>, cfg: KafkaConfig) -> Result<Arc<Broker>, KafkaError> {
        if cfg.default_partitions == 0 {
            return Err(KafkaError::Config(
                "default_partitions must be at least 1".into(),
            ));
        }
        if cfg.max_request_bytes < 1024 {
            return Err(KafkaError::Config(
                "max_request_bytes must be at least 1024".into(),
            ));
        }
        if cfg.max_connections == 0 {
            return Err(KafkaError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        let groups = Coordinator::new(Duration::from_millis(cfg.group_initial_rebalance_delay_ms));
        let memory_kib =
            u32::try_from(cfg.max_inflight_request_bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let request_memory = Arc::new(Semaphore::new(memory_kib.max(1) as usize));
        Ok(Arc::new(Broker {
            request_memory,
            log,
            cfg,
            stats: KafkaStats::default(),
            advertised: OnceLock::new(),
            groups,
            validator: OnceLock::new(),
            reserved: Default::default(),
        }))
    }

    /// Size of the request-memory budget in KiB.
    pub(crate) fn request_memory_kib(&self) -> usize {
        self.cfg
            .max_inflight_request_bytes
            .div_ceil(1024)
            .clamp(1, u32::MAX as usize)
    }

    /// Live counters, for the host's `/metrics`.
    pub fn stats(&self) -> &KafkaStats {
        &self.stats
    }

    /// Installs the checker of topics with schema validation on. Only the first call takes
    /// effect; returns whether this one did.
    pub fn set_validator(&self, validator: Arc<dyn RecordValidator>) -> bool {
        self.validator.set(validator).is_ok()
    }

    /// Reserves `topic` for the host: produce and DeleteTopics are refused with
    /// INVALID_TOPIC_EXCEPTION, as Kafka refuses them on its internal topics.
    pub fn reserve_topic(&self, topic: &str) {
        self.reserved
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(topic.to_string());
    }

    /// Whether `topic` is reserved for the host.
    pub(crate) fn is_reserved(&self, topic: &str) -> bool {
        self.reserved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|t| t == topic)
    }

    /// The installed schema validator, if any.
    pub(crate) fn validator(&self) -> Option<&Arc<dyn RecordValidator>> {
        self.validator.get()
    }

    /// The log this broker serves.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// Host and port clients are told to connect to.
    pub(crate) fn advertised(&self) -> (&str, i32) {
        match self.advertised.get() {
            Some((h, p)) => (h, *p),
            None => ("127.0.0.1", i32::from(self.cfg.listen.port())),
        }
    }

    /// Serves Kafka clients on `listener` until `shutdown` completes, then closes every
    /// connection (waiting up to 5 s for requests in progress) and returns.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), KafkaError> {
        let local = listener.local_addr()?;
        let _ = self.advertised.set(advertise(&self.cfg, local));
        let (host, port) = self.advertised();
        tracing::info!(%local, advertised = %format!("{host}:{port}"), "kafka listener up");

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(crate::groups::run_ticker(self.clone(), stop_rx.clone()));
        let slots = Arc::new(Semaphore::new(self.cfg.max_connections));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                a = listener.accept() => a,
            };
            // Reap finished connections so the set does not grow without bound.
            while tasks.try_join_next().is_some() {}
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE/ENFILE: back off instead of spinning; the listener
                    // itself is still good.
                    tracing::warn!("kafka accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                stats::add(&self.stats.connections_refused, 1);
                tracing::warn!(%peer, max = self.cfg.max_connections, "kafka connection refused: too many connections");
                drop(stream);
                continue;
            };
            stats::add(&self.stats.connections_accepted, 1);
            let broker = self.clone();
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                stats::add(&broker.stats.connections_open, 1);
                tokio::select! {
                    () = crate::conn::run(broker.clone(), stream, peer) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
                broker
                    .stats
                    .connections_open
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                drop(permit);
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("kafka connections did not close in time; abandoning them");
        }
        tracing::info!("kafka listener stopped");
        Ok(())
    }
}

fn advertise(cfg: &KafkaConfig, local: SocketAddr) -> (String, i32) {
    let host = match &cfg.advertised_host {
        Some(h) => h.clone(),
        None if local.ip().is_unspecified() => "127.0.0.1".to_string(),
        None => local.ip().to_string(),
    };
    (host, i32::from(local.port()))
}
