#!/usr/bin/env bash
# kafka.sh — Apache Kafka beside Rill: the reference broker for the differential tests, the
# peer for the side-by-side benchmarks and the cluster that cluster mode runs on.
#
#   scripts/kafka.sh fetch                  assemble the pinned broker, tools and clients from
#                                           Maven Central (once; a second run does nothing)
#   scripts/kafka.sh start DIR [--nodes 1|3] [--port P] [--heap SIZE] [--no-auto-create]
#                                           format and start a KRaft cluster under DIR, wait
#                                           until every node answers Metadata, print its
#                                           bootstrap address on stdout
#   scripts/kafka.sh stop DIR               stop the cluster started under DIR (by PID)
#   scripts/kafka.sh classpath              print the classpath (broker, tools, clients,
#                                           Streams), for `java -cp`
#   scripts/kafka.sh run CLASS ARGS...      run a Kafka main class (a tool) on that classpath
#   scripts/kafka.sh tool NAME ARGS...      run one of Kafka's bin/ tools by its script name:
#                                           kafka-topics, kafka-console-producer,
#                                           kafka-console-consumer, kafka-consumer-groups,
#                                           kafka-producer-perf-test, kafka-consumer-perf-test,
#                                           kafka-transactions
#
# The jars go to ${RILL_KAFKA_CACHE:-~/.cache/rill}/kafka-$VERSION (outside the clone, so
# clean clones share them). A missing JDK or Maven, or a failed download, is an error with
# one line naming it, never a silent skip.
set -euo pipefail

VERSION=4.1.1
LOG4J=2.24.3
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${RILL_KAFKA_CACHE:-"${XDG_CACHE_HOME:-$HOME/.cache}/rill"}/kafka-$VERSION
libs=$cache/libs

die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'kafka.sh: %s\n' "$*" >&2; }

need_java() {
  command -v java >/dev/null 2>&1 || die "no 'java' on PATH: Apache Kafka $VERSION needs a JDK 17 or newer (apt-get install -y openjdk-17-jdk-headless)"
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ -n "$v" ] && [ "$v" -ge 17 ] || die "Java $v found; Apache Kafka $VERSION needs 17 or newer"
}

fetch() {
  [ -f "$libs/.complete" ] && return 0
  need_java
  command -v mvn >/dev/null 2>&1 || die "no 'mvn' on PATH: Maven is needed to fetch Apache Kafka $VERSION (apt-get install -y maven)"
  say "assembling Apache Kafka $VERSION from Maven Central into $libs"
  local work
  work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.rill</groupId><artifactId>apache-kafka-dist</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-clients</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-streams</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$libs.tmp"
  if ! (cd "$work" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$libs.tmp" >"$work/mvn.log" 2>&1); then
    tail -5 "$work/mvn.log" >&2
    die "could not download Apache Kafka $VERSION with Maven (see the lines above)"
  fi
  [ -f "$libs.tmp/kafka_2.13-$VERSION.jar" ] || die "Maven finished but kafka_2.13-$VERSION.jar is missing"
  touch "$libs.tmp/.complete"
  rm -rf "$libs"
  mv "$libs.tmp" "$libs"
  say "Apache Kafka $VERSION ready ($(find "$libs" -name '*.jar' | wc -l) jars)"
}

classpath() { printf '%s/*' "$libs"; }

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The first port P at or after $1 such that P..P+2n-1 are all free.
find_ports() {
  local p=$1 n=$2 i ok
  while [ "$p" -lt 65000 ]; do
    ok=1
    for ((i = 0; i < 2 * n; i++)); do port_free $((p + i)) || { ok=0; break; }; done
    [ "$ok" = 1 ] && { echo "$p"; return; }
    p=$((p + 2 * n))
  done
  die "no free loopback ports found"
}

# Sends Metadata v1 to 127.0.0.1:$1 and prints the number of brokers it names (0 on failure).
metadata_brokers() {
  python3 - "$1" <<'EOF' 2>/dev/null || echo 0
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
cid = b"rill-kafka-sh"
body = struct.pack(">hhih", 3, 1, 7, len(cid)) + cid + struct.pack(">i", -1)  # all topics
s.sendall(struct.pack(">i", len(body)) + body)
def read(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError
        b += c
    return b
size = struct.unpack(">i", read(4))[0]
resp = read(size)
print(struct.unpack(">i", resp[4:8])[0])
EOF
}

start() {
  local dir="" nodes=1 port="" heap=512m auto_create=true
  dir=${1:-}; [ -n "$dir" ] || die "usage: kafka.sh start DIR [--nodes 1|3] [--port P] [--heap SIZE] [--no-auto-create]"
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --heap) heap=$2; shift 2 ;;
      --no-auto-create) auto_create=false; shift ;;
      *) die "unknown option: $1" ;;
    esac
  done
  [ "$nodes" = 1 ] || [ "$nodes" = 3 ] || die "--nodes must be 1 or 3, not $nodes"
  fetch
  need_java
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if ls "$dir"/node-*.pid >/dev/null 2>&1; then
    die "a cluster already runs under $dir (stop it first: scripts/kafka.sh stop $dir)"
  fi
  port=$(find_ports "${port:-19092}" "$nodes")
  local voters="" bootstrap="" i
  for ((i = 1; i <= nodes; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:$((port + nodes + i - 1))"
    bootstrap+="${bootstrap:+,}127.0.0.1:$((port + i - 1))"
  done
  local rf=$nodes min_isr=1
  [ "$nodes" = 3 ] && min_isr=2
  cat >"$dir/log4j2.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
  local cluster_id
  cluster_id=$(java -cp "$(classpath)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  [ -n "$cluster_id" ] || die "kafka-storage random-uuid printed nothing"
  for ((i = 1; i <= nodes; i++)); do
    local nd="$dir/node-$i"
    rm -rf "$nd"
    mkdir -p "$nd/data" "$nd/logs"
    cat >"$nd/server.properties" <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$((port + i - 1)),CONTROLLER://127.0.0.1:$((port + nodes + i - 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$((port + i - 1))
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$nd/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=$auto_create
delete.topic.enable=true
EOF
    java -cp "$(classpath)" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
      -Dkafka.logs.dir="$nd/logs" kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$nd/server.properties" >"$nd/logs/format.out" 2>&1 ||
      { cat "$nd/logs/format.out" >&2; die "formatting the storage of node $i failed"; }
  done
  for ((i = 1; i <= nodes; i++)); do
    local nd="$dir/node-$i"
    # setsid: the broker does not die with the shell that started it, only by `stop`.
    setsid java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$nd/logs" \
      -cp "$(classpath)" kafka.Kafka "$nd/server.properties" \
      >"$nd/logs/stdout.log" 2>&1 </dev/null &
    echo $! >"$dir/node-$i.pid"
  done
  echo "$bootstrap" >"$dir/bootstrap"
  local deadline=$((SECONDS + 90)) up
  for ((i = 1; i <= nodes; i++)); do
    while :; do
      kill -0 "$(cat "$dir/node-$i.pid")" 2>/dev/null || {
        tail -20 "$dir/node-$i/logs/server.log" >&2 2>/dev/null || tail -20 "$dir/node-$i/logs/stdout.log" >&2
        stop "$dir"; die "Kafka node $i exited during start-up (log: $dir/node-$i/logs/server.log)"; }
      up=$(metadata_brokers $((port + i - 1)))
      [ "${up:-0}" -ge "$nodes" ] && break
      [ $SECONDS -lt $deadline ] || { stop "$dir"; die "Kafka node $i did not answer Metadata with $nodes brokers within 90 s"; }
      sleep 0.3
    done
  done
  say "Apache Kafka $VERSION: $nodes node(s) at $bootstrap (data and logs under $dir)"
  echo "$bootstrap"
}

stop() {
  local dir=${1:-}
  [ -n "$dir" ] || die "usage: kafka.sh stop DIR"
  local f pid
  for f in "$dir"/node-*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
  done
  for f in "$dir"/node-*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

tool() {
  local name=${1:-}; shift || true
  local class
  case "$name" in
    kafka-topics) class=org.apache.kafka.tools.TopicCommand ;;
    kafka-console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
    kafka-console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    kafka-consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    kafka-producer-perf-test) class=org.apache.kafka.tools.ProducerPerformance ;;
    kafka-consumer-perf-test) class=org.apache.kafka.tools.ConsumerPerformance ;;
    kafka-configs) class=kafka.admin.ConfigCommand ;;  # still Scala, in the core jar
    kafka-broker-api-versions) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    kafka-get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
    kafka-transactions) class=org.apache.kafka.tools.TransactionsCommand ;;
    *) die "unknown tool '$name' (see the header of scripts/kafka.sh)" ;;
  esac
  run "$class" "$@"
}

run() {
  fetch
  need_java
  local class=${1:-}; shift || true
  [ -n "$class" ] || die "usage: kafka.sh run CLASS ARGS..."
  exec java ${KAFKA_TOOL_OPTS:--Xmx512m} -Dlog4j2.configurationFile="$root/scripts/kafka-tools-log4j2.properties" \
    -cp "$(classpath)" "$class" "$@"
}

cmd=${1:-}; shift || true
case "$cmd" in
  fetch) fetch ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  classpath) fetch; classpath; echo ;;
  run) run "$@" ;;
  tool) tool "$@" ;;
  *) die "usage: kafka.sh fetch | start DIR [--nodes 1|3] [--port P] | stop DIR | classpath | run CLASS ARGS... | tool NAME ARGS..." ;;
esac
