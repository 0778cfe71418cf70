//! Typed errors, one enum per operation.
//!
//! Each enum is `#[non_exhaustive]` so new failure modes can be added without breaking callers.
//! Messages are a single line naming the problem; the underlying `std::io::Error` is kept as
//! the `source` so `{:#}` printing shows the whole chain.

use std::io;
use std::path::PathBuf;

/// Why bytes are not a valid Kafka record batch v2 (or a record inside one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The buffer ends before the batch (or record) does.
    #[error("batch truncated: needs {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the batch says it has.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// The batchLength field is below the fixed header size or absurdly large.
    #[error("invalid batch length {0}")]
    BadLength(i32),
    /// The magic byte is not 2.
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    BadMagic(i8),
    /// The stored CRC-32C does not match the bytes.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over attributes..end.
        computed: u32,
    },
    /// recordsCount and lastOffsetDelta disagree, or the batch holds no record.
    #[error("invalid record count {count} with lastOffsetDelta {last_offset_delta}")]
    BadRecordCount {
        /// recordsCount header field.
        count: i32,
        /// lastOffsetDelta header field.
        last_offset_delta: i32,
    },
    /// Records of a compressed batch cannot be iterated without decompressing.
    #[error("cannot iterate records of a {0:?}-compressed batch")]
    Compressed(crate::batch::Compression),
    /// A record inside the batch is malformed, or a header field disagrees with the records.
    #[error("malformed record: {0}")]
    BadRecord(&'static str),
    /// The batches of one append claim more records than fit: a segment holds at most
    /// 2^32 - 1 offsets (index entries store them relative to the segment, as u32), and a
    /// compressed batch may claim at most 1024 records per byte of compressed data.
    #[error("implausible record count {records}")]
    TooManyRecords {
        /// Records claimed.
        records: i64,
    },
}

/// Errors from [`Log::open`](crate::Log::open).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A file-system operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// A topic's `topic.toml` could not be parsed.
    #[error("bad topic config {path}: {reason}")]
    BadTopicConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The data dir was written by a newer, unknown format version.
    #[error("unsupported log format version {found} in {path} (this build reads {supported})")]
    UnsupportedVersion {
        /// The config file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version this build writes.
        supported: u32,
    },
    /// The consumer-offsets store could not be opened.
    #[error("cannot open consumer offsets: {0}")]
    Offsets(#[from] OffsetsError),
}

/// Errors from topic administration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// A topic with this name exists already.
    #[error("topic {0:?} already exists")]
    AlreadyExists(String),
    /// No topic has this name.
    #[error("topic {0:?} does not exist")]
    NotFound(String),
    /// The name is empty, too long, "." or "..", or has characters outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid topic name {0:?}: use 1-249 characters of [A-Za-z0-9._-], not \".\" or \"..\""
    )]
    InvalidName(String),
    /// A partition count change that does not grow the topic.
    #[error("topic has {current} partitions; the new count {requested} must be larger")]
    InvalidPartitions {
        /// Partitions the topic has.
        current: u32,
        /// Partitions asked for.
        requested: u32,
    },
    /// The config is unusable (zero partitions, tiny segments...).
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    /// A file-system operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
}

/// Errors from appending to a partition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// Writing or syncing failed. The batch may or may not survive a restart, but it was
    /// never made visible to readers.
    #[error("append I/O error: {0}")]
    Io(#[source] io::Error),
    /// The bytes handed to `append_batch` are not a valid v2 batch.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The batch exceeds `LogOptions::max_batch_bytes`.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the batch.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// A record batch (or, for [`Partition::append`](crate::Partition::append), one record
    /// as a batch of its own) is larger than the topic's `max_message_bytes`, Kafka's
    /// `max.message.bytes`. Nothing was appended.
    #[error("record batch of {size} bytes exceeds the topic's max.message.bytes of {max} bytes")]
    MessageTooLarge {
        /// Size of the batch (or of the record as a batch).
        size: usize,
        /// The topic's `max_message_bytes`.
        max: u32,
    },
    /// `append` was called with no record.
    #[error("no record to append")]
    Empty,
    /// A record without a key was sent to a compacted topic, which keeps records by key
    /// (Kafka refuses it with `INVALID_RECORD`). Nothing was appended.
    #[error("compacted topic cannot accept a record without a key")]
    NullKeyInCompactedTopic,
    /// An earlier fsync or truncate failed; the partition refuses writes until the log is
    /// reopened and recovery has validated the tail.
    #[error("partition failed after an earlier I/O error; reopen the log to recover")]
    Failed,
    /// The log was closed or the topic deleted.
    #[error("partition is closed")]
    Closed,
    /// An idempotent or transactional producer's batch does not follow what the partition
    /// stored from it. Nothing was appended.
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

/// Why a producer's batch was refused (Kafka's idempotence and transaction checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// The batch's epoch is older than one this partition has seen: a newer instance of
    /// the producer (or the transaction coordinator) fenced it.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    Fenced {
        /// The producer.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The partition's epoch for the producer.
        current: i16,
    },
    /// The batch's first sequence number is not the next one.
    #[error("producer {producer_id}: sequence {got} out of order, expected {expected}")]
    OutOfOrderSequence {
        /// The producer.
        producer_id: i64,
        /// The next sequence number the partition expects.
        expected: i32,
        /// The batch's first sequence number.
        got: i32,
    },
    /// Several batches of one append mix a retried batch with new ones.
    #[error("producer {producer_id}: a retried batch among new batches in one append")]
    MixedRetry {
        /// The producer.
        producer_id: i64,
    },
}

/// Errors from reading a partition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The offset is before the log start or after the high watermark.
    #[error("offset {requested} out of range [{start}, {end}]")]
    OffsetOutOfRange {
        /// Offset asked for.
        requested: i64,
        /// Log start offset.
        start: i64,
        /// High watermark.
        end: i64,
    },
    /// Stored bytes failed validation; they are never served.
    #[error("corrupt batch in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        /// Segment file.
        path: PathBuf,
        /// Byte position of the bad batch in the segment.
        position: u64,
        /// What failed.
        reason: String,
    },
    /// Reading failed.
    #[error("read I/O error: {0}")]
    Io(#[source] io::Error),
    /// The caller's [`crate::ReadBuffer`] could not provide a buffer of the size needed.
    #[error("no buffer of {len} bytes to read into")]
    NoBuffer {
        /// Bytes asked for.
        len: usize,
    },
}

/// Errors from the consumer-offsets store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OffsetsError {
    /// A file-system operation failed.
    #[error("offsets I/O error on {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Group or topic name too long (limit 65535 bytes each) or empty group.
    #[error("invalid offsets key: {0}")]
    InvalidKey(String),
    /// An earlier fsync of the store failed; commits are refused until the log is reopened,
    /// because what reached the disk is unknown.
    #[error("consumer offsets store failed after an earlier I/O error; reopen the log")]
    Failed,
}

/// Errors from flush, close and retention, which touch many files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A file-system operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Flushing the offsets store failed.
    #[error("{0}")]
    Offsets(#[from] OffsetsError),
    /// An earlier fsync, seal or truncate of this partition failed, so what it holds on disk
    /// past its last successful fsync is unknown; it refuses writes and is not flushed until
    /// the log is reopened and recovery has validated it.
    #[error("partition {topic}/{partition} failed after an earlier I/O error; reopen the log")]
    PartitionFailed {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
    },
}

pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.into();
    move |source| StorageError::Io { path, source }
}
