//! A real host process for tests: `runtime serve` on a temp data dir and free loopback ports.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rill_runtime::admin::client::Client;

/// The `runtime` binary the tests drive. `scripts/test.sh` builds it before the tests; set
/// `RILL_BIN` to use another.
pub fn runtime_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RILL_BIN") {
        return PathBuf::from(p);
    }
    // Test executables live in target/<profile>/deps/; the binary one level up.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir.join("runtime");
    assert!(
        bin.exists(),
        "{} not found: build it first with 'cargo build -p rill-runtime' (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A running host. Killed when dropped.
#[derive(Debug)]
pub struct TestHost {
    /// Admin API base URL.
    pub admin: String,
    /// Kafka listener address.
    pub kafka: SocketAddr,
    /// The data dir (kept across restarts).
    pub data_dir: PathBuf,
    /// Where the host's stderr goes.
    pub log_path: PathBuf,
    /// Cluster mode: this host's id in the cluster (`host=` of the ready line).
    pub host_id: Option<String>,
    /// Cluster mode: the bootstrap it is attached to (`cluster=` of the ready line).
    pub cluster: Option<String>,
    /// This host's schema registry (`schema_registry=` of the ready line), when it serves
    /// one: `http://127.0.0.1:PORT`.
    pub schema_registry: Option<String>,
    extra: Vec<String>,
    /// Whether to pass a free `--kafka-addr` (never in cluster mode, whose listener is off).
    kafka_listener: bool,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestHost {
    /// Starts a host on a fresh temp dir.
    pub fn start() -> TestHost {
        Self::start_with(&[])
    }

    /// Starts a host on a fresh temp dir with extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> TestHost {
        Self::start_new(extra, true)
    }

    /// Starts a host in cluster mode (docs/cluster.md), attached to the Kafka cluster at
    /// `bootstrap`, with extra `serve` flags (e.g. `--cluster-host-id`, or `--config` naming
    /// a catalog topic of its own). Its group sessions time out after 6 s, so a killed
    /// host's partitions move within seconds, as docs/cluster.md suggests for tests. No
    /// `--kafka-addr` is passed: the embedded listener is off in cluster mode.
    pub fn start_cluster(bootstrap: &str, extra: &[&str]) -> TestHost {
        let mut args = vec![
            "--kafka-cluster",
            bootstrap,
            "--cluster-property",
            "session.timeout.ms=6000",
            "--cluster-property",
            "heartbeat.interval.ms=1000",
        ];
        args.extend_from_slice(extra);
        let h = Self::start_new(&args, false);
        assert!(
            h.host_id.is_some() && h.cluster.is_some(),
            "a cluster host's ready line names its host and cluster; its log:\n{}",
            h.log()
        );
        h
    }

    fn start_new(extra: &[&str], kafka_listener: bool) -> TestHost {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let mut h = TestHost {
            admin: String::new(),
            kafka: "127.0.0.1:0".parse().expect("addr"),
            log_path: tmp.path().join("host.log"),
            data_dir,
            host_id: None,
            cluster: None,
            schema_registry: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            kafka_listener,
            child: None,
            _tmp: Some(tmp),
        };
        h.spawn();
        h
    }

    /// Starts (or restarts) the process on the same data dir and waits until it serves.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "host already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("host log file");
        // A `--kafka-addr` among the extra flags replaces the free port: a test whose Kafka
        // clients live through restarts needs the same port every time.
        let kafka_given = self
            .extra
            .iter()
            .any(|a| a == "--kafka-addr" || a.starts_with("--kafka-addr="));
        let kafka_default: &[&str] = if kafka_given || !self.kafka_listener {
            &[]
        } else {
            &["--kafka-addr", "127.0.0.1:0"]
        };
        // Tests run side by side: the registry gets a free port unless a test names one.
        let registry_given = self
            .extra
            .iter()
            .any(|a| a.starts_with("--schema-registry-addr"));
        let registry_default: &[&str] = if registry_given {
            &[]
        } else {
            &["--schema-registry-addr", "127.0.0.1:0"]
        };
        let mut child = Command::new(runtime_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--admin-addr", "127.0.0.1:0"])
            .args(kafka_default)
            .args(registry_default)
            .args(&self.extra)
            .env("RILL_LOG", "info,rill_runtime=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn runtime serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("rill ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("host did not become ready; its log:\n{}", self.log());
            }
        };
        for word in line.split_whitespace() {
            if let Some(a) = word.strip_prefix("admin=") {
                self.admin = a.to_owned();
            }
            if let Some(k) = word.strip_prefix("kafka=")
                && let Ok(k) = k.parse()
            {
                self.kafka = k;
            }
            if let Some(id) = word.strip_prefix("host=") {
                self.host_id = Some(id.to_owned());
            }
            if let Some(c) = word.strip_prefix("cluster=") {
                self.cluster = Some(c.to_owned());
            }
            if let Some(r) = word.strip_prefix("schema_registry=") {
                self.schema_registry = r.starts_with("http://").then(|| r.to_owned());
            }
        }
        self.child = Some(child);
    }

    /// The host's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// An admin API client.
    pub fn client(&self) -> Client {
        Client::new(&self.admin)
    }

    /// Runs `runtime --admin URL ARGS...`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(runtime_bin())
            .arg("--admin")
            .arg(&self.admin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run runtime CLI")
    }

    /// Runs the CLI and returns its stdout; panics with its stderr if it failed.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "runtime {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI with `input` on stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(runtime_bin())
            .arg("--admin")
            .arg(&self.admin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run runtime CLI");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait CLI")
    }

    /// SIGKILL: no clean shutdown, no markers.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends the process a signal by name (`STOP` freezes it, `CONT` thaws it).
    pub fn signal(&self, name: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(c.id().to_string())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -{name} {}", c.id());
        }
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `f` until it returns `Some` or `timeout` passes.
    pub fn wait_for<T>(&self, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.kill();
    }
}
