#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (default 20).
# Usage: fuzz/run-ci.sh [seconds]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail

secs="${1:-20}"
cd "$(dirname "$0")"

cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
    echo "== fuzzing ${target} for ${secs}s"
    mkdir -p "corpus/${target}"
    # Valid batches to start from, so the fuzzer gets past the CRC check quickly.
    if [ -d "seeds/${target}" ]; then cp -n seeds/"${target}"/* "corpus/${target}/"; fi
    cargo +nightly fuzz run "${target}" "corpus/${target}" -- -max_total_time="${secs}"
done
