//! What an invocation returns: how it ended, its emits and state changes, the guest's log
//! lines.

use std::time::Duration;

use crate::emits::Emits;
use crate::state::StateWrites;

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Every record in range was handled; append the emits and commit past the last one.
    Ok,
    /// The handler returned an error for the record at `offset`. The emits of the records
    /// before it are in [`Invocation::emits`]; commit up to `offset`.
    RecordFailed {
        /// The failing record.
        offset: i64,
        /// The handler's message.
        message: String,
    },
    /// The guest trapped (a panic, an out-of-bounds access, a stack overflow, a bad pointer
    /// passed to the host). Nothing of the invocation stands.
    Trap {
        /// What happened, including the guest's panic message when it left one.
        message: String,
    },
    /// The invocation ran past its CPU deadline.
    Timeout,
    /// The guest tried to grow its memory past its cap.
    MemoryLimit,
    /// The guest emitted more than its per-invocation limit.
    EmitLimit,
    /// A WASI module called `proc_exit`.
    Exit {
        /// The exit code.
        code: i32,
    },
}

impl Outcome {
    /// A short stable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::RecordFailed { .. } => "record_error",
            Outcome::Trap { .. } => "trap",
            Outcome::Timeout => "timeout",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::EmitLimit => "emit_limit",
            Outcome::Exit { .. } => "exit",
        }
    }

    /// Whether the whole invocation failed (everything but `Ok` and `RecordFailed`).
    pub fn is_invocation_failure(&self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::RecordFailed { .. })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::RecordFailed { offset, message } => {
                write!(f, "record {offset} failed: {message}")
            }
            Outcome::Trap { message } => write!(f, "trap: {message}"),
            Outcome::Timeout => f.write_str("timeout: CPU deadline exceeded"),
            Outcome::MemoryLimit => f.write_str("memory limit exceeded"),
            Outcome::EmitLimit => f.write_str("emit limit exceeded"),
            Outcome::Exit { code } => write!(f, "exited with code {code}"),
        }
    }
}

/// Severity of a guest log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Level {
    /// 0.
    Trace,
    /// 1.
    Debug,
    /// 2 (and WASI stdout).
    Info,
    /// 3 (and WASI stderr).
    Warn,
    /// 4.
    Error,
}

impl Level {
    pub(crate) fn from_abi(level: i32) -> Level {
        match level {
            i32::MIN..=0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            _ => Level::Error,
        }
    }

    /// Lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// A line the guest logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The text (lossily UTF-8, cut at 8 KiB).
    pub message: String,
    /// The record being handled when it was logged, if the guest says.
    pub offset: Option<i64>,
}

/// The result of one [`Instance::invoke`](crate::Instance::invoke).
#[derive(Debug, Clone)]
pub struct Invocation {
    /// How it ended.
    pub outcome: Outcome,
    /// Records to append: all of them on `Ok`, those before the failing record on
    /// `RecordFailed`, none otherwise.
    pub emits: Emits,
    /// State changes, on the same terms as `emits`: to be made durable with the offset,
    /// then applied to the store.
    pub state: StateWrites,
    /// Log lines, in order (kept even when the invocation failed: they explain why).
    pub logs: Vec<LogLine>,
    /// Records in range that the handler was given (up to and including a failing one).
    pub records_seen: u32,
    /// Wall time of the invocation.
    pub elapsed: Duration,
}
