#!/usr/bin/env bash
# test.sh — set up what is missing, then run every test: unit, property and integration
# tests (real .wasm in real wasmtime, a real host process, real Kafka clients, and Apache
# Kafka itself as the reference broker of the differential suite), plus a brief run of each
# fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test

# Missing Kafka clients are a failure here, never a silent skip.
export RILL_REQUIRE_KAFKA_CLIENTS=1

echo "== Apache Kafka, the reference broker: one single-node cluster for the whole run"
scripts/kafka.sh fetch
kafka_dir=target/apache-kafka
scripts/kafka.sh stop "$kafka_dir" 2>/dev/null || true
# Auto-creation off: every test creates its topics, and "unknown topic" is comparable
# (the Rill hosts of the differential tests are started with auto-creation off too).
RILL_TEST_APACHE_KAFKA=$(scripts/kafka.sh start "$kafka_dir" --no-auto-create)
export RILL_TEST_APACHE_KAFKA
trap 'scripts/kafka.sh stop "$kafka_dir"' EXIT

echo "== build everything once (the binaries the host tests drive, and every test target)"
# One build of all targets: the binaries then have the same feature set as the tests, so
# `cargo test` below compiles nothing again (building the binaries alone resolved features
# without the dev-dependencies and built wasmtime twice).
cargo build --workspace --all-targets

echo "== cargo test (workspace)"
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt

if [ -x fuzz/run-ci.sh ] && cargo fuzz --version >/dev/null 2>&1; then
  echo "== fuzz (brief)"
  fuzz/run-ci.sh "${RILL_FUZZ_SECONDS:-15}"
else
  echo "== fuzz SKIPPED: no nightly toolchain or cargo-fuzz (scripts/setup.sh --test installs cargo-fuzz)"
fi
echo "== bench (quick: proves it runs, asserts no timings)"
target/debug/rill-bench --quick
echo "== all tests passed"
