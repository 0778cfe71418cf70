//! Rill kafka (being written).
