//! Integration tests of rill-log, one binary with a module per area.

mod admin;
mod basic;
mod common;
mod compaction;
mod crash;
mod model;
mod offsets;
mod recovery;
mod regression;
mod transactions;
