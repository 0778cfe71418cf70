//! Host-level integration tests, one module per area, in one test binary (it links faster).

mod cluster_mode;
mod delivery;
mod diff_java_go;
mod differential;
mod engine;
mod examples;
mod host;
mod issue11;
mod kafka;
mod kafka_tools;
mod perf_tools;
mod reliability;
mod schema_validation;
mod schemas;
mod state;
mod transactions;
mod typed_handlers;
mod typed_handlers_e2e;
