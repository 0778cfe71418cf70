//! Rill's partitioned, durable on-disk log.
//!
//! ```
//! use rill_log::{FlushPolicy, Log, LogOptions, Record, TopicConfig, batches};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! // Open (or create) a data dir. Every partition is recovered here.
//! let log = Log::open(dir.path(), LogOptions::default())?;
//! // A topic of two partitions whose appends are acknowledged after fdatasync.
//! let cfg = TopicConfig { partitions: 2, flush: FlushPolicy::Always, ..TopicConfig::default() };
//! let topic = log.create_topic("orders", cfg)?;
//!
//! // Place a keyed record like Kafka's default partitioner would, and append it.
//! let p = topic.partition(topic.partition_for_key(Some(b"alice"))).unwrap();
//! let info = p.append(&[Record { key: Some(b"alice"), value: Some(b"42"), ..Record::default() }])?;
//! assert_eq!(info.base_offset, 0);
//!
//! // Read whole v2 batches from offset 0 and walk their records in place.
//! let read = p.read(0, 1 << 20)?;
//! for batch in batches(&read.bytes) {
//!     for record in batch?.records() {
//!         let record = record?;
//!         assert_eq!(record.value, Some(&b"42"[..]));
//!     }
//! }
//!
//! // Consumer groups commit the next offset to read.
//! log.offsets().commit("billing", "orders", p.id(), read.next_offset)?;
//! assert_eq!(log.offsets().fetch("billing", "orders", p.id()), Some(1));
//! log.close()?;
//! # Ok(()) }
//! ```
//!
//! # Concepts
//!
//! - A [`Log`] owns a data dir of [`Topic`]s, each split into [`Partition`]s, plus the
//!   consumer-group [`Offsets`].
//! - A partition is a list of segments holding Kafka record batch v2 bytes exactly as Kafka
//!   stores them, so the Kafka front door can serve fetches without re-encoding and
//!   compressed producer batches are stored as they arrive. See `docs/log-format.md`.
//! - [`Partition::append`] encodes records into one batch; [`Partition::append_batch`] takes a
//!   producer's raw batch. Offsets are assigned by the log.
//! - [`Partition::read`] returns whole, CRC-checked batches as one [`bytes::Bytes`]; walk them
//!   with [`batches`] and [`RecordBatch::records`] without allocating per record.
//! - The [`FlushPolicy`] of a topic says what an acknowledgement means.
//! - [`Partition::listen`] wakes consumers when the high watermark advances.
//!
//! # Testing seams
//!
//! All log-data I/O goes through [`io::Io`]; [`io::FaultIo`] injects fsync failures, short
//! writes and `ENOSPC`.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod batch;
mod checkpoint;
mod compaction;
mod config;
pub mod error;
pub mod index;
pub mod io;
mod log;
mod offsets;
mod partition;
pub mod partitioner;
mod producers;
mod recovery;
mod retention;
mod segment;
mod sync;
mod topic;
mod txn;

pub use batch::{BatchBuilder, BatchRecord, Compression, Header, Record, RecordBatch, batches};
pub use compaction::CompactionReport;
pub use config::{
    CleanupPolicy, DEFAULT_MAX_MESSAGE_BYTES, FlushPolicy, ParseFlushPolicyError, TopicConfig,
};
pub use error::{
    AppendError, BatchError, OffsetsError, OpenError, ProducerError, ReadError, StorageError,
    TopicError,
};
pub use log::{Log, LogOptions};
pub use offsets::Offsets;
pub use partition::{AppendInfo, Partition, ReadBuffer, ReadInto, ReadResult};
pub use partitioner::murmur2_partition;
pub use producers::AbortedTxn;
pub use recovery::{CheckpointStatus, RecoveryAction, RecoveryEvent, RecoveryStats};
pub use retention::RetentionReport;
pub use topic::{FORMAT_VERSION, Topic, valid_topic_name};
pub use txn::{MAX_TRANSACTION_TIMEOUT_MS, TxnError, TxnMeta, TxnOffset, TxnState};
