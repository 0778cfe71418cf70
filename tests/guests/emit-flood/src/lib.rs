//! Tries to emit 1 GiB in 1 MiB values from one record: the host's emit limit must stop it
//! (`emit_limit`) long before the host buffers anything like that much.

use rill_guest::prelude::*;

fn on_record(_rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..1024 {
        ctx.emit("out", None, Some(&chunk))?;
    }
    Ok(())
}

rill_guest::export_handler!(on_record);
