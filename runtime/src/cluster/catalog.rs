//! Deployments kept in the cluster: a compacted topic of one partition (as Kafka Connect
//! keeps its configs) that every host reads from the beginning and applies.
//!
//! Records (documented in docs/cluster.md):
//!
//! - key `module/<sha256>`, value: the module's bytes (never removed: compaction keeps one
//!   copy per hash);
//! - key `deployment/<name>`, value: `{"version": 1, "spec": <DeploymentSpec as JSON>}`;
//!   a tombstone (no value) is an undeploy.
//!
//! A change made on any host is produced here (acks=all), then read back and applied by
//! every host, the writer included; the admin call returns once the writer has applied it,
//! so what it answers is what runs. Records with other keys are skipped with a warning.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Cluster, ClusterError, REQUEST_TIMEOUT};
use crate::deployment::DeploymentSpec;
use crate::host::Host;
use crate::scheduler::{Catalog, DeployError, Pending};

/// The catalog's record format version.
const FORMAT: u32 = 1;

/// How long a change may take to be applied on the host that made it.
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Serialize, Deserialize)]
struct SpecRecord {
    version: u32,
    spec: DeploymentSpec,
}

/// What a catalog record says.
enum Change {
    Module(String, Vec<u8>),
    Deploy(Box<DeploymentSpec>),
    Undeploy(String),
}

fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Change, String> {
    let key = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or("a record without a UTF-8 key")?;
    if let Some(hash) = key.strip_prefix("module/") {
        let wasm = value.ok_or_else(|| format!("module {hash} has no bytes"))?;
        return Ok(Change::Module(hash.to_owned(), wasm.to_vec()));
    }
    if let Some(name) = key.strip_prefix("deployment/") {
        let Some(value) = value else {
            return Ok(Change::Undeploy(name.to_owned()));
        };
        let r: SpecRecord = serde_json::from_slice(value)
            .map_err(|e| format!("deployment '{name}': unreadable spec: {e}"))?;
        if r.version != FORMAT {
            return Err(format!(
                "deployment '{name}': catalog format {} (this host reads {FORMAT})",
                r.version
            ));
        }
        if r.spec.name != name {
            return Err(format!(
                "deployment '{name}': its spec is named '{}'",
                r.spec.name
            ));
        }
        return Ok(Change::Deploy(Box::new(r.spec)));
    }
    Err(format!("unknown catalog key '{key}'"))
}

/// Publishes changes and waits for this host to apply them.
pub(crate) struct CatalogWriter {
    cluster: Arc<Cluster>,
    topic: String,
    /// The offset after the last record this host applied.
    applied: watch::Receiver<i64>,
    /// Modules the catalog is known to hold.
    modules: Mutex<HashSet<String>>,
}

impl CatalogWriter {
    async fn produce(&self, key: &str, value: Option<&[u8]>) -> Result<i64, DeployError> {
        let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(key);
        if let Some(v) = value {
            r = r.payload(v);
        }
        match self.cluster.producer.send(r, REQUEST_TIMEOUT).await {
            Ok(d) => Ok(d.offset),
            Err((e, _)) => Err(DeployError::Invalid(format!(
                "cannot write to the catalog topic '{}' of {}: {e}",
                self.topic,
                self.cluster.bootstrap()
            ))),
        }
    }

    async fn wait_applied(&self, offset: i64) -> Result<(), DeployError> {
        let mut rx = self.applied.clone();
        let waited = tokio::time::timeout(APPLY_TIMEOUT, rx.wait_for(|a| *a > offset)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(DeployError::Invalid(format!(
                "the change was written to the catalog (offset {offset}) but this host did not \
                 apply it within {} s; every host applies it when it reads it",
                APPLY_TIMEOUT.as_secs()
            ))),
        }
    }
}

impl Catalog for CatalogWriter {
    fn publish(
        &self,
        spec: &DeploymentSpec,
        wasm: Option<&[u8]>,
    ) -> Pending<'_, Result<(), DeployError>> {
        let spec = spec.clone();
        let wasm = wasm.map(<[u8]>::to_vec);
        Box::pin(async move {
            if let Some(wasm) = wasm {
                let known = self
                    .modules
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&spec.module_hash);
                if !known {
                    self.produce(&format!("module/{}", spec.module_hash), Some(&wasm))
                        .await?;
                }
            }
            let mut spec = spec;
            // A partition stopped on one host is that host's business (docs/cluster.md).
            spec.stopped.clear();
            let value = serde_json::to_vec(&SpecRecord {
                version: FORMAT,
                spec: spec.clone(),
            })
            .map_err(|e| DeployError::Invalid(format!("cannot encode the spec: {e}")))?;
            let offset = self
                .produce(&format!("deployment/{}", spec.name), Some(&value))
                .await?;
            self.wait_applied(offset).await
        })
    }

    fn withdraw(&self, name: &str) -> Pending<'_, Result<(), DeployError>> {
        let key = format!("deployment/{name}");
        Box::pin(async move {
            let offset = self.produce(&key, None).await?;
            self.wait_applied(offset).await
        })
    }
}

/// Creates the catalog topic if needed, applies every deployment it holds, installs the
/// writer (from then on deploy/undeploy/pause/resume go through the catalog) and keeps
/// following it on a thread of its own.
pub async fn run_catalog(host: Arc<Host>, cluster: Arc<Cluster>) -> Result<(), ClusterError> {
    let topic = cluster.config.catalog_topic.clone();
    let c = cluster.clone();
    let t = topic.clone();
    let consumer = tokio::task::spawn_blocking(move || open(&c, &t))
        .await
        .map_err(|e| catalog_err(&topic, e.to_string()))??;
    let (applied_tx, applied_rx) = watch::channel(-1i64);
    let writer = Arc::new(CatalogWriter {
        cluster: cluster.clone(),
        topic: topic.clone(),
        applied: applied_rx,
        modules: Mutex::new(HashSet::new()),
    });

    // The start-up replay: read to the end first, then apply the last word on each name. A
    // topic just created may not be known to every broker yet: ask again for a while.
    let end = {
        let c = consumer.clone();
        let t = topic.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                match c.fetch_watermarks(&t, 0, REQUEST_TIMEOUT) {
                    Ok((_, end)) => return Ok(end),
                    Err(e) if std::time::Instant::now() > deadline => return Err(e.to_string()),
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        })
        .await
        .map_err(|e| catalog_err(&topic, e.to_string()))?
        .map_err(|e| catalog_err(&topic, e))?
    };
    let mut last: BTreeMap<String, Option<DeploymentSpec>> = BTreeMap::new();
    let mut next = 0i64;
    while next < end {
        let c = consumer.clone();
        let polled = tokio::task::spawn_blocking(move || {
            c.poll(Duration::from_millis(500)).map(|r| {
                r.map(|m| {
                    (
                        m.offset(),
                        m.key().map(<[u8]>::to_vec),
                        m.payload().map(<[u8]>::to_vec),
                    )
                })
            })
        })
        .await
        .map_err(|e| catalog_err(&topic, e.to_string()))?;
        let Some(r) = polled else { continue };
        let (offset, key, value) = r.map_err(|e| catalog_err(&topic, e.to_string()))?;
        next = offset + 1;
        match decode(key.as_deref(), value.as_deref()) {
            Ok(Change::Module(hash, wasm)) => {
                if let Err(e) = host.scheduler.save_module(&hash, &wasm) {
                    tracing::error!("catalog: cannot store module {hash}: {e}");
                }
                writer
                    .modules
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(hash);
            }
            Ok(Change::Deploy(spec)) => {
                last.insert(spec.name.clone(), Some(*spec));
            }
            Ok(Change::Undeploy(name)) => {
                last.insert(name, None);
            }
            Err(e) => tracing::warn!("catalog offset {offset}: {e}; skipped"),
        }
    }
    for (name, spec) in last {
        let applied = match spec {
            Some(spec) => host.scheduler.apply(spec).await,
            None => match host.scheduler.contains(&name) {
                true => host.scheduler.remove(&name).await,
                false => Ok(()),
            },
        };
        if let Err(e) = applied {
            tracing::error!(deployment = %name, "catalog: cannot apply: {e}");
        }
    }
    let _ = applied_tx.send(next);
    *cluster.catalog.lock().unwrap_or_else(|e| e.into_inner()) = Some(writer.clone());
    tracing::info!(topic = %topic, records = next, "catalog applied; following it");

    let runtime = cluster.runtime.clone();
    std::thread::Builder::new()
        .name("rill-catalog".into())
        .spawn(move || follow(&host, &consumer, &writer, &applied_tx, &runtime))
        .map_err(|e| catalog_err(&topic, format!("cannot start its reader: {e}")))?;
    Ok(())
}

fn catalog_err(topic: &str, error: String) -> ClusterError {
    ClusterError::Catalog {
        topic: topic.to_owned(),
        error,
    }
}

/// Creates the topic if it is missing (compacted, replicated on up to three brokers, room
/// for 64 MiB modules) and a reader assigned to it from the beginning.
fn open(cluster: &Cluster, topic: &str) -> Result<Arc<BaseConsumer>, ClusterError> {
    let replication = cluster.replication();
    let max = (super::config::MAX_MODULE_BYTES + (1 << 20)).to_string();
    cluster
        .ensure_topic(
            topic,
            1,
            replication,
            &[("cleanup.policy", "compact"), ("max.message.bytes", &max)],
        )
        .map_err(|e| catalog_err(topic, e))?;
    let consumer: BaseConsumer = cluster
        .config
        .reader(cluster.host_id())
        .create()
        .map_err(|e| catalog_err(topic, e.to_string()))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| catalog_err(topic, e.to_string()))?;
    consumer
        .assign(&tpl)
        .map_err(|e| catalog_err(topic, e.to_string()))?;
    Ok(Arc::new(consumer))
}

/// Applies every record after the start-up replay, in order, until the host stops.
fn follow(
    host: &Arc<Host>,
    consumer: &BaseConsumer,
    writer: &CatalogWriter,
    applied: &watch::Sender<i64>,
    runtime: &tokio::runtime::Handle,
) {
    loop {
        if host.is_stopping() {
            return;
        }
        let Some(r) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = match r {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("catalog: {e}");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        let offset = m.offset();
        if host.is_stopping() {
            // Starting a deployment now would race the shutdown; every host re-reads the
            // catalog when it starts.
            return;
        }
        let result = match decode(m.key(), m.payload()) {
            Ok(Change::Module(hash, wasm)) => {
                let r = host.scheduler.save_module(&hash, &wasm);
                writer
                    .modules
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(hash);
                r.map_err(|e| e.to_string())
            }
            Ok(Change::Deploy(spec)) => {
                let name = spec.name.clone();
                runtime
                    .block_on(host.scheduler.apply(*spec))
                    .map_err(|e| format!("deployment '{name}': {e}"))
            }
            Ok(Change::Undeploy(name)) => match host.scheduler.contains(&name) {
                true => runtime
                    .block_on(host.scheduler.remove(&name))
                    .map_err(|e| format!("undeploy '{name}': {e}")),
                false => Ok(()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!("catalog offset {offset}: {e}");
        }
        let _ = applied.send(offset + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_by_key() {
        assert!(matches!(
            decode(Some(b"module/abc"), Some(b"\0asm")),
            Ok(Change::Module(h, w)) if h == "abc" && w == b"\0asm"
        ));
        assert!(matches!(
            decode(Some(b"deployment/x"), None),
            Ok(Change::Undeploy(n)) if n == "x"
        ));
        assert!(decode(Some(b"other/x"), Some(b"1")).is_err());
        assert!(decode(None, Some(b"1")).is_err());
        assert!(decode(Some(b"deployment/x"), Some(b"{not json")).is_err());
        assert!(decode(Some(b"module/abc"), None).is_err());
    }
}
