//! Rill guest SDK (being written).
