//! A real `runtime serve` process driven by the bench: spawned on a data dir with loopback
//! ports, timed until it prints its ready line, measured through `/proc`, killed or stopped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use rill_runtime::admin::client::Client;

/// The `runtime` binary: `--runtime`, else `RILL_BIN`, else the one next to this executable
/// (`target/<profile>/runtime`, which `cargo build -p rill-runtime` puts there).
pub fn runtime_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    if let Some(p) = std::env::var_os("RILL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot find the bench executable")?;
    let bin = exe
        .parent()
        .map(|d| d.join("runtime"))
        .context("bench executable has no parent dir")?;
    if !bin.exists() {
        bail!(
            "{} not found: build it first with 'cargo build [--release] -p rill-runtime' \
             (the same profile as the bench), or pass --runtime",
            bin.display()
        );
    }
    Ok(bin)
}

/// One host process on one data dir. Killed when dropped.
#[derive(Debug)]
pub struct Host {
    bin: PathBuf,
    /// The data dir; kept across restarts.
    pub data_dir: PathBuf,
    log_path: PathBuf,
    /// Admin API base URL of the running process.
    pub admin: String,
    /// Its Kafka listener (`host:port`), when it runs one.
    pub kafka: Option<String>,
    /// Its schema registry's URL, when it serves one.
    pub schema_registry: Option<String>,
    /// Arguments after `serve --data-dir D` besides the loopback ports (cluster mode's).
    extra: Vec<String>,
    /// `RILL_LOG` of the process (default `warn`).
    log_filter: String,
    child: Option<Child>,
}

impl Host {
    /// Spawns a host on `data_dir` and waits for its ready line.
    pub fn start(bin: &Path, data_dir: &Path) -> anyhow::Result<Host> {
        Host::start_with(bin, data_dir, Vec::new())
    }

    /// Spawns a host with `extra` arguments to `serve` (e.g. `--kafka-cluster B`) and waits
    /// for its ready line; [`Host::spawn`] after a kill passes them again.
    pub fn start_with(bin: &Path, data_dir: &Path, extra: Vec<String>) -> anyhow::Result<Host> {
        let mut h = Host {
            bin: bin.to_owned(),
            data_dir: data_dir.to_owned(),
            log_path: data_dir.with_extension("host.log"),
            admin: String::new(),
            kafka: None,
            schema_registry: None,
            extra,
            log_filter: "warn".into(),
            child: None,
        };
        h.spawn()?;
        Ok(h)
    }

    /// Starts the process and returns how long it took from spawn to its ready line (the
    /// moment the admin API listens and stored deployments are restored).
    pub fn spawn(&mut self) -> anyhow::Result<Duration> {
        anyhow::ensure!(self.child.is_none(), "host already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open {}", self.log_path.display()))?;
        let started = Instant::now();
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--admin-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0"])
            .args(["--schema-registry-addr", "127.0.0.1:0"])
            .args(&self.extra)
            .env("RILL_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("host stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("rill ready") {
                    let _ = tx.send((line, Instant::now()));
                }
            }
        });
        let (line, at) = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "host did not become ready; its log:\n{}",
                    std::fs::read_to_string(&self.log_path).unwrap_or_default()
                );
            }
        };
        self.admin = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("admin="))
            .context("ready line names no admin address")?
            .to_owned();
        let word = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_owned)
        };
        self.kafka = word("kafka=");
        self.schema_registry = word("schema_registry=").filter(|u| u.starts_with("http"));
        self.child = Some(child);
        Ok(at - started)
    }

    /// Sets `RILL_LOG` for the next [`Host::spawn`] (its log goes to `<data dir>.host.log`).
    pub fn set_log_filter(&mut self, filter: &str) {
        filter.clone_into(&mut self.log_filter);
    }

    /// An admin API client.
    pub fn client(&self) -> Client {
        Client::new(&self.admin)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Peak resident set size so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM:").map(|k| k * 1024)
    }

    /// Current resident set size (`VmRSS`), in bytes.
    pub fn rss(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmRSS:").map(|k| k * 1024)
    }

    /// CPU time the host process has used so far (user + system, all threads), from
    /// `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Option<Duration> {
        proc_cpu_time(self.pid()?)
    }

    /// SIGKILL: no clean shutdown, no markers.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the clean exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(s) = c.try_wait()? {
                anyhow::ensure!(s.success(), "host exited with {s}");
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("host did not stop within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time process `pid` has used so far (user + system, all threads), from
/// `/proc/<pid>/stat`.
pub fn proc_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the state (index 0), utime and stime are indexes 11 and 12 (fields 14 and 15
    // of proc(5)), in USER_HZ ticks, which Linux fixes at 100 for user space.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    const USER_HZ: u64 = 100;
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}
