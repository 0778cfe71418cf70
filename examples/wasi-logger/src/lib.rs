//! A handler built for `wasm32-wasip1` that writes with plain `println!` / `eprintln!`.
//! The host's WASI layer turns each stdout line into an info log line and each stderr line
//! into a warn line, tagged with the record being handled. It also shows that a WASI module
//! sees only its deploy parameters as its environment (`GREETING`).
//!
//! For every record it emits the value's length to topic `sizes`.

use rill_guest::prelude::*;

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".into());
    println!(
        "{greeting} from offset {}: {}",
        rec.offset(),
        rec.value_str().unwrap_or("<binary>")
    );
    if rec.value().is_none() {
        eprintln!("offset {} has a null value", rec.offset());
    }
    let len = rec.value_bytes().len().to_string();
    ctx.emit("sizes", rec.key(), Some(len.as_bytes()))
}

rill_guest::export_handler!(on_record);
