//! The differential harness: one scenario, run by the same client against Apache Kafka and
//! against Rill, and the two observations compared.
//!
//! A client program (a Python script, a Java class, a Go binary) is invoked as
//!
//! ```text
//! <program...> <scenario> --bootstrap HOST:PORT --topic T --group G [extra args...]
//! ```
//!
//! where `T` and `G` are names no other test uses on that broker (the Apache Kafka broker is
//! shared by the whole run). It prints one JSON value, its *observation*, as the last line of
//! its stdout, exits 0, and writes diagnostics to stderr. An observation holds only what
//! should not depend on which broker served it (no topic names, no wall-clock times).
//! [`run`](crate::diff::run) takes one observation from each broker;
//! [`Outcome::assert_same`](crate::diff::Outcome::assert_same) compares them,
//! minus the JSON pointers a test names as deliberate deviations (each also listed in
//! `docs/kafka.md` with its reason).

use std::ffi::OsString;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::apache;
use crate::host::TestHost;

/// What one scenario observed on each broker.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario's name, for messages.
    pub scenario: String,
    /// Observed against Apache Kafka.
    pub kafka: Value,
    /// Observed against Rill.
    pub rill: Value,
}

/// Runs `program scenario --bootstrap B --topic T --group G extra...` against `bootstrap` and
/// returns the JSON value on the last line of its stdout, or an error with its output.
pub fn observe(
    program: &[OsString],
    scenario: &str,
    bootstrap: &str,
    extra: &[&str],
) -> Result<Value, String> {
    let topic = apache::unique(&format!("diff-{scenario}"));
    let group = apache::unique(&format!("diff-{scenario}-g"));
    let (exe, args) = program.split_first().expect("a program");
    let out = Command::new(exe)
        .args(args)
        .arg(scenario)
        .args([
            "--bootstrap",
            bootstrap,
            "--topic",
            &topic,
            "--group",
            &group,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {exe:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "{exe:?} {args:?} {scenario} against {bootstrap} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        ));
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last).map_err(|e| {
        format!(
            "{scenario} against {bootstrap}: the last stdout line is not JSON ({e}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        )
    })
}

/// Runs `scenario` with `program` against the run's Apache Kafka broker and against `rill`.
/// `None` (after a loud skip message) when no Apache Kafka broker was started and none is
/// required; see [`apache::bootstrap`].
///
/// # Panics
///
/// If the client fails against either broker: the message carries its output and the tail
/// of Rill's log.
pub fn run(
    program: &[OsString],
    scenario: &str,
    rill: &TestHost,
    extra: &[&str],
) -> Option<Outcome> {
    run_checked(program, scenario, rill, extra, |_| {})
}

/// [`run`], with `check_kafka` called on Apache Kafka's observation before the scenario runs
/// against Rill: a test asserts there what the scenario must show on the reference broker,
/// so a scenario that does not exercise what it claims fails as such, also while Rill fails
/// the scenario in another way.
///
/// # Panics
///
/// As [`run`], and where `check_kafka` panics.
pub fn run_checked(
    program: &[OsString],
    scenario: &str,
    rill: &TestHost,
    extra: &[&str],
    check_kafka: impl FnOnce(&Value),
) -> Option<Outcome> {
    let kafka = apache::bootstrap()?;
    let on_kafka = observe_twice(program, scenario, &kafka, extra)
        .unwrap_or_else(|e| panic!("against Apache Kafka: {e}"));
    check_kafka(&on_kafka);
    let on_rill =
        observe_twice(program, scenario, &rill.kafka.to_string(), extra).unwrap_or_else(|e| {
            let log = rill.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "against Rill: {e}\n--- Rill's log (tail)\n{}",
                tail.join("\n")
            )
        });
    Some(Outcome {
        scenario: scenario.to_owned(),
        kafka: on_kafka,
        rill: on_rill,
    })
}

/// [`observe`], tried a second time (with new names) if the client fails. The clients'
/// group scenarios wait on joins and timeouts, and on a loaded 2-core machine a client
/// has been seen to time out once against either broker; a failure that happens twice is a
/// failure. A difference between observations is never retried.
fn observe_twice(
    program: &[OsString],
    scenario: &str,
    bootstrap: &str,
    extra: &[&str],
) -> Result<Value, String> {
    observe(program, scenario, bootstrap, extra).or_else(|first| {
        eprintln!(
            "!!! {scenario} against {bootstrap} failed once; trying again. The failure:\n{first}"
        );
        observe(program, scenario, bootstrap, extra)
    })
}

impl Outcome {
    /// Asserts that both brokers gave the same observation, once the values at the JSON
    /// pointers in `deviations` (deliberate differences, documented in docs/kafka.md) are
    /// removed from both.
    ///
    /// # Panics
    ///
    /// On any other difference, showing both observations.
    pub fn assert_same(&self, deviations: &[&str]) {
        let mut k = self.kafka.clone();
        let mut r = self.rill.clone();
        for p in deviations {
            remove_pointer(&mut k, p);
            remove_pointer(&mut r, p);
        }
        assert!(
            k == r,
            "{}: Rill and Apache Kafka differ\n--- Apache Kafka\n{}\n--- Rill\n{}",
            self.scenario,
            serde_json::to_string_pretty(&k).unwrap_or_default(),
            serde_json::to_string_pretty(&r).unwrap_or_default()
        );
    }
}

/// Removes the value at JSON pointer `p` (RFC 6901), if present.
fn remove_pointer(v: &mut Value, p: &str) {
    let Some((parent, last)) = p.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match v.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_are_removed() {
        let mut v: Value = serde_json::json!({"a": {"b": 1, "c": [1, 2, 3]}, "d/e": 4});
        remove_pointer(&mut v, "/a/b");
        remove_pointer(&mut v, "/a/c/1");
        remove_pointer(&mut v, "/d~1e");
        remove_pointer(&mut v, "/missing/x");
        assert_eq!(v, serde_json::json!({"a": {"c": [1, 3]}}));
    }
}
