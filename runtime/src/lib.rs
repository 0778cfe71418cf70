//! Rill host library (being written).
