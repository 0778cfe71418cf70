//! Host-level integration tests, one module per area, in one test binary (it links faster).

mod host;
mod engine;
mod examples;
mod kafka;
