#!/usr/bin/env bash
# kafka-side-by-side.sh — Apache Kafka and Rill side by side, in one sitting, on one machine,
# with the same Java clients and the same settings (issue 11). Prints a Markdown table with
# the ratio Rill / Kafka of every figure.
#
#   bench/kafka-side-by-side.sh [--records N] [--quick] [--rounds R] [--only LIST] [--no-build]
#
#   --records N   records per run (default 5,000,000; --quick: 20,000)
#   --quick       20,000 records, timings printed but not judged (1.5 min at load 19,
#                 mostly JVM start-ups)
#   --rounds R    repeat the producer and consumer runs R times, Kafka and Rill alternating
#                 (default 1); every round is printed, the table shows the median
#   --only LIST   comma-separated subset of: produce, consume, streams (default all)
#   --no-build    use the binaries, module and classes already built
#
# What runs (see docs/benchmarks.md, "Apache Kafka side by side"):
#   1. kafka-producer-perf-test (Kafka's ProducerPerformance), N × 100 B, 4 partitions,
#      acks=1 and acks=all, against Apache Kafka (no fsync, its default) and Rill with the
#      topic at flush `never` (same durability) and at flush `always` (fsync before the ack).
#   2. kafka-consumer-perf-test (ConsumerPerformance) over the N records of the acks=1 topic.
#   3. The filter of examples/filter: Kafka Streams (bench/streams/FilterApp.java) on Apache
#      Kafka against the Wasm filter deployed on Rill, over N records of bench/src/workload.rs.
#
# Ports: Apache Kafka 24092 (controller 24093), Rill's Kafka door 24192, admin API 24193.
# Everything started here is stopped on exit; data goes to target/side-by-side/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

records=5000000
quick=0
rounds=1
only=produce,consume,streams
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "kafka-side-by-side: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$quick" = 1 ] && [ "$records" = 5000000 ] && records=20000
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

KAFKA_PORT=24092
RILL_KAFKA=127.0.0.1:24192
RILL_ADMIN_ADDR=127.0.0.1:24193
PARTITIONS=4
STREAM_THREADS=$(nproc)
# The producer settings, identical for both brokers (the perf test and the Streams loader).
PRODUCER_PROPS=(batch.size=262144 linger.ms=5 compression.type=none buffer.memory=67108864
  max.in.flight.requests.per.connection=5)

work=$root/target/side-by-side
out=$work/results
kafka_dir=$work/kafka
rill_dir=$work/rill-data
classes=$work/classes
bin=$root/target/release/runtime
wasm=$root/target/wasm/wasm32-unknown-unknown/release/filter.wasm
say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf 'kafka-side-by-side: error: %s\n' "$*" >&2; exit 1; }

# ---- build ---------------------------------------------------------------------------------
if [ "$build" = 1 ]; then
  say "building the release host, the Wasm filter and the Java side"
  cargo build --quiet --release -p rill-runtime --bin runtime
  scripts/wasm-build.sh --target wasm32-unknown-unknown --target-dir "$root/target/wasm" -- \
    --quiet --manifest-path examples/Cargo.toml -p filter
fi
cp_kafka=$(scripts/kafka.sh classpath)
if [ "$build" = 1 ] || [ ! -f "$classes/FilterApp.class" ]; then
  mkdir -p "$classes"
  javac -d "$classes" -cp "$cp_kafka" bench/streams/FilterApp.java
fi
[ -x "$bin" ] || die "$bin is missing (run without --no-build)"
[ -f "$wasm" ] || die "$wasm is missing (run without --no-build)"

# ---- brokers -------------------------------------------------------------------------------
rm -rf "$rill_dir" "$out"
mkdir -p "$work" "$out"
rill_pid=""
cleanup() {
  [ -n "$rill_pid" ] && { kill -TERM "$rill_pid" 2>/dev/null || true; wait "$rill_pid" 2>/dev/null || true; }
  scripts/kafka.sh stop "$kafka_dir" 2>/dev/null || true
}
trap cleanup EXIT

say "starting Apache Kafka 4.1.1 (KRaft, one node, heap 1 GiB) and Rill"
scripts/kafka.sh stop "$kafka_dir" 2>/dev/null || true
rm -rf "$kafka_dir"
KAFKA=$(scripts/kafka.sh start "$kafka_dir" --port "$KAFKA_PORT" --heap 1g)
[ "$KAFKA" = "127.0.0.1:$KAFKA_PORT" ] || die "Kafka came up at $KAFKA, not 127.0.0.1:$KAFKA_PORT (ports taken?)"
kafka_pid=$(cat "$kafka_dir/node-1.pid")
"$bin" serve --data-dir "$rill_dir" --kafka-addr "$RILL_KAFKA" --admin-addr "$RILL_ADMIN_ADDR" \
  --no-schema-registry >"$work/rill.out" 2>"$work/rill.log" &
rill_pid=$!
for _ in $(seq 1 300); do
  grep -q '^rill ready' "$work/rill.out" 2>/dev/null && break
  kill -0 "$rill_pid" 2>/dev/null || { cat "$work/rill.log" >&2; die "the Rill host exited"; }
  sleep 0.1
done
grep -q '^rill ready' "$work/rill.out" || die "the Rill host did not get ready in 30 s"
export RILL_ADMIN=http://$RILL_ADMIN_ADDR
RILL=$RILL_KAFKA

# ---- helpers -------------------------------------------------------------------------------
# CPU seconds (user + system, all threads) a process has used so far.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' "/proc/$1/stat"; }
tool() { scripts/kafka.sh tool "$@"; }
kafka_topic() { # NAME PARTITIONS
  tool kafka-topics --bootstrap-server "$KAFKA" --create --topic "$1" --partitions "$2" \
    --replication-factor 1 >/dev/null
}
rill_topic() { # NAME PARTITIONS FLUSH
  "$bin" topic create "$1" --partitions "$2" --flush "$3" >/dev/null
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# Median of the numbers on stdin.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "-" || b == "-") print "-"; else printf "%.2f×", a / b }'; }

# One line per measurement into $out/<kind>.tsv:
#   produce: broker flush acks round rate mb_s avg max p50 p95 p99 p999 broker_cpu client_cpu load
#   consume: broker round rate fetch_rate mb_s records broker_cpu client_cpu load
#   streams: side records out secs rate first_to_last cpu ns_per_record load

produce() { # NAME BOOTSTRAP PID FLUSH ACKS ROUND
  local name=$1 bs=$2 pid=$3 flush=$4 acks=$5 round=$6 topic line c0 c1 load t
  topic="perf-$name-$flush-acks$acks-$round"
  if [ "$name" = kafka ]; then kafka_topic "$topic" "$PARTITIONS"; else rill_topic "$topic" "$PARTITIONS" "$flush"; fi
  load=$(loadavg)
  c0=$(cpu_of "$pid")
  t=$( { TIMEFORMAT='%U %S'; time tool kafka-producer-perf-test --topic "$topic" \
        --num-records "$records" --record-size 100 --throughput -1 \
        --producer-props bootstrap.servers="$bs" acks="$acks" "${PRODUCER_PROPS[@]}" \
        >"$out/produce-$name-$flush-$acks-$round.txt" 2>"$out/produce-$name-$flush-$acks-$round.err" || true; } 2>&1 )
  c1=$(cpu_of "$pid")
  line=$(grep ' records sent, ' "$out/produce-$name-$flush-$acks-$round.txt" | tail -1) ||
    die "the producer perf test against $name printed no summary: $(tail -3 "$out/produce-$name-$flush-$acks-$round.err")"
  # "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, P50 ms 50th,
  #  P95 ms 95th, P99 ms 99th, P999 ms 99.9th."
  echo "$line" | awk -v n="$name" -v f="$flush" -v a="$acks" -v r="$round" -v b="$(awk -v x="$c0" -v y="$c1" 'BEGIN{printf "%.2f", y-x}')" \
    -v c="$(echo "$t" | awk '{printf "%.2f", $1+$2}')" -v l="$load" -v want="$records" -F'[ ,(]+' '{
      if ($1 != want) { print "records sent " $1 " != " want > "/dev/stderr"; exit 1 }
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, f, a, r, $4, $6, $8, $12, $16, $19, $22, $25, b, c, l }' \
    >>"$out/produce.tsv"
  printf '   %-6s flush %-6s acks=%-3s round %s: %s\n' "$name" "$flush" "$acks" "$round" "$line" >&2
  echo "$topic"
}

consume() { # NAME BOOTSTRAP PID TOPIC ROUND
  local name=$1 bs=$2 pid=$3 topic=$4 round=$5 c0 c1 load t line
  load=$(loadavg)
  c0=$(cpu_of "$pid")
  t=$( { TIMEFORMAT='%U %S'; time tool kafka-consumer-perf-test --bootstrap-server "$bs" \
        --topic "$topic" --messages "$records" --group "perf-consumer-$name-$round-$$" \
        --timeout 60000 >"$out/consume-$name-$round.txt" 2>"$out/consume-$name-$round.err" || true; } 2>&1 )
  c1=$(cpu_of "$pid")
  # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
  # rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
  line=$(grep -v '^start.time' "$out/consume-$name-$round.txt" | grep ', ' | tail -1) ||
    die "the consumer perf test against $name printed no summary: $(tail -3 "$out/consume-$name-$round.err")"
  echo "$line" | awk -F', *' -v n="$name" -v r="$round" -v b="$(awk -v x="$c0" -v y="$c1" 'BEGIN{printf "%.2f", y-x}')" \
    -v c="$(echo "$t" | awk '{printf "%.2f", $1+$2}')" -v l="$load" -v want="$records" '{
      if ($5 + 0 < want + 0) { print "consumed " $5 " < " want > "/dev/stderr"; exit 1 }
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, r, $6, $10, $4, $5, b, c, l }' >>"$out/consume.tsv"
  printf '   %-6s round %s: %s\n' "$name" "$round" "$line" >&2
}

# ---- 1 + 2: producer and consumer perf tests -------------------------------------------------
declare -A acks1_topic
if want produce || want consume; then
  for ((r = 1; r <= rounds; r++)); do
    say "round $r of $rounds: kafka-producer-perf-test, $records × 100 B, $PARTITIONS partitions (load $(loadavg))"
    # Alternate which broker goes first from round to round.
    if ((r % 2)); then order=(kafka rill); else order=(rill kafka); fi
    for acks in 1 all; do
      for b in "${order[@]}"; do
        if [ "$b" = kafka ]; then
          t=$(produce kafka "$KAFKA" "$kafka_pid" none "$acks" "$r")
        else
          t=$(produce rill "$RILL" "$rill_pid" never "$acks" "$r")
        fi
        [ "$acks" = 1 ] && acks1_topic[$b-$r]=$t
      done
    done
    if want produce; then
      for acks in 1 all; do produce rill "$RILL" "$rill_pid" always "$acks" "$r" >/dev/null; done
    fi
    if want consume; then
      say "round $r of $rounds: kafka-consumer-perf-test over the acks=1 topics (load $(loadavg))"
      for b in "${order[@]}"; do
        if [ "$b" = kafka ]; then consume kafka "$KAFKA" "$kafka_pid" "${acks1_topic[kafka-$r]}" "$r"
        else consume rill "$RILL" "$rill_pid" "${acks1_topic[rill-$r]}" "$r"; fi
      done
    fi
  done
fi

# ---- 3: the filter, Kafka Streams against the Wasm handler ---------------------------------
java_app() { java -Xmx1g -Dlog4j2.configurationFile="$root/scripts/kafka-tools-log4j2.properties" \
  -cp "$classes:$cp_kafka" FilterApp "$@"; }
if want streams; then
  say "the filter: loading $records records of bench/src/workload.rs into both brokers"
  kafka_topic events "$PARTITIONS"; kafka_topic blue 1
  rill_topic events "$PARTITIONS" never; rill_topic blue 1 never
  java_app load "$KAFKA" events "$records" "$PARTITIONS" acks=1 "${PRODUCER_PROPS[@]}" | tee "$out/load-kafka.txt" >&2
  java_app load "$RILL" events "$records" "$PARTITIONS" acks=1 "${PRODUCER_PROPS[@]}" | tee "$out/load-rill.txt" >&2
  "$bin" deploy "$wasm" --name filter --topic events --output blue --from earliest --paused >/dev/null

  say "the filter on Kafka Streams ($STREAM_THREADS stream threads) (load $(loadavg))"
  load=$(loadavg)
  java_app streams "$KAFKA" events blue "$records" "$STREAM_THREADS" "$kafka_pid" \
    >"$out/streams-kafka.txt" 2>"$out/streams-kafka.err" || { tail "$out/streams-kafka.err" >&2; die "the Kafka Streams run failed"; }
  grep '^RESULT' "$out/streams-kafka.txt" | tee /dev/stderr |
    sed 's/^RESULT //' | awk -v l="$load" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "kafka-streams\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v["records"], v["out"], v["secs"], v["rate"], v["first_to_last_secs"], v["cpu_secs"], v["cpu_ns_per_record"], l }' >>"$out/streams.tsv"

  say "the Wasm filter on Rill (load $(loadavg))"
  load=$(loadavg)
  java_app watch "$RILL" blue "$records" "$RILL_ADMIN/v1/deployments/filter/resume" "$rill_pid" \
    >"$out/streams-rill.txt" 2>"$out/streams-rill.err" || { tail "$out/streams-rill.err" >&2; die "the Rill filter run failed"; }
  grep '^RESULT' "$out/streams-rill.txt" | tee /dev/stderr |
    sed 's/^RESULT //' | awk -v l="$load" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "rill-wasm\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v["records"], v["out"], v["secs"], v["rate"], v["first_to_last_secs"], v["cpu_secs"], v["cpu_ns_per_record"], l }' >>"$out/streams.tsv"
fi

# ---- the table -----------------------------------------------------------------------------
col() { # FILE COLUMN FILTER-AWK: the median of COLUMN over the rows that match
  [ -f "$out/$1" ] || { echo -; return; }
  awk -F'\t' "$3 { print \$$2 }" "$out/$1" | median
}
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo "+dirty")
echo
echo "## Apache Kafka 4.1.1 vs Rill ($commit), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average now $(loadavg)"
echo
echo "$records records; medians of $rounds round(s); raw rows in $out/*.tsv"
if want produce; then
  echo
  echo "kafka-producer-perf-test: 100 B records, $PARTITIONS partitions, ${PRODUCER_PROPS[*]}"
  echo
  echo "| acks | Kafka (no fsync) rec/s | Rill \`never\` rec/s | ratio | Rill \`always\` rec/s | ratio | p50 / p99 / p99.9 / max ms: Kafka | Rill \`never\` | Rill \`always\` | broker CPU s: Kafka / Rill \`never\` | client CPU s: Kafka / Rill \`never\` |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for acks in 1 all; do
    k=$(col produce.tsv 5 "\$1==\"kafka\" && \$3==\"$acks\"")
    n=$(col produce.tsv 5 "\$1==\"rill\" && \$2==\"never\" && \$3==\"$acks\"")
    a=$(col produce.tsv 5 "\$1==\"rill\" && \$2==\"always\" && \$3==\"$acks\"")
    lat() { echo "$(col produce.tsv 9 "$1") / $(col produce.tsv 11 "$1") / $(col produce.tsv 12 "$1") / $(col produce.tsv 8 "$1")"; }
    kf="\$1==\"kafka\" && \$3==\"$acks\""; nf="\$1==\"rill\" && \$2==\"never\" && \$3==\"$acks\""
    af="\$1==\"rill\" && \$2==\"always\" && \$3==\"$acks\""
    printf '| %s | %.0f | %.0f | **%s** | %.0f | %s | %s | %s | %s | %s / %s | %s / %s |\n' "$acks" "$k" "$n" "$(ratio "$n" "$k")" \
      "$a" "$(ratio "$a" "$k")" "$(lat "$kf")" "$(lat "$nf")" "$(lat "$af")" \
      "$(col produce.tsv 13 "$kf")" "$(col produce.tsv 13 "$nf")" "$(col produce.tsv 14 "$kf")" "$(col produce.tsv 14 "$nf")"
  done
fi
if want consume; then
  echo
  echo "kafka-consumer-perf-test: the $records records of the acks=1 topic, defaults (fetch-size 1 MiB)"
  echo
  echo "| | Kafka | Rill | ratio |"
  echo "|---|---|---|---|"
  k=$(col consume.tsv 3 '$1=="kafka"'); n=$(col consume.tsv 3 '$1=="rill"')
  printf '| records/s (incl. group join) | %.0f | %.0f | **%s** |\n' "$k" "$n" "$(ratio "$n" "$k")"
  k=$(col consume.tsv 4 '$1=="kafka"'); n=$(col consume.tsv 4 '$1=="rill"')
  printf '| records/s while fetching | %.0f | %.0f | %s |\n' "$k" "$n" "$(ratio "$n" "$k")"
  printf '| broker CPU s | %s | %s | |\n' "$(col consume.tsv 7 '$1=="kafka"')" "$(col consume.tsv 7 '$1=="rill"')"
  printf '| client CPU s | %s | %s | |\n' "$(col consume.tsv 8 '$1=="kafka"')" "$(col consume.tsv 8 '$1=="rill"')"
fi
if want streams; then
  echo
  echo "The filter (value contains \"blue\" → topic blue), $records records already in a $PARTITIONS-partition topic:"
  echo "Kafka Streams ($STREAM_THREADS threads, at_least_once) on Apache Kafka vs the Wasm filter on Rill"
  echo
  echo "| | Kafka Streams | Rill Wasm | ratio |"
  echo "|---|---|---|---|"
  k=$(col streams.tsv 5 '$1=="kafka-streams"'); n=$(col streams.tsv 5 '$1=="rill-wasm"')
  printf '| records/s, start to all output written | %.0f | %.0f | **%s** |\n' "$k" "$n" "$(ratio "$n" "$k")"
  printf '| seconds (first output → last) | %s | %s | |\n' "$(col streams.tsv 6 '$1=="kafka-streams"')" "$(col streams.tsv 6 '$1=="rill-wasm"')"
  k=$(col streams.tsv 7 '$1=="kafka-streams"'); n=$(col streams.tsv 7 '$1=="rill-wasm"')
  printf '| CPU s (broker + Streams JVM / Rill host) | %s | %s | %s |\n' "$k" "$n" "$(ratio "$n" "$k")"
  k=$(col streams.tsv 8 '$1=="kafka-streams"'); n=$(col streams.tsv 8 '$1=="rill-wasm"')
  printf '| CPU ns per record | %s | %s | %s |\n' "$k" "$n" "$(ratio "$n" "$k")"
fi
if [ "$quick" = 1 ]; then
  echo
  echo "(quick run: every step completed with the right record counts; timings are not judged)"
fi
