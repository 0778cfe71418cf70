//! Imports `rill.open_socket`, which the host does not provide: deploy must reject it and
//! name the import.

use rill_guest::prelude::*;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "rill")]
unsafe extern "C" {
    fn open_socket(port: i32) -> i32;
}

fn on_record(rec: &Record<'_>, _ctx: &mut Context) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: never reached; the module is rejected before it can run.
    unsafe {
        open_socket(rec.offset() as i32);
    }
    let _ = rec;
    Ok(())
}

rill_guest::export_handler!(on_record);
