//! Test support.

pub mod host;
