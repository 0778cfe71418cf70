#!/usr/bin/env bash
# demo.sh — the whole flow on the embedded default, from a clean clone:
# start a host on a local data dir, create `orders`, deploy the order-confirmation handler,
# produce some orders, show the emitted email requests and the lag going to zero, and a read
# model (examples/order-totals) kept in durable state and queried.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Setting up (installs the Wasm toolchain if missing)"
scripts/setup.sh

step "Building the host and the example handlers"
cargo build --quiet -p rill-runtime --bin runtime
scripts/wasm-build.sh --target wasm32-unknown-unknown --target-dir "$root/target/wasm" -- \
  --quiet --manifest-path examples/Cargo.toml -p notifier -p order-totals -p order-created
runtime() { "$root/target/debug/runtime" "$@"; }
wasm="$root/target/wasm/wasm32-unknown-unknown/release/notifier.wasm"
totals="$root/target/wasm/wasm32-unknown-unknown/release/order_totals.wasm"

data=${RILL_DEMO_DIR:-"$root/target/demo-data"}
rm -rf "$data"
step "Starting a host on $data"
"$root/target/debug/runtime" serve --data-dir "$data" --admin-addr 127.0.0.1:0 \
  --kafka-addr 127.0.0.1:0 --schema-registry-addr 127.0.0.1:0 >"$root/target/demo-host.out" 2>"$root/target/demo-host.log" &
host=$!
trap 'kill -TERM $host 2>/dev/null || true; wait $host 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q '^rill ready' "$root/target/demo-host.out" 2>/dev/null && break
  kill -0 $host 2>/dev/null || { cat "$root/target/demo-host.log"; exit 1; }
  sleep 0.1
done
export RILL_ADMIN=$(sed -n 's/^rill ready admin=\([^ ]*\).*/\1/p' "$root/target/demo-host.out")
kafka=$(sed -n 's/.* kafka=\([^ ]*\).*/\1/p' "$root/target/demo-host.out")
export RILL_SCHEMA_REGISTRY=$(sed -n 's/.* schema_registry=\([^ ]*\).*/\1/p' "$root/target/demo-host.out")
echo "host ready: admin API $RILL_ADMIN, Kafka listener $kafka, schema registry $RILL_SCHEMA_REGISTRY"

step "Creating topics"
run runtime topic create orders --partitions 4 --flush always
run runtime topic create emails --partitions 1

step "Deploying the order-confirmation handler (examples/notifier), paused for now"
run runtime deploy "$wasm" --name notifier --topic orders --output emails --paused

step "Producing 1000 orders, keyed by customer"
for i in $(seq 1 1000); do
  printf 'customer-%d\t{"type":"order_created","order_id":%d,"email":"customer%d@example.com","total_cents":%d}\n' \
    $((i % 37)) "$i" $((i % 37)) $((i * 7 % 10000))
done >"$root/target/demo-orders.txt"
run runtime produce orders --key-separator $'\t' --file "$root/target/demo-orders.txt"

step "The orders wait in the log: the paused handler shows its lag"
run runtime list

step "Resuming: lag going to zero"
run runtime resume notifier
for _ in $(seq 1 100); do
  runtime list
  lag=$(runtime list --json | python3 -c 'import json,sys; print(sum(d["lag"] for d in json.load(sys.stdin)))')
  [ "$lag" = 0 ] && break
  sleep 0.2
done
run runtime list --partitions

step "The first emitted email requests"
run runtime consume emails -n 5

step "A read model in durable state (examples/order-totals): orders and total per customer"
run runtime deploy "$totals" --name order-totals --topic orders
for _ in $(seq 1 100); do
  lag=$(runtime list --json | python3 -c 'import json,sys; print(sum(d["lag"] for d in json.load(sys.stdin)))')
  [ "$lag" = 0 ] && break
  sleep 0.2
done
run runtime state get order-totals customer-1
run runtime state scan order-totals --prefix customer-1 --limit 5

schemas="$root/examples/order-created/schemas"
created="$root/target/wasm/wasm32-unknown-unknown/release/order_created.wasm"
step "Schemas that evolve (examples/order-created): v1, then v2 renames a field and adds one"
run runtime schema register orders-value "$schemas/order_v1.avsc"
run runtime schema check orders-value "$schemas/order_v2.avsc"
run runtime schema register orders-value "$schemas/order_v2.avsc"
step "v3 changes total_cents to a string: the registry refuses it (BACKWARD, the default)"
if runtime schema register orders-value "$schemas/order_v3.avsc"; then
  echo "v3 was accepted: that is a bug" >&2; exit 1
fi
step "A handler built with v1 (reading subject orders-value) is checked against every registered version at deploy"
run runtime topic create orders-created --partitions 1
run runtime topic create order-lines
run runtime deploy "$created" --name order-created --topic orders-created --output order-lines
run runtime schema list orders-value

step "Host status"
run runtime status
echo
echo "Done. The host stops now; its data stays in $data."
