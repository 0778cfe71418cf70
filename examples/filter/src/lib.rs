//! The reference filter: forwards every record whose value contains `blue` to topic `blue`,
//! unchanged (key, value and headers). It is also the handler the engine benchmark runs.
//!
//! It uses a batch handler and `memchr::memmem` with a finder built once per invocation, so
//! the per-record cost is the search itself; the guest is compiled with `simd128`.

use memchr::memmem::Finder;
use rill_guest::prelude::*;

fn on_batch(batch: &Batch<'_>, ctx: &mut Context) -> Result<()> {
    let finder = Finder::new(b"blue");
    for rec in batch.records() {
        if finder.find(rec.value_bytes()).is_some() {
            ctx.forward("blue", &rec)?;
        }
    }
    Ok(())
}

rill_guest::export_batch_handler!(on_batch);
