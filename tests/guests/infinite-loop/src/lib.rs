//! Spins forever on every invocation: the host's epoch deadline must stop it (`timeout`).

use rill_guest::prelude::*;

fn on_record(rec: &Record<'_>, _ctx: &mut Context) -> Result<()> {
    let mut x = rec.offset() as u64;
    loop {
        // black_box keeps the optimiser from proving the loop has no effect.
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

rill_guest::export_handler!(on_record);
