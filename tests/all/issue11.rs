//! Issue 11: the command line and the admin API (the Kafka-protocol parts are in
//! `kafka.rs` and in the crates' own tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use rill_tests::host::{TestHost, runtime_bin};

/// `runtime consume t | head -3`: the reader closes the pipe early. The command must end
/// quietly with status 0, as cat does, not panic ("failed printing to stdout: Broken
/// pipe", status 101).
#[test]
fn issue11_consume_into_a_closed_pipe_exits_quietly() {
    let h = TestHost::start();
    h.cli_ok(&["topic", "create", "emails"]);
    // Far more than a pipe buffer holds, so the command is still writing when we close.
    let input: String = (0..5_000)
        .map(|i| format!("email number {i} {}\n", "x".repeat(100)))
        .collect();
    let out = h.cli_stdin(&["produce", "emails"], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(runtime_bin())
        .args(["--admin", &h.admin, "consume", "emails"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn runtime consume");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for _ in 0..3 {
        lines.next().expect("a line").expect("read");
    }
    drop(lines);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert!(stderr.is_empty(), "nothing on stderr either: {stderr}");
}

/// Sends `head` (a request without its body, or with part of it) and returns the status
/// line and the body of the answer.
fn http(h: &TestHost, head: &str, body: &[u8]) -> (String, String) {
    let addr = h.admin.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("send head");
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.lines().next().unwrap_or_default().to_string();
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

/// The admin API read a body of any size (a 50 MB produce body was parsed before being
/// refused). Over `admin_max_body_bytes` it is refused with 413 and a one-line JSON error,
/// before the body is sent; a body under the cap still works.
#[test]
fn issue11_admin_api_refuses_an_oversized_body_unread() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rill.toml");
    std::fs::write(&config, "admin_max_body_bytes = 1048576\n").unwrap();
    let h = TestHost::start_with(&["--config", config.to_str().unwrap()]);
    h.cli_ok(&["topic", "create", "t"]);

    // 50 MB announced, 1 KiB sent: the answer comes without the rest.
    let head = "POST /v1/topics/t/records HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n";
    let started = std::time::Instant::now();
    let (status, body) = http(&h, head, &[b' '; 1024]);
    assert!(status.contains(" 413 "), "{status} {body}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON error body");
    let msg = v["error"].as_str().expect("an error string");
    assert!(msg.contains("admin_max_body_bytes"), "{msg}");
    assert!(!msg.contains('\n'));
    assert!(started.elapsed() < Duration::from_secs(5));

    // Chunked, no length: refused once the cap is passed, in the same shape.
    let head = "POST /v1/topics/t/records HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = vec![b' '; 64 * 1024];
    let mut body = Vec::new();
    for _ in 0..20 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = http(&h, head, &body);
    assert!(status.contains(" 413 "), "{status} {text}");
    assert!(text.contains("admin_max_body_bytes"), "{text}");

    // The CLI, whose body is over the cap, says so in one line (the host hangs up before
    // the body is sent, so the CLI cannot read the 413 itself).
    let big: String = (0..2000).map(|i| format!("{i:0>1000}\n")).collect();
    let out = h.cli_stdin(&["produce", "t", "--batch", "5000"], &big);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("admin_max_body_bytes"), "{err}");

    // Under the cap: accepted.
    let out = h.cli_stdin(&["produce", "t"], "a\nb\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `runtime new` scaffolds a `.gitignore` with the crate's `target/`, and the repository
/// ignores the `target/` that `runtime build examples/<name>` leaves in an example.
#[test]
fn issue11_build_output_is_ignored_by_git() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(runtime_bin())
        .args(["new", "handler", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run runtime new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ignore = std::fs::read_to_string(dir.path().join("handler/.gitignore"))
        .expect("runtime new writes .gitignore");
    assert!(
        ignore
            .lines()
            .any(|l| l.trim() == "/target" || l.trim() == "target/"),
        "{ignore}"
    );

    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args([
            "check-ignore",
            "-q",
            "examples/notifier/target/wasm32-unknown-unknown",
        ])
        .status();
    match git {
        Ok(s) if s.code() == Some(128) => eprintln!("not a git checkout: skipping"),
        Ok(s) => assert!(
            s.success(),
            "examples/notifier/target is not ignored by git"
        ),
        Err(e) => eprintln!("git not available ({e}): skipping"),
    }
}
