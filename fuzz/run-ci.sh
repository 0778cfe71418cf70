#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (default 20): batch_decode and
# index_lookup (rill-log), kafka_request_decode (rill-kafka), abi_boundary (rill-engine),
# schema_inputs (rill-schema).
# Every target runs even if an earlier one fails; the script fails if any did.
# Usage: fuzz/run-ci.sh [seconds]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail

secs="${1:-20}"
cd "$(dirname "$0")"

cargo +nightly fuzz build
failed=()
for target in $(cargo +nightly fuzz list); do
    echo "== fuzzing ${target} for ${secs}s"
    mkdir -p "corpus/${target}"
    # Valid inputs to start from, so the fuzzer gets past the CRC check quickly.
    if [ -d "seeds/${target}" ]; then cp -n seeds/"${target}"/* "corpus/${target}/"; fi
    if ! cargo +nightly fuzz run "${target}" "corpus/${target}" -- -max_total_time="${secs}"; then
        failed+=("${target}")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "== fuzz targets that failed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
