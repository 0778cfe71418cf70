//! Carries a 24 MiB initialised static, i.e. a 24 MiB data segment: instantiating it needs
//! more memory than a small cap allows, which must be a clean error, not a host crash.

use rill_guest::prelude::*;

// Non-zero so it lands in a data segment instead of zeroed memory.
static BIG: [u8; 24 << 20] = [7; 24 << 20];

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let i = (rec.offset() as usize) % BIG.len();
    let b = std::hint::black_box(&BIG)[i];
    ctx.emit("out", None, Some(&[b]))
}

rill_guest::export_handler!(on_record);
