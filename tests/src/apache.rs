//! Apache Kafka beside Rill: the reference broker the differential tests compare against.
//!
//! `scripts/test.sh` starts one single-node Apache Kafka cluster for the whole run
//! (`scripts/kafka.sh start`) and passes its bootstrap address in `RILL_TEST_APACHE_KAFKA`;
//! every test shares that broker, so each one names its topics and groups with
//! [`unique`](crate::apache::unique). Without the variable the tests that need the broker skip loudly, unless
//! `RILL_REQUIRE_KAFKA_CLIENTS` is set (as `scripts/test.sh` and CI set it), when its
//! absence is a failure.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that names the reference broker's bootstrap address.
pub const ENV: &str = "RILL_TEST_APACHE_KAFKA";

/// The bootstrap address of the Apache Kafka broker started for this run, or `None` (after
/// saying so loudly) when there is none and none is required.
///
/// # Panics
///
/// When no broker is given but `RILL_REQUIRE_KAFKA_CLIENTS` is set.
pub fn bootstrap() -> Option<String> {
    match std::env::var(ENV) {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            let msg = format!(
                "no Apache Kafka broker: {ENV} is not set (scripts/test.sh starts one with \
                 scripts/kafka.sh start)"
            );
            if std::env::var_os("RILL_REQUIRE_KAFKA_CLIENTS").is_some() {
                panic!("{msg} (RILL_REQUIRE_KAFKA_CLIENTS is set, so this is a failure)");
            }
            eprintln!("\n!!!!!!!!!! SKIPPED: {msg} !!!!!!!!!!\n");
            None
        }
    }
}

/// A name no other test of this run, nor of an earlier run against the same broker, uses:
/// `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `scripts/kafka.sh`, which runs Kafka's own tools (`kafka.sh tool kafka-topics ...`) and
/// prints the classpath of Kafka's jars (`kafka.sh classpath`).
pub fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("kafka.sh")
}
