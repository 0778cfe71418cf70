//! Per-deployment limits and the memory limiter that enforces the memory cap.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one instance may use. Breaking a limit fails only the invocation that broke it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Cap on the instance's linear memory, in bytes. Default 64 MiB. It cannot exceed the
    /// engine's [`crate::EngineConfig::max_memory_bytes`].
    pub memory_bytes: u64,
    /// Deadline for one invocation, measured on the engine's epoch clock (wall time while
    /// the guest runs, at the resolution of [`crate::EngineConfig::epoch_tick`]). Default 1 s.
    #[serde(with = "millis")]
    pub cpu_time: Duration,
    /// Cap on the bytes (keys, values, headers) emitted by one invocation. Default 16 MiB.
    pub max_emit_bytes: u64,
    /// Cap on the number of records emitted by one invocation. Default 100,000.
    pub max_emits: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            cpu_time: Duration::from_secs(1),
            max_emit_bytes: 16 << 20,
            max_emits: 100_000,
        }
    }
}

/// Durations as integer milliseconds in config files and the API.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Caps linear memory and tables, and remembers whether the cap was what stopped the guest,
/// so an allocation failure inside the guest (which surfaces as a plain trap) can be
/// reported as a memory-limit error.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) hit: bool,
}

/// Generous enough for any real handler's function table, small enough to stop abuse.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
