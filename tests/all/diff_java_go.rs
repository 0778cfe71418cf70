//! The differential suite with Java's kafka-clients 4.1.1 (Producer, Consumer, AdminClient)
//! and franz-go (Go): the same scenario, run by the same client against Apache Kafka 4.1.1
//! and against Rill, observations compared (`rill_tests::diff`).
//!
//! The clients are `tests/kafka/java/DiffClient.java` (compiled here with `javac` against
//! the classpath `scripts/kafka.sh classpath` prints, once per test binary run, skipped when
//! the classes are newer than the source) and the Go module `tests/kafka/go` (built here with
//! `go build`, once per run; Go's build cache makes a second build cheap). A missing `java`,
//! `javac` or `go` skips these tests loudly, unless `RILL_REQUIRE_KAFKA_CLIENTS` is set,
//! when it fails them.
//!
//! Every Rill host is started with Kafka auto-creation off, as the reference broker is
//! (`scripts/kafka.sh start --no-auto-create`). Deliberate deviations are the JSON pointers
//! passed to `assert_same`, each with its reason beside it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

use rill_tests::diff;
use rill_tests::host::TestHost;

/// Where the test binary's build puts things: `target/` (the test executable lives in
/// `target/<profile>/deps/`).
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .expect("target dir above target/<profile>/deps")
        .to_path_buf()
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka")
}

use crate::kafka::have_tool as have;

fn newest_mtime(dir: &Path, ext: &str) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
}

/// `java -cp target/diff-java:<kafka classpath> DiffClient`, compiling it (and the other
/// sources beside it, such as `DiffTxn.java`) first if needed; `None` (after a loud skip)
/// without a JDK.
pub(crate) fn java() -> Option<Vec<OsString>> {
    static PROGRAM: OnceLock<Option<Vec<OsString>>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            let install = "apt-get install -y openjdk-17-jdk-headless maven (scripts/kafka.sh \
                           fetch then assembles kafka-clients 4.1.1)";
            if !(have("java", install, Command::new("java").arg("-version"))
                && have("javac", install, Command::new("javac").arg("-version")))
            {
                return None;
            }
            let out = Command::new(rill_tests::apache::launcher())
                .arg("classpath")
                .stdin(Stdio::null())
                .output()
                .expect("run scripts/kafka.sh classpath");
            assert!(
                out.status.success(),
                "scripts/kafka.sh classpath failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let cp = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let src = clients_dir().join("java");
            let classes = target_dir().join("diff-java");
            let fresh = match (
                newest_mtime(&src, "java"),
                std::fs::metadata(classes.join("DiffClient.class")).and_then(|m| m.modified()),
            ) {
                (Some(s), Ok(c)) => c > s,
                _ => false,
            };
            if !fresh {
                std::fs::create_dir_all(&classes).expect("target/diff-java");
                let mut sources: Vec<PathBuf> = std::fs::read_dir(&src)
                    .expect("tests/kafka/java")
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "java"))
                    .collect();
                sources.sort();
                let out = Command::new("javac")
                    .args(["-nowarn", "-encoding", "UTF-8", "-cp", &cp, "-d"])
                    .arg(&classes)
                    .args(&sources)
                    .stdin(Stdio::null())
                    .output()
                    .expect("run javac");
                assert!(
                    out.status.success(),
                    "javac {sources:?} failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let mut full = classes.into_os_string();
            full.push(":");
            full.push(&cp);
            Some(vec![
                "java".into(),
                "-Xss1m".into(),
                "-XX:TieredStopAtLevel=1".into(),
                "-cp".into(),
                full,
                "DiffClient".into(),
            ])
        })
        .clone()
}

/// `target/diff-go/diffclient`, built with `go build` once per run; `None` (after a loud
/// skip) without Go.
pub(crate) fn go() -> Option<Vec<OsString>> {
    static PROGRAM: OnceLock<Option<Vec<OsString>>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            if !have(
                "go",
                "Go 1.26 (https://go.dev/dl/); franz-go comes from the Go module proxy",
                Command::new("go").arg("version"),
            ) {
                return None;
            }
            let bin = target_dir().join("diff-go").join("diffclient");
            let out = Command::new("go")
                .args(["build", "-o"])
                .arg(&bin)
                .arg(".")
                .current_dir(clients_dir().join("go"))
                .stdin(Stdio::null())
                .output()
                .expect("run go build");
            assert!(
                out.status.success(),
                "go build of tests/kafka/go failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(vec![bin.into_os_string()])
        })
        .clone()
}

/// A Rill host with Kafka auto-creation off, as the reference broker.
pub(crate) fn rill() -> (TestHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("rill.toml");
    std::fs::write(&cfg, "[kafka]\nauto_create_topics = false\n").expect("write config");
    let h = TestHost::start_with(&["--config", cfg.to_str().expect("utf-8 path")]);
    (h, dir)
}

/// Runs `scenario` with `program` on both brokers and compares, minus `deviations`.
fn check(program: Option<Vec<OsString>>, scenario: &str, deviations: &[&str]) {
    let Some(program) = program else { return };
    if rill_tests::apache::bootstrap().is_none() {
        return;
    }
    let (h, _cfg) = rill();
    let Some(outcome) = diff::run(&program, scenario, &h, &[]) else {
        return;
    };
    outcome.assert_same(deviations);
}

// ---- Java kafka-clients 4.1.1 ----

#[test]
fn java_produce_consume() {
    check(java(), "produce-consume", &[]);
}

#[test]
fn java_codecs() {
    check(java(), "codecs", &[]);
}

#[test]
fn java_group_split_takeover() {
    check(java(), "group-split-takeover", &[]);
}

#[test]
fn java_group_restart_resume() {
    check(java(), "group-restart-resume", &[]);
}

#[test]
fn java_offsets_by_time() {
    check(java(), "offsets-by-time", &[]);
}

#[test]
fn java_out_of_range() {
    check(java(), "out-of-range", &[]);
}

#[test]
fn java_admin() {
    check(java(), "admin", &[]);
}

/// Rill has no ACLs and does not offer DescribeAcls; Kafka without an authorizer answers
/// `SECURITY_DISABLED`, so the Java client sees `UnsupportedVersionException` from Rill.
const NO_ACLS: &str = "/describe_acls";

#[test]
fn java_errors() {
    check(java(), "errors", &[NO_ACLS]);
}

// ---- franz-go ----

#[test]
fn go_produce_consume() {
    // franz-go's producer is idempotent by default (its batches carry producer id, epoch
    // and sequence numbers), so this also covers its idempotent mode.
    check(go(), "produce-consume", &[]);
}

#[test]
fn go_codecs() {
    check(go(), "codecs", &[]);
}

#[test]
fn go_group_split_takeover() {
    check(go(), "group-split-takeover", &[]);
}

#[test]
fn go_group_restart_resume() {
    check(go(), "group-restart-resume", &[]);
}

#[test]
fn go_offsets_by_time() {
    check(go(), "offsets-by-time", &[]);
}

#[test]
fn go_out_of_range() {
    check(go(), "out-of-range", &[]);
}

#[test]
fn go_admin() {
    check(go(), "admin", &[]);
}

/// Rill has no share groups (KIP-932) and does not offer ShareGroupDescribe, so franz-go
/// refuses to send it (`UNSUPPORTED_VERSION`); Apache Kafka 4.1 may advertise it and then
/// answers `COORDINATOR_NOT_AVAILABLE` while share groups are not enabled (seen in CI, not
/// in every run).
const NO_SHARE_GROUPS: &str = "/share_group_describe";

#[test]
fn go_errors() {
    check(go(), "errors", &[NO_ACLS, NO_SHARE_GROUPS]);
}
