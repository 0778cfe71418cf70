#!/usr/bin/env bash
# setup.sh — install whatever this machine lacks to build and test Rill. Idempotent: a
# second run finds everything in place and returns in seconds.
#
#   scripts/setup.sh          the Wasm toolchain (enough for the demo)
#   scripts/setup.sh --test   also the real Kafka clients and cargo-fuzz the tests use
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

command -v cargo >/dev/null 2>&1 || { say "error: cargo not found; install Rust with rustup first"; exit 1; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# 1. Rust → Wasm (rustup's targets if they can be had, else Debian's packages).
scripts/wasm-build.sh --setup

# 2. What the `rdkafka` crate needs to build librdkafka from source (cluster mode): cmake, a
#    C compiler, pkg-config, OpenSSL (TLS, SASL/SCRAM), zlib, and curl's headers (librdkafka
#    2.12 includes curl/curl.h even with curl off).
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
# curl's headers live under the multiarch dir (/usr/include/<triplet>/curl) on Debian.
compgen -G '/usr/include/curl/curl.h' >/dev/null || compgen -G '/usr/include/*/curl/curl.h' >/dev/null \
  || missing+=(libcurl4-openssl-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing what librdkafka's build needs: ${missing[*]}"
  apt_install "${missing[@]}"
fi

[ "${1:-}" = "--test" ] || exit 0

# 3. Real Kafka clients that we did not write.
if ! command -v kcat >/dev/null 2>&1; then
  say "installing kcat"
  apt_install kcat
fi
if ! python3 -c 'import confluent_kafka, kafka' >/dev/null 2>&1; then
  say "installing confluent-kafka and kafka-python"
  python3 -m pip install --quiet --disable-pip-version-check \
    'confluent-kafka==2.16.1' 'kafka-python==3.0.12'
fi
# The schema registry client and its serializers (Avro, JSON Schema, Protobuf).
if ! python3 -c 'import confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.protobuf, confluent_kafka.schema_registry.json_schema' >/dev/null 2>&1; then
  say "installing confluent-kafka's schema registry extras"
  python3 -m pip install --quiet --disable-pip-version-check \
    'confluent-kafka[avro,json,protobuf,schemaregistry]==2.16.1'
fi

# 4. Apache Kafka beside Rill: a JDK and Maven (to assemble the pinned broker, tools and
#    Java client from Maven Central: scripts/kafka.sh fetch), and Go for the franz-go client.
if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
  say "installing a JDK (openjdk-17-jdk-headless)"
  apt_install openjdk-17-jdk-headless
fi
if ! command -v mvn >/dev/null 2>&1; then
  say "installing Maven"
  apt_install maven
fi
if ! command -v go >/dev/null 2>&1; then
  say "installing Go (golang-go)"
  apt_install golang-go
fi
scripts/kafka.sh fetch

# 5. cargo-fuzz, for the brief fuzz runs (needs the nightly toolchain).
if [ -d fuzz ]; then
  if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    say "warning: no nightly toolchain: fuzz targets will be skipped"
  elif ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install --quiet --locked cargo-fuzz
  fi
fi
say "ready"
