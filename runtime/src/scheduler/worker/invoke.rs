//! The invocation path: reading whole batches straight into the guest's input buffer
//! (decompressing them there), creating the instance when there is none, sizing each read
//! from the last one, and passing the guest's log lines on.

use rill_engine::{GuestInput, Instance, InstanceConfig, Invocation};
use rill_log::{ReadBuffer, ReadError};

use super::super::source::Source;

use super::Worker;

/// Why an invocation did not produce an outcome.
pub(super) enum InvokeError {
    /// The instance could not be created.
    Instantiate(String),
    /// Reading the partition failed.
    Read(ReadError),
    /// The read returned no batch (below the high watermark: damage).
    Empty,
    /// A compressed batch could not be decompressed.
    Decompress(String),
}

/// What an invocation's read found.
pub(super) struct Read {
    /// Bytes of stored batches read (compressed, if they were).
    pub(super) stored_len: usize,
    /// Offset of the first record read.
    pub(super) first_offset: Option<i64>,
    /// Offset after the last batch read.
    pub(super) next_offset: i64,
}

/// The guest's input buffer as a place the log can read into.
struct GuestBuffer<'g, 'i>(&'g mut GuestInput<'i>);

impl ReadBuffer for GuestBuffer<'_, '_> {
    fn buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        self.0.buffer(len)
    }
}

/// Reads whole batches from `start` into the guest's input buffer (decompressing them there
/// if they are compressed) and invokes the guest on `[start, end)` of them.
fn read_and_invoke(
    instance: &mut Instance,
    source: &dyn Source,
    start: i64,
    end: i64,
    budget: usize,
) -> Result<(Invocation, Read), InvokeError> {
    let mut input = instance.input();
    let read = match source.read_into(start, budget, &mut GuestBuffer(&mut input)) {
        Ok(r) => r,
        // The guest could not provide a buffer: invoking says why (a trap, its memory cap).
        Err(ReadError::NoBuffer { .. }) => return Ok((input.invoke(0, start, end), nothing())),
        Err(e) => return Err(InvokeError::Read(e)),
    };
    if read.len == 0 {
        return Err(InvokeError::Empty);
    }
    let stored = input.filled(read.len).ok_or(InvokeError::Empty)?;
    let first_offset = rill_log::batch::batches(stored)
        .next()
        .and_then(Result::ok)
        .map(|b| b.base_offset());
    // The guest walks uncompressed batches only. Producers' compressed batches are stored as
    // they came; decompress them into a fresh input buffer (the bytes read are copied out
    // first, since asking for a buffer replaces it).
    let decompressed = match rill_kafka::decompress_batches(stored) {
        Ok(std::borrow::Cow::Borrowed(_)) => None,
        Ok(std::borrow::Cow::Owned(v)) => Some(v),
        Err(e) => return Err(InvokeError::Decompress(e.to_string())),
    };
    // A read_committed source: drop the batches of aborted transactions (rare: only when
    // the range holds one).
    let aborted = source.aborted(start, read.next_offset);
    let decompressed = if aborted.is_empty() {
        decompressed
    } else {
        let bytes = decompressed.as_deref().unwrap_or(stored);
        Some(without_aborted(bytes, &aborted))
    };
    let len = match decompressed {
        None => read.len,
        Some(v) => match input.buffer(v.len()) {
            Some(dst) => {
                dst[..v.len()].copy_from_slice(&v);
                v.len()
            }
            None => return Ok((input.invoke(0, start, end), nothing())),
        },
    };
    let inv = input.invoke(len, start, end);
    let read = Read {
        stored_len: read.len,
        first_offset,
        next_offset: read.next_offset,
    };
    Ok((inv, read))
}

/// The batches of `bytes` that belong to none of the `aborted` transactions.
fn without_aborted(bytes: &[u8], aborted: &[rill_log::AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for b in rill_log::batch::batches(bytes) {
        let Ok(b) = b else { break };
        if !aborted.iter().any(|a| a.covers(&b)) {
            out.extend_from_slice(b.as_bytes());
        }
    }
    out
}

/// The read of an invocation that failed before it had input (the guest could not provide
/// an input buffer): it counts as covering the whole range, so a range of several records is
/// isolated and re-run one record (and one small buffer) at a time.
fn nothing() -> Read {
    Read {
        stored_len: 0,
        first_offset: None,
        next_offset: i64::MAX,
    }
}

impl Worker {
    /// Bytes to read for `records` records: the last read's bytes per record times the
    /// count, with a quarter more so the batch holding the last record is usually included,
    /// capped by the deployment's `max_batch_bytes`. Reading the full cap every time cost a
    /// 1 MiB zeroed allocation, a 1 MiB read and a 1 MiB copy into the guest per invocation
    /// even when the invocation covered a tenth of it.
    pub(super) fn read_budget(&self, records: usize, cap: usize) -> usize {
        if self.bytes_per_record == 0 {
            return cap;
        }
        let want = self
            .bytes_per_record
            .saturating_mul(records)
            .saturating_add(records.saturating_mul(self.bytes_per_record) / 4)
            .saturating_add(4096);
        want.clamp(4096, cap.max(1))
    }

    /// Updates `bytes_per_record` from a read of `len` bytes covering `[first, next)`.
    pub(super) fn learn_record_size(&mut self, len: usize, first: Option<i64>, next: i64) {
        if let Some(first) = first {
            let records = (next - first).max(1) as usize;
            self.bytes_per_record = (len / records).max(1);
        }
    }

    /// Reads from `start` and runs the guest on what was read. The read goes straight into
    /// the guest's input buffer (no buffer of the host's, no second copy); compressed batches
    /// are decompressed into it. A missing instance (the first invocation, or the one after a
    /// trap) is created first, in the same job: instantiation runs the guest's
    /// initialiser, which is guest code too.
    pub(super) fn invoke(
        &mut self,
        start: i64,
        end: i64,
        budget: usize,
    ) -> Result<(Invocation, Read), InvokeError> {
        let instance = match &mut self.instance {
            Some(i) => i,
            None => {
                let cfg = self.instance_config();
                let i = self
                    .handler
                    .instantiate(cfg)
                    .map_err(|e| InvokeError::Instantiate(format!("instantiate: {e}")))?;
                self.instance.insert(i)
            }
        };
        read_and_invoke(instance, &*self.source, start, end, budget)
    }

    pub(super) fn instance_config(&self) -> InstanceConfig {
        let spec = self.dep.spec();
        InstanceConfig {
            deployment: spec.name.clone(),
            partition: self.pid(),
            params: spec.env.clone(),
            outputs: if spec.outputs.is_empty() {
                None
            } else {
                Some(spec.outputs.clone())
            },
            limits: spec.limits.clone(),
            state: self.store().map(|s| {
                rill_engine::StateHandle(s.clone() as std::sync::Arc<dyn rill_engine::StateView>)
            }),
            schemas: Some(self.dep.schemas.clone()),
        }
    }

    pub(super) fn record_logs(&self, inv: &Invocation) {
        if inv.logs.is_empty() {
            return;
        }
        let spec = self.dep.spec();
        for line in &inv.logs {
            let level = line.level.as_str();
            // Handler lines also reach the host's own log, tagged, at debug level so a
            // chatty handler cannot drown the host's log at the default level.
            tracing::debug!(target: "rill::handler", deployment = %spec.name,
                partition = self.pid(), offset = ?line.offset, level, "{}", line.message);
            self.dep
                .logs
                .push(level, self.pid(), line.offset, line.message.clone());
        }
    }
}
