//! The seam through which Produce asks whether a batch may be appended to a topic that
//! validates records against schemas (`confluent.value.schema.validation`,
//! `confluent.key.schema.validation`).
//!
//! The door knows nothing of schemas or registries: the host installs a
//! [`RecordValidator`] with [`Broker::set_validator`](crate::Broker::set_validator), and the
//! door calls it for every batch bound for such a topic, before anything is appended. A
//! refused batch appends nothing, and is answered with `INVALID_RECORD` and the record's
//! index and message in `record_errors`; a registry that cannot be asked is answered with a
//! retriable error, never by appending unchecked.

use std::fmt;

use rill_log::TopicConfig;

/// Why a batch may not be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// A record is not valid for its subject: the whole batch is refused.
    Invalid {
        /// The record's index in the request's records for the partition, from 0.
        index: usize,
        /// What is wrong, naming the record (`record 3: schema id 42 is not a version of
        /// subject 'orders-value'`).
        message: String,
    },
    /// The registry could not answer; the producer should retry. The message names it.
    Unavailable(String),
    /// Answering needs the registry and the caller said not to block: call again with
    /// `may_block` on a thread that may.
    WouldBlock,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Invalid { message, .. } | Refusal::Unavailable(message) => {
                f.write_str(message)
            }
            Refusal::WouldBlock => f.write_str("the schema registry must be asked"),
        }
    }
}

/// Checks the records of batches bound for a topic that validates keys or values.
pub trait RecordValidator: Send + Sync + fmt::Debug {
    /// Checks every data record of `batches` (uncompressed record batches v2; control
    /// batches are skipped) for `topic`, whose `config` says which of keys and values to
    /// check. With `may_block` false it answers only from what it has cached, and
    /// [`Refusal::WouldBlock`] when it would have to ask the registry.
    fn check_batches(
        &self,
        topic: &str,
        config: &TopicConfig,
        batches: &[u8],
        may_block: bool,
    ) -> Result<(), Refusal>;
}

/// Whether records appended to a topic of `config` must be checked.
pub fn validates(config: &TopicConfig) -> bool {
    config.value_schema_validation || config.key_schema_validation
}
