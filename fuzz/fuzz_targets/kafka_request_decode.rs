//! Any bytes a Kafka client can send as one request frame must decode or be refused with an
//! error, never panic or allocate without bound; and any bytes stored as producer batches
//! must decompress (for the Wasm path) or be refused, within the decompression limit.

#![no_main]

use libfuzzer_sys::fuzz_target;

// As in the `runtime` binary: wire-chosen array capacities are reserved lazily.
#[global_allocator]
static ALLOC: rill_kafka::WireSafeAlloc = rill_kafka::WireSafeAlloc;

fuzz_target!(|data: &[u8]| {
    // The listener's frame limit (100 MiB by default) is far above any fuzz input.
    let _ = rill_kafka::decode_request(data, 100 << 20);
    if let Ok(out) = rill_kafka::decompress_batches_with_limit(data, 1 << 20) {
        // Whatever comes out is whole, uncompressed batches.
        for b in rill_log::batches(&out) {
            let Ok(b) = b else { break };
            assert_eq!(b.compression(), rill_log::batch::Compression::None);
        }
    }
});
