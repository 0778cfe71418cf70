//! Recurses without bound: the Wasm stack overflows and the host reports a trap.

use rill_guest::prelude::*;

#[inline(never)]
#[allow(unconditional_recursion)]
fn down(n: u64) -> u64 {
    // black_box on both sides defeats tail-call and loop conversion.
    std::hint::black_box(down(std::hint::black_box(n + 1))) + 1
}

fn on_record(rec: &Record<'_>, _ctx: &mut Context) -> Result<()> {
    std::hint::black_box(down(rec.offset() as u64));
    Ok(())
}

rill_guest::export_handler!(on_record);
