//! Rill log (being written).
