//! Host-level integration tests, one module per area, in one test binary (it links faster).

mod engine;
mod examples;
mod host;
mod kafka;
mod perf_tools;
mod reliability;
