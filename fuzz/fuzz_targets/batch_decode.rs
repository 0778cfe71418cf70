//! Decoding arbitrary bytes as concatenated record batches must never panic, and whatever
//! validates must re-encode to a batch that validates again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_log::batch::{BatchBuilder, Compression};
use rill_log::{Header, Record, batches};

fuzz_target!(|data: &[u8]| {
    for batch in batches(data) {
        let Ok(batch) = batch else { break };
        let _ = (batch.base_offset(), batch.last_offset(), batch.record_count(), batch.first_timestamp());
        let _ = (batch.max_timestamp(), batch.compression(), batch.crc_ok(), batch.as_bytes().len());
        let valid = batch.validate().is_ok();
        let mut rebuilt = BatchBuilder::new();
        let mut all_ok = true;
        for record in batch.records() {
            match record {
                Ok(r) => {
                    let headers: Vec<Header<'_>> = r.headers.iter().collect();
                    assert_eq!(headers.len(), r.headers.len());
                    let rec = Record { key: r.key, value: r.value, headers: &headers, timestamp_ms: Some(r.timestamp_ms) };
                    rebuilt.push(&rec, 0);
                }
                Err(_) => {
                    all_ok = false;
                    break;
                }
            }
        }
        // A valid, uncompressed batch whose records all parse survives a rebuild.
        if valid && all_ok && batch.compression() == Compression::None && !rebuilt.is_empty() {
            let bytes = rebuilt.finish();
            let (again, n) = rill_log::RecordBatch::parse(&bytes).expect("rebuilt batch parses");
            assert_eq!(n, bytes.len());
            again.validate().expect("rebuilt batch validates");
            assert_eq!(again.record_count(), batch.record_count());
            assert_eq!(again.records().filter(Result::is_ok).count(), batch.record_count() as usize);
        }
    }
});
