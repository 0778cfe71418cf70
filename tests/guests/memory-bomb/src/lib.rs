//! Allocates 1 MiB chunks and keeps them until allocation fails: the host's memory cap must
//! stop it (`memory_limit`). Values that parse as a number N allocate only N MiB, so a test
//! can also check that a modest allocation under the cap succeeds.

use rill_guest::prelude::*;

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let limit_mib: usize = rec
        .value_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    while hoard.len() < limit_mib {
        let mut chunk = vec![0u8; 1 << 20];
        // Touch the chunk so it is really committed.
        chunk[0] = 1;
        hoard.push(chunk);
    }
    ctx.emit("out", None, Some(hoard.len().to_string().as_bytes()))
}

rill_guest::export_handler!(on_record);
