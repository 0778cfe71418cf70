//! Rill engine (being written).
