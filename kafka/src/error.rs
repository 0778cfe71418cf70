//! Typed errors of the crate.

/// Errors that stop [`crate::serve`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The listener failed in a way that retrying cannot fix.
    #[error("kafka listener I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration is unusable.
    #[error("invalid kafka config: {0}")]
    Config(String),
}

/// Why one connection was closed. These never stop the listener; they are logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ConnError {
    /// Reading or writing the socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The frame length is negative, too small for a header, or over the limit.
    #[error("frame of {size} bytes rejected (limit {max})")]
    FrameSize { size: i64, max: usize },
    /// The request could not be decoded.
    #[error("malformed {api} v{version} request: {reason}")]
    Malformed {
        api: &'static str,
        version: i16,
        reason: String,
    },
    /// An API key we do not know, or a version of it we do not serve.
    #[error("unsupported request: API key {key} version {version}")]
    Unsupported { key: i16, version: i16 },
    /// A response could not be encoded (a bug: responses are built by this crate).
    #[error("cannot encode {api} v{version} response: {reason}")]
    Encode {
        api: &'static str,
        version: i16,
        reason: String,
    },
}

/// Why [`crate::decompress_batches`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecompressError {
    /// The bytes are not well-formed v2 batches.
    #[error("invalid record batch: {0}")]
    Batch(#[from] rill_log::BatchError),
    /// The codec bits name a codec Kafka does not define.
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    /// The compressed payload did not decompress.
    #[error("{codec} decompression failed: {reason}")]
    Codec {
        /// Codec name.
        codec: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// A batch decompresses to more than the limit.
    #[error("batch decompresses to more than {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
}
