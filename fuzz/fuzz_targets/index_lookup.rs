//! Looking an offset up in arbitrary offset-index bytes must never panic, and must return
//! either the segment start or an entry at or before the offset asked for.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_log::index::{OFFSET_ENTRY, lookup_raw};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let rel = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let index = &data[4..];
    let (r, pos) = lookup_raw(index, rel);
    assert!(r <= rel || (r, pos) == (0, 0));
    if (r, pos) != (0, 0) {
        // The entry exists in the index.
        assert!(index.chunks_exact(OFFSET_ENTRY).any(|e| e[..4] == r.to_be_bytes() && e[4..] == pos.to_be_bytes()));
    }
});
