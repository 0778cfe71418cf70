#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod abi;
#[cfg(feature = "avro")]
pub mod avro;
mod context;
mod error;
mod record;
pub mod schema;
mod state;
pub mod testing;

pub use context::{Context, Level};
pub use error::{Error, Result};
pub use record::{
    Batch, BatchIter, Headers, MalformedBatch, Parse, Record, RecordBatch, RecordIter,
};
pub use serde;
pub use serde_json;
pub use state::{Scan, State};

/// Everything a handler usually needs, in one `use`.
pub mod prelude {
    pub use crate::{Batch, Context, Error, Level, Record, Result};
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::json;
}

/// Exports `f`, a `fn(&Record<'_>, &mut Context) -> Result<()>`, as this module's handler.
///
/// `f` is called once for every record of every invocation, in offset order. Returning an
/// error stops the invocation at that record and reports it to the host (see the crate docs).
/// Use this macro once per crate.
#[macro_export]
macro_rules! export_handler {
    ($f:path) => {
        $crate::__export_abi!();

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn rill_handle(len: i32, partition: i32, start: i64, end: i64) -> i32 {
            $crate::abi::handle_records(len, partition, start, end, $f)
        }
    };
}

/// Exports `f`, a `fn(&Batch<'_>, &mut Context) -> Result<()>`, as this module's handler.
///
/// `f` is called once per invocation with every record of it. An error is charged to the
/// record most recently pulled from [`Batch::records`].
#[macro_export]
macro_rules! export_batch_handler {
    ($f:path) => {
        $crate::__export_abi!();

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn rill_handle(len: i32, partition: i32, start: i64, end: i64) -> i32 {
            $crate::abi::handle_batch(len, partition, start, end, $f)
        }
    };
}

/// The exports both handler macros share.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_abi {
    () => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn rill_abi_version() -> i32 {
            $crate::abi::ABI_VERSION
        }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn rill_input(len: i32) -> i32 {
            $crate::abi::input(len)
        }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn rill_current_offset() -> i64 {
            $crate::abi::current_offset()
        }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn rill_emits_before_current() -> i32 {
            $crate::abi::emits_before_current()
        }
    };
}

/// Logs a formatted line at info level: `rill_guest::info!(ctx, "saw {}", n)`.
#[macro_export]
macro_rules! info {
    ($ctx:expr, $($arg:tt)*) => { $ctx.log($crate::Level::Info, ::core::format_args!($($arg)*)) };
}

/// Logs a formatted line at warn level.
#[macro_export]
macro_rules! warn {
    ($ctx:expr, $($arg:tt)*) => { $ctx.log($crate::Level::Warn, ::core::format_args!($($arg)*)) };
}

/// Logs a formatted line at error level.
#[macro_export]
macro_rules! error {
    ($ctx:expr, $($arg:tt)*) => { $ctx.log($crate::Level::Error, ::core::format_args!($($arg)*)) };
}

/// Logs a formatted line at debug level.
#[macro_export]
macro_rules! debug {
    ($ctx:expr, $($arg:tt)*) => { $ctx.log($crate::Level::Debug, ::core::format_args!($($arg)*)) };
}
