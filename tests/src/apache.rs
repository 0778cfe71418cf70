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

/// A Kafka cluster of a test's own (`scripts/kafka.sh start DIR --nodes N`), for what the
/// run's shared broker cannot show: losing a broker. Stopped when dropped, also when the
/// test panics.
#[derive(Debug)]
pub struct OwnCluster {
    /// Its bootstrap address: every node, comma-separated.
    pub bootstrap: String,
    dir: tempfile::TempDir,
}

impl OwnCluster {
    /// Starts `nodes` (1 or 3) nodes, with topic auto-creation off as on the run's broker,
    /// and waits until each answers with the whole cluster.
    ///
    /// # Panics
    ///
    /// If `kafka.sh start` fails.
    pub fn start(nodes: u32) -> OwnCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        // kafka.sh takes the first run of free ports at or after --port. Start below the
        // kernel's ephemeral range (32768 and up on Linux), where the hosts' port-0 listeners
        // and every client's outgoing connections take theirs: a port found free there can be
        // gone by the time the broker binds it. The run's broker is at 19092.
        let port = 20_000 + (std::process::id() % 1_000) * 12;
        let out = std::process::Command::new(launcher())
            .arg("start")
            .arg(dir.path())
            .args(["--nodes", &nodes.to_string(), "--port", &port.to_string()])
            .arg("--no-auto-create")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run scripts/kafka.sh");
        let cluster = OwnCluster {
            bootstrap: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            dir,
        };
        assert!(
            out.status.success() && !cluster.bootstrap.is_empty(),
            "kafka.sh start --nodes {nodes} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// SIGKILLs node `n` (1-based): the broker is lost without a clean shutdown.
    pub fn kill_node(&self, n: u32) {
        // kafka.sh records each node's PID in DIR/node-N.pid.
        let pid_file = self.dir.path().join(format!("node-{n}.pid"));
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        let ok = std::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -KILL {} (node {n})", pid.trim());
    }

    /// The server log of node `n`, for failure messages.
    pub fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{n}/logs/server.log")))
            .unwrap_or_default()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(launcher())
            .arg("stop")
            .arg(self.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
