//! Regression tests, one per finding of the storage review.
