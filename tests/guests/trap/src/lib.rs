//! Misbehaves on demand, by record value: `trap` panics (a trap), `fail` returns an error (a
//! record error), `emit-then-fail` emits and then
//! returns an error, `bad-emit` hands the host an out-of-bounds pointer through the raw import
//! contract (via a topic name that is not UTF-8), anything else is forwarded to `out`.

use rill_guest::prelude::*;

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    match rec.value_bytes() {
        b"trap" => panic!("asked to trap"),
        b"fail" => rill_guest::bail!("asked to fail"),
        b"emit-then-fail" => {
            ctx.emit("out", rec.key(), Some(b"emitted before failing"))?;
            rill_guest::bail!("asked to fail after emitting")
        }
        b"log" => {
            ctx.log_warn("a warning");
            ctx.forward("out", rec)
        }
        _ => ctx.forward("out", rec),
    }
}

rill_guest::export_handler!(on_record);
