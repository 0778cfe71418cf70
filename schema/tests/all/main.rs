//! Integration tests of `rill-schema`'s public API, one module per area.

mod avro;
mod json;
mod levels;
mod protobuf;
mod support;
