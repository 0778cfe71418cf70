//! Test guest for the state ABI. Each record's value is a command:
//!
//! - `put K V` / `big K N` (a value of N bytes of `x`) / `del K`: change the state;
//! - `get K`: emit to `out` the value (or `<none>`);
//! - `scan P`: emit to `out` one record per entry whose key starts with `P`, key and value;
//! - `fail`: put `failed` then fail the record (its change must not stand).

use rill_guest::prelude::*;

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let cmd = std::str::from_utf8(rec.value().unwrap_or_default())?;
    let mut parts = cmd.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("put"), Some(k), Some(v)) => ctx.state().put(k.as_bytes(), v.as_bytes()),
        (Some("big"), Some(k), Some(n)) => {
            let n: usize = n.parse()?;
            ctx.state().put(k.as_bytes(), &vec![b'x'; n])
        }
        (Some("del"), Some(k), None) => ctx.state().delete(k.as_bytes()),
        (Some("get"), Some(k), None) => {
            let v = ctx.state().get(k.as_bytes())?;
            let v = v.unwrap_or_else(|| b"<none>".to_vec());
            ctx.emit("out", Some(k.as_bytes()), Some(&v))
        }
        (Some("scan"), Some(p), None) => {
            let entries: Vec<(Vec<u8>, Vec<u8>)> =
                ctx.state().scan_prefix(p.as_bytes()).collect::<Result<_>>()?;
            for (k, v) in entries {
                ctx.emit("out", Some(&k), Some(&v))?;
            }
            Ok(())
        }
        (Some("fail"), None, None) => {
            ctx.state().put(b"failed", b"yes")?;
            rill_guest::bail!("asked to fail")
        }
        _ => rill_guest::bail!("unknown command {cmd:?}"),
    }
}

rill_guest::export_handler!(on_record);
