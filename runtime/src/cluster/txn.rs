//! Exactly-once deployments in cluster mode: one transactional producer per partition
//! instance, its `transactional.id` `rill-<group>-<topic>-<partition>`.
//!
//! The id depends only on the partition, not on the host, so whichever host owns the
//! partition next initialises the same id: Kafka bumps its epoch, aborts whatever the
//! previous owner left open and fences that owner's producer for good (Kafka Streams'
//! EOS-v1 layout, chosen for this fencing; docs/cluster.md). The new owner initialises the
//! producer before it reads the group's committed offset (`ClusterSource::start_offset`),
//! so that offset is one no zombie can move any more.
//!
//! A turn's transaction begins at its first output or dead letter (`ClusterSink`), and its
//! commit carries the group's position (`send_offsets_to_transaction` with the member's
//! group metadata).

use std::sync::{Mutex, OnceLock};

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};

use super::REQUEST_TIMEOUT;
use crate::scheduler::OutputError;

/// The transactional id of a deployment's partition instance.
pub(crate) fn transactional_id(group: &str, topic: &str, partition: u32) -> String {
    format!("rill-{group}-{topic}-{partition}")
}

/// One partition instance's transactional producer, shared by its source (which
/// initialises it) and its sink (which uses it).
pub(crate) struct Transactions {
    id: String,
    config: rdkafka::ClientConfig,
    /// Created, not yet initialised (kept across retries of a timed-out initialisation).
    created: Mutex<Option<FutureProducer>>,
    /// Initialised: ready for transactions.
    ready: OnceLock<FutureProducer>,
}

impl Transactions {
    /// `config` is the producer configuration; the transactional id is added here.
    pub(crate) fn new(id: String, mut config: rdkafka::ClientConfig) -> Self {
        config.set("transactional.id", &id);
        Transactions {
            id,
            config,
            created: Mutex::new(None),
            ready: OnceLock::new(),
        }
    }

    /// The id, for messages.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Initialises the producer (once; again after a failure): fences every earlier
    /// producer of this id and aborts what it left open. Blocking; the worker retries a
    /// failure with backoff.
    pub(crate) fn init(&self) -> Result<(), String> {
        if self.ready.get().is_some() {
            return Ok(());
        }
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if created.is_none() {
            let p: FutureProducer = self.config.create().map_err(|e| {
                format!(
                    "cannot create the transactional producer '{}': {e}",
                    self.id
                )
            })?;
            *created = Some(p);
        }
        let Some(p) = created.as_ref() else {
            unreachable!("created just above")
        };
        match p.init_transactions(REQUEST_TIMEOUT) {
            Ok(()) => {
                let _ = self.ready.set(p.clone());
                *created = None;
                Ok(())
            }
            Err(e) => {
                let msg = format!("initialising transactions of '{}' failed: {e}", self.id);
                if !retriable(&e) {
                    // Unusable: the next try starts with a new producer.
                    *created = None;
                }
                Err(msg)
            }
        }
    }

    /// The initialised producer.
    pub(crate) fn producer(&self) -> Result<&FutureProducer, OutputError> {
        self.ready.get().ok_or_else(|| {
            OutputError::Retry(format!(
                "the transactional producer '{}' is not initialised",
                self.id
            ))
        })
    }
}

/// Whether the same call may succeed if tried again on this producer.
fn retriable(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_retriable(),
        _ => true,
    }
}

/// A failed transactional call as the worker sees it: fenced (fatal: this producer can never
/// commit again) or worth retrying after an abort.
pub(crate) fn txn_error(id: &str, what: &str, e: KafkaError) -> OutputError {
    let msg = format!("{what} of transaction '{id}' failed: {e}");
    match &e {
        KafkaError::Transaction(t) if t.is_fatal() => OutputError::Fenced(msg),
        _ => OutputError::Retry(msg),
    }
}
