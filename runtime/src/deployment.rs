//! What a deployment is, and how it is kept on disk.
//!
//! A deployment is a Wasm handler attached to one topic as a consumer group. Its spec lives
//! in `<data>/deployments/<name>.toml` and its module bytes in
//! `<data>/modules/<sha256>.wasm`, both written atomically (temp file, fsync, rename), so a
//! restart brings every deployment back exactly as it was, paused or not.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use rill_engine::Limits;

/// Where a new consumer group starts when it has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "at")]
pub enum StartFrom {
    /// The oldest record still in the log.
    Earliest,
    /// Only records appended after the deployment starts.
    Latest,
    /// A given offset (clamped to the log's range).
    Offset(i64),
    /// The first record at or after a timestamp in milliseconds.
    Timestamp(i64),
}

impl StartFrom {
    /// The offset this names in `p`, clamped to the log's range: the log start, the high
    /// watermark, the offset itself, or the first record at or after the timestamp (the high
    /// watermark if there is none). The error says which timestamp could not be looked up.
    pub fn resolve(self, p: &rill_log::Partition) -> Result<i64, String> {
        let o = match self {
            StartFrom::Earliest => p.log_start_offset(),
            StartFrom::Latest => p.high_watermark(),
            StartFrom::Offset(o) => o,
            StartFrom::Timestamp(ts) => p
                .offset_for_timestamp(ts)
                .map_err(|e| format!("finding the offset of timestamp {ts}: {e}"))?
                .unwrap_or_else(|| p.high_watermark()),
        };
        Ok(o.clamp(p.log_start_offset(), p.high_watermark()))
    }
}

impl std::str::FromStr for StartFrom {
    type Err = String;

    /// `earliest`, `latest`, an offset (`42`) or a timestamp in ms (`@1700000000000`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" | "beginning" => Ok(StartFrom::Earliest),
            "latest" | "end" => Ok(StartFrom::Latest),
            _ => {
                if let Some(ts) = s.strip_prefix('@') {
                    ts.parse()
                        .map(StartFrom::Timestamp)
                        .map_err(|_| format!("invalid timestamp '{ts}' (want @MILLISECONDS)"))
                } else {
                    s.parse().map(StartFrom::Offset).map_err(|_| {
                        format!(
                            "invalid start '{s}' (want earliest, latest, OFFSET or @TIMESTAMP_MS)"
                        )
                    })
                }
            }
        }
    }
}

/// What happens to a record that still fails after `max_attempts` tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Append it to `<deployment>.dlq` with the error in its headers, and go on.
    #[default]
    DeadLetter,
    /// Stop the partition and mark the deployment failed.
    Stop,
}

impl std::str::FromStr for OnFailure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dlq" | "dead-letter" | "dead_letter" => Ok(OnFailure::DeadLetter),
            "stop" => Ok(OnFailure::Stop),
            _ => Err(format!("invalid on-failure '{s}' (want dlq or stop)")),
        }
    }
}

/// What a deployment promises about its outputs and its position after a crash
/// (docs/delivery.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Outputs are written, then the position committed: a crash between the two runs the
    /// invocation again, so its outputs may appear twice.
    #[default]
    AtLeastOnce,
    /// An invocation's outputs, its dead letters and the position after it become visible
    /// together in one transaction, or not at all: a read_committed consumer sees each
    /// input's effects once.
    ExactlyOnce,
}

impl Guarantee {
    /// `at-least-once` or `exactly-once`.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Guarantee {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "at-least-once" => Ok(Guarantee::AtLeastOnce),
            "exactly-once" => Ok(Guarantee::ExactlyOnce),
            _ => Err(format!(
                "invalid guarantee '{s}' (want at-least-once or exactly-once)"
            )),
        }
    }
}

/// Everything a deployment was created with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentSpec {
    /// Unique name; also the default group.
    pub name: String,
    /// The topic it consumes.
    pub topic: String,
    /// The consumer group whose offsets it commits.
    pub group: String,
    /// Where to start when the group has no committed offset.
    pub from: StartFrom,
    /// Topics it may emit to. Empty means any topic (created on first emit).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Deploy-time parameters the guest can read (and the environment of a WASI guest).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Per-invocation limits.
    pub limits: Limits,
    /// Tries per record before `on_failure` applies.
    pub max_attempts: u32,
    /// What happens after the last try.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// At least once (the default) or exactly once.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Largest number of records per invocation.
    pub max_batch_records: u32,
    /// Largest number of bytes read per invocation.
    pub max_batch_bytes: usize,
    /// How long to wait for more records before invoking on a small batch.
    #[serde(default)]
    pub linger_ms: u64,
    /// First retry delay; doubles each try.
    #[serde(default = "default_backoff_ms")]
    pub backoff_initial_ms: u64,
    /// Retry delay ceiling.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Hex SHA-256 of the module bytes.
    pub module_hash: String,
    /// Paused deployments keep their offsets and instances but invoke nothing.
    #[serde(default)]
    pub paused: bool,
    /// Partitions stopped by a record that failed its last try under `on_failure = stop`.
    /// Kept here so a restart shows them `failed` instead of quietly retrying; cleared by
    /// resume and by redeploy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<StoppedPartition>,
    /// The module uses durable state (it imports the state functions): it has a store per
    /// partition and a changelog topic `<name>.state`. Set from the module at every start.
    #[serde(default)]
    pub state: bool,
}

/// A partition that stopped on a failed record and waits for a resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoppedPartition {
    /// The partition.
    pub partition: u32,
    /// The record it stopped at (the committed offset).
    pub offset: i64,
    /// The record's last error.
    pub error: String,
}

impl DeploymentSpec {
    /// The changelog topic of its state: `<name>.state`.
    pub fn state_topic(&self) -> String {
        crate::state::changelog_topic(&self.name)
    }

    /// The dead-letter topic: `<name>.dlq`.
    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.name)
    }

    /// Why `partition` is stopped, if it is.
    pub fn stopped_error(&self, partition: u32) -> Option<String> {
        self.stopped
            .iter()
            .find(|s| s.partition == partition)
            .map(|s| format!("stopped at offset {}: {}", s.offset, s.error))
    }
}

/// The first retry delay when a deploy names none, in ms.
pub const DEFAULT_BACKOFF_MS: u64 = 100;

/// The retry delay ceiling when a deploy names none, in ms.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 10_000;

fn default_backoff_ms() -> u64 {
    DEFAULT_BACKOFF_MS
}

fn default_backoff_max_ms() -> u64 {
    DEFAULT_BACKOFF_MAX_MS
}

/// Reading or writing deployment files failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    // The cause is part of the message and deliberately not a `source`: the binary prints
    // the whole chain, which would repeat it.
    #[error("{what} {path}: {cause}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A spec file is not valid.
    #[error("invalid deployment file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// A spec file's deployment name (from the file name) and its content, or why it could not
/// be read.
pub type StoredSpec = (String, Result<DeploymentSpec, StoreError>);

/// The deployments directory and the module store.
#[derive(Debug, Clone)]
pub struct DeploymentStore {
    specs: PathBuf,
    modules: PathBuf,
}

impl DeploymentStore {
    /// Where the state snapshots of deployment `name` are kept: `<data>/state/<name>`.
    pub fn state_dir(&self, name: &str) -> PathBuf {
        self.specs
            .parent()
            .unwrap_or(&self.specs)
            .join("state")
            .join(name)
    }

    /// Opens (creating if needed) the store under a data dir.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let specs = data_dir.join("deployments");
        let modules = data_dir.join("modules");
        for dir in [&specs, &modules] {
            std::fs::create_dir_all(dir).map_err(|cause| StoreError::Io {
                what: "create",
                path: dir.clone(),
                cause,
            })?;
        }
        Ok(DeploymentStore { specs, modules })
    }

    /// Every stored spec, sorted by name. Each file is read on its own, so one unreadable
    /// file costs only its own deployment: it comes back as an error under the name its file
    /// gives, and the others load.
    pub fn load_all(&self) -> Result<Vec<StoredSpec>, StoreError> {
        let io = |cause| StoreError::Io {
            what: "list",
            path: self.specs.clone(),
            cause,
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.specs).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                    continue;
                };
                out.push((name, load_spec(&path)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Writes a spec atomically.
    pub fn save(&self, spec: &DeploymentSpec) -> Result<(), StoreError> {
        let text = toml::to_string(spec).map_err(|e| StoreError::Invalid {
            path: self.spec_path(&spec.name),
            message: e.to_string(),
        })?;
        write_atomic(&self.spec_path(&spec.name), text.as_bytes())
    }

    /// Removes a spec (the module bytes stay: another deployment may share them).
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let path = self.spec_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(cause) => Err(StoreError::Io {
                what: "remove",
                path,
                cause,
            }),
        }
    }

    /// Stores module bytes under their hash.
    pub fn save_module(&self, hash: &str, wasm: &[u8]) -> Result<(), StoreError> {
        let path = self.modules.join(format!("{hash}.wasm"));
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, wasm)
    }

    /// Reads module bytes by hash.
    pub fn load_module(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.modules.join(format!("{hash}.wasm"));
        std::fs::read(&path).map_err(|cause| StoreError::Io {
            what: "read",
            path,
            cause,
        })
    }

    fn spec_path(&self, name: &str) -> PathBuf {
        self.specs.join(format!("{name}.toml"))
    }
}

fn load_spec(path: &Path) -> Result<DeploymentSpec, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|cause| StoreError::Io {
        what: "read",
        path: path.to_owned(),
        cause,
    })?;
    toml::from_str(&text).map_err(|e| StoreError::Invalid {
        path: path.to_owned(),
        message: e.message().replace('\n', " "),
    })
}

/// Writes a file so that a crash leaves either the old or the new content, never a mix.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let io = |what, cause| StoreError::Io {
        what,
        path: path.to_owned(),
        cause,
    };
    // A temp name of its own per write: two deployments of one module store the same file
    // at the same moment, and a shared temp name let one rename the other's file away.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{n}"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
    f.write_all(bytes).map_err(|e| io("write", e))?;
    f.sync_data().map_err(|e| io("fsync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync dir of", e))?;
    }
    Ok(())
}

/// Checks a deployment name: it becomes a file name and part of a topic name.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid deployment name '{name}' (use letters, digits, '-', '_', '.'; at most 200)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_from_parses() {
        assert_eq!(
            "earliest".parse::<StartFrom>().unwrap(),
            StartFrom::Earliest
        );
        assert_eq!("42".parse::<StartFrom>().unwrap(), StartFrom::Offset(42));
        assert_eq!(
            "@1000".parse::<StartFrom>().unwrap(),
            StartFrom::Timestamp(1000)
        );
        assert!("soon".parse::<StartFrom>().is_err());
    }

    #[test]
    fn a_spec_saved_before_guarantees_existed_is_at_least_once() {
        let spec = DeploymentSpec {
            name: "n".into(),
            topic: "t".into(),
            group: "g".into(),
            from: StartFrom::Earliest,
            outputs: Vec::new(),
            env: Vec::new(),
            limits: Limits::default(),
            max_attempts: 3,
            on_failure: OnFailure::default(),
            guarantee: Guarantee::ExactlyOnce,
            max_batch_records: 10,
            max_batch_bytes: 100,
            linger_ms: 0,
            backoff_initial_ms: 1,
            backoff_max_ms: 2,
            module_hash: "h".into(),
            paused: false,
            stopped: Vec::new(),
            state: false,
        };
        let text = toml::to_string(&spec).unwrap();
        assert!(text.contains("guarantee = \"exactly-once\""), "{text}");
        let back: DeploymentSpec = toml::from_str(&text).unwrap();
        assert_eq!(back.guarantee, Guarantee::ExactlyOnce);
        let old: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("guarantee"))
            .collect();
        let back: DeploymentSpec = toml::from_str(&old.join("\n")).unwrap();
        assert_eq!(back.guarantee, Guarantee::AtLeastOnce);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["guarantee"], "exactly-once");
        assert_eq!("at-least-once".parse(), Ok(Guarantee::AtLeastOnce));
        assert!("once".parse::<Guarantee>().is_err());
    }

    #[test]
    fn concurrent_saves_of_one_module_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeploymentStore::open(dir.path()).unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..20 {
                        let path = dir.path().join(format!("m{i}.wasm"));
                        write_atomic(&path, b"same bytes").expect("every write succeeds");
                    }
                });
            }
        });
        assert_eq!(
            std::fs::read(dir.path().join("m0.wasm")).unwrap(),
            b"same bytes"
        );
        assert!(store.load_all().unwrap().is_empty());
    }

    #[test]
    fn names() {
        assert!(validate_name("notifier-v2").is_ok());
        assert!(validate_name("../etc").is_err());
        assert!(validate_name("").is_err());
    }
}
