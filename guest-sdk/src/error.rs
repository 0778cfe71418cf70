//! The error a handler returns for one record.

use std::fmt;

/// A handler's failure for one record: a message for the host.
///
/// Returning it from a handler makes the host record a `record_error` for that record's
/// offset (the ABI's `fail` import), which is distinct from a trap. Any type implementing
/// [`std::error::Error`] converts into it with `?`, so `rec.json()?` just works.
///
/// Like `anyhow::Error`, this type deliberately does not implement `std::error::Error`
/// itself: that would make the blanket `From` below overlap with `From<T> for T`.
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error {
            message: message.to_string(),
        }
    }

    /// The message the host will see.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Error {
        Error::msg(e)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early from a handler with an [`Error`] built from a format string.
///
/// ```
/// # use rill_guest::prelude::*;
/// fn check(total: u64) -> Result<()> {
///     if total == 0 {
///         rill_guest::bail!("order total is {total}");
///     }
///     Ok(())
/// }
/// assert_eq!(check(0).unwrap_err().message(), "order total is 0");
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::msg(::std::format!($($arg)*)))
    };
}
