//! The guest of `rill-bench --only state` (docs/benchmarks.md, "Durable state"): per record,
//! one `state().get_ref` and one `state().put` of the record's key, the value 16 bytes
//! (records seen and value bytes summed, both u64 LE).
//!
//! With the deploy parameter `mode=none` it does the same work without the state calls (the
//! old value is taken as absent, the new one is computed and dropped), so the difference
//! between the two modes is the cost of the state calls alone.

use rill_guest::prelude::*;

fn decode(v: Option<&[u8]>) -> (u64, u64) {
    match v {
        Some(v) if v.len() == 16 => (
            u64::from_le_bytes(v[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(v[8..].try_into().expect("8 bytes")),
        ),
        _ => (0, 0),
    }
}

fn encode((count, sum): (u64, u64)) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&count.to_le_bytes());
    out[8..].copy_from_slice(&sum.to_le_bytes());
    out
}

fn on_batch(batch: &Batch<'_>, ctx: &mut Context) -> Result<()> {
    let stateful = ctx.param("mode").as_deref() != Some("none");
    for rec in batch.records() {
        let key = match rec.key() {
            Some(k) if !k.is_empty() => k,
            _ => rill_guest::bail!("record has no key"),
        };
        let amount = rec.value_bytes().len() as u64;
        if stateful {
            let (count, sum) = decode(ctx.state().get_ref(key)?);
            ctx.state().put(key, &encode((count + 1, sum + amount)))?;
        } else {
            let (count, sum) = decode(core::hint::black_box(None));
            core::hint::black_box(encode((count + 1, sum + amount)));
        }
    }
    Ok(())
}

rill_guest::export_batch_handler!(on_batch);
