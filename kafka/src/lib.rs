//! Rill's Kafka front door: the host answers the Kafka wire protocol, so existing producers
//! and consumers (librdkafka, the Java client, kafka-python, kcat...) talk to it unchanged.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rill_kafka::{Broker, KafkaConfig};
//!
//! let log = Arc::new(rill_log::Log::open("/tmp/rill-data", rill_log::LogOptions::default())?);
//! let cfg = KafkaConfig::default(); // 127.0.0.1:9092, topics auto-created
//! let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
//! let broker = Broker::new(log, cfg)?;
//! let stats = broker.clone(); // keep a handle for /metrics: stats.stats().snapshot()
//! broker.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # drop(stats); Ok(()) }
//! ```
//!
//! # Concepts
//!
//! - **One node.** The host is the only broker, leader of every partition and coordinator
//!   of every group. Metadata says so; replication factors other than 1 are refused.
//! - **Bytes in, bytes out.** Produce stores each record batch exactly as the client sent it
//!   (any codec); Fetch returns stored batches without re-encoding them. The log assigns
//!   offsets and checks CRCs.
//! - **acks and flush.** acks=1 and acks=-1 are answered when the append returns, which under
//!   the topic's flush policy `always` is after fsync, and otherwise once the bytes are in the
//!   page cache. acks=0 gets no response. See `docs/kafka.md`.
//! - **Shared offsets.** Consumer groups commit to `Log::offsets()`, the store the host's Wasm
//!   deployments use, so both show the same lag.
//! - **Robustness.** An unknown API or unsupported version gets `UNSUPPORTED_VERSION`; a
//!   malformed or oversized frame closes that connection only, with a log line. Binaries
//!   that serve it install [`WireSafeAlloc`], so that array lengths read off the wire
//!   cannot make the codec abort the process.
//!
//! [`decompress_batches`] turns compressed batches into uncompressed ones for the Wasm path.
//!
//! The supported APIs, versions, limits and what is missing are listed in `docs/kafka.md`.

#![deny(missing_docs)]

mod admin;
mod alloc;
mod api_versions;
mod compression;
mod config;
mod conn;
mod error;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;
mod server;
mod stats;
mod topics;
mod txn;
pub mod validation;

use std::future::Future;
use std::sync::Arc;

pub use alloc::WireSafeAlloc;
pub use compression::{
    DEFAULT_MAX_DECOMPRESSED, decompress_batches, decompress_batches_with_limit,
};
pub use config::KafkaConfig;
#[doc(hidden)]
pub use conn::decode_request;
pub use error::{DecompressError, KafkaError};
pub use server::Broker;
pub use stats::{KafkaStats, KafkaStatsSnapshot};

/// Serves Kafka clients on `listener` over `log` until `shutdown` completes.
///
/// A shorthand for [`Broker::new`] + [`Broker::serve`]; use those to keep a handle on the
/// broker's [`KafkaStats`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    log: Arc<rill_log::Log>,
    cfg: KafkaConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), KafkaError> {
    Broker::new(log, cfg)?.serve(listener, shutdown).await
}
