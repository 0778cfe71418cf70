//! The Rill host library: the daemon behind `runtime serve`, and the admin client the CLI
//! uses.
//!
//! A host owns a [`rill_log::Log`], runs Wasm handlers through [`rill_engine`], and opens
//! two doors onto them: the admin HTTP API ([`admin`]) and the Kafka listener
//! ([`rill_kafka`]). Start one with [`host::run`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), rill_runtime::host::HostError> {
//! let config = rill_runtime::config::Config::default();
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! rill_runtime::host::run(config, shutdown, |l| {
//!     println!("admin API on {}, Kafka on {:?}", l.admin, l.kafka);
//! })
//! .await
//! # }
//! ```
#![deny(missing_docs)]

pub mod admin;
pub mod cluster;
pub mod config;
pub mod deployment;
pub mod handler_logs;
pub mod host;
pub mod metrics;
pub mod scheduler;
pub mod schema;
mod state;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
