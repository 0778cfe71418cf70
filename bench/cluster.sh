#!/usr/bin/env bash
# cluster.sh — the cluster-mode bench (issue 12): starts a one-node Apache Kafka 4.1.1 on a
# free loopback port, runs `rill-bench cluster` against it, stops it.
#
#   bench/cluster.sh [--no-build] [--heap SIZE] [rill-bench cluster options...]
#
#   --no-build    use target/release/{runtime,rill-bench} as they are
#   --heap SIZE   the broker's JVM heap (default 1g)
#   everything else goes to `rill-bench cluster`: --quick, --records N, --partitions P,
#   --hosts 1,2,3, --rounds R, --tries N, --rebalance-hosts H, --only throughput,rebalance
#
# What is measured: docs/benchmarks.md, "Cluster mode". The broker's data and log go to
# target/bench-kafka/ (removed at the start of each run); the hosts' to a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

build=1
heap=1g
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --heap) heap=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf 'cluster.sh: error: %s\n' "$*" >&2; exit 1; }

if [ "$build" = 1 ]; then
  say "building the release host and bench"
  cargo build --quiet --release -p rill-runtime -p rill-bench
fi
for b in runtime rill-bench; do
  [ -x "target/release/$b" ] || die "target/release/$b is missing (run without --no-build)"
done

kafka_dir=$root/target/bench-kafka
scripts/kafka.sh fetch
scripts/kafka.sh stop "$kafka_dir" 2>/dev/null || true
rm -rf "$kafka_dir"
trap 'scripts/kafka.sh stop "$kafka_dir" 2>/dev/null || true' EXIT
say "starting Apache Kafka 4.1.1 (KRaft, one node, heap $heap)"
# A free port from 25092 up (kafka.sh skips taken ones).
bootstrap=$(scripts/kafka.sh start "$kafka_dir" --port 25092 --heap "$heap")
broker_pid=$(cat "$kafka_dir/node-1.pid")
say "Kafka at $bootstrap (pid $broker_pid); load: $(uptime | sed 's/.*load average: //')"
target/release/rill-bench cluster --bootstrap "$bootstrap" --broker-pid "$broker_pid" "${args[@]}"
say "load at the end: $(uptime | sed 's/.*load average: //')"
