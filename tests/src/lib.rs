//! Test support: the paths of the guest programs `build.rs` compiled, record batches built
//! the way the log builds them, and a shared engine.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use rill_engine::{Engine, EngineConfig, Handler};

/// Paths of the guest `.wasm` files, built by `build.rs` (one constant per guest).
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// One engine for the whole test binary: each engine reserves address space for its
/// instance pool, and compiling a guest once per binary keeps the tests fast.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(EngineConfig {
            max_instances: 200,
            ..EngineConfig::default()
        })
        .expect("engine starts")
    })
}

/// The guest at `path`, loaded into [`engine`] once per test binary.
///
/// # Panics
///
/// If the file is missing or the engine rejects it.
pub fn handler(path: &str) -> Handler {
    static CACHE: OnceLock<Mutex<HashMap<String, Handler>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().expect("not poisoned").get(path) {
        return h.clone();
    }
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let h = engine()
        .load(&bytes)
        .unwrap_or_else(|e| panic!("load {path}: {e}"));
    cache
        .lock()
        .expect("not poisoned")
        .insert(path.to_owned(), h.clone());
    h
}

/// One record to put in a test batch.
#[derive(Debug, Clone, Default)]
pub struct Rec {
    /// Key; `None` is null.
    pub key: Option<Vec<u8>>,
    /// Value; `None` is null.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Timestamp in ms.
    pub timestamp: i64,
}

impl Rec {
    /// A record with this value and no key.
    pub fn value(v: impl AsRef<[u8]>) -> Rec {
        Rec {
            value: Some(v.as_ref().to_vec()),
            ..Rec::default()
        }
    }

    /// A record with this key and value.
    pub fn kv(k: impl AsRef<[u8]>, v: impl AsRef<[u8]>) -> Rec {
        Rec {
            key: Some(k.as_ref().to_vec()),
            value: Some(v.as_ref().to_vec()),
            ..Rec::default()
        }
    }
}

/// Encodes `records` as one uncompressed v2 batch starting at `base_offset`, with the
/// log's own encoder, so tests feed guests exactly what the log stores.
pub fn batch(base_offset: i64, records: &[Rec]) -> Vec<u8> {
    let headers: Vec<Vec<rill_log::Header<'_>>> = records
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .map(|(k, v)| rill_log::Header {
                    key: k,
                    value: v.as_deref(),
                })
                .collect()
        })
        .collect();
    let recs: Vec<rill_log::Record<'_>> = records
        .iter()
        .zip(&headers)
        .map(|(r, h)| rill_log::Record {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: h,
            timestamp_ms: Some(r.timestamp),
        })
        .collect();
    let mut b = rill_log::batch::encode(&recs, 0);
    // The base offset is outside the CRC; the log sets it the same way when it appends.
    b[..8].copy_from_slice(&base_offset.to_be_bytes());
    b
}

/// A batch of records with these values, starting at `base_offset`.
pub fn values(base_offset: i64, values: &[&str]) -> Vec<u8> {
    batch(
        base_offset,
        &values.iter().map(Rec::value).collect::<Vec<_>>(),
    )
}

/// Apache Kafka, the reference broker started once per test run.
pub mod apache;

/// Cluster mode from the outside: hosts attached to a Kafka cluster, and its records.
pub mod cluster;

/// The differential harness: the same client against Apache Kafka and Rill.
pub mod diff;

/// A real host process for end-to-end tests (owned by the lead; keep this line).
pub mod host;
