#!/usr/bin/env bash
# wasm-build.sh — the one place that knows how to turn a Rust crate into a .wasm file on
# this machine. Everything else (tests/build.rs, `runtime build`, the README commands)
# calls this script; `runtime build` carries a copy of it inside the binary.
#
# Usage:
#   wasm-build.sh --setup
#       Make a Rust→Wasm build possible here (install what is missing), print the route.
#   wasm-build.sh [--setup] --target TRIPLE --target-dir DIR -- CARGO_BUILD_ARGS...
#       Build in release mode for TRIPLE (wasm32-unknown-unknown or wasm32-wasip1).
#       The .wasm files land in DIR/TRIPLE/release/.
#
# Routes, in order of preference:
#   rustup  — rustup's wasm32 targets are installed: plain `cargo build --target`.
#   debian  — Debian's rustc-web + rust-web-src + lld + wasi-libc, building std from source
#             with -Zbuild-std. Works offline once the packages are installed.
# With --setup, a missing rustup target is tried once under a short timeout (the download
# hangs on machines without access to rustup's servers), then the Debian packages are
# installed with apt-get.
set -euo pipefail

say() { printf 'wasm-build: %s\n' "$*" >&2; }
die() { printf 'wasm-build: error: %s\n' "$*" >&2; exit 1; }

setup=0
target=""
target_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --setup) setup=1; shift ;;
    --target) target="$2"; shift 2 ;;
    --target-dir) target_dir="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,20p' "$0" 2>/dev/null || true; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

# When this runs inside a build script, the outer cargo's settings must not leak into the
# nested build: they name the host's compiler, flags and target dir.
unset RUSTC RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTDOC RUSTFLAGS CARGO_ENCODED_RUSTFLAGS \
  CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR \
  CARGO_MAKEFLAGS MAKEFLAGS MFLAGS CARGO_PRIMARY_PACKAGE CARGO_MANIFEST_DIR CARGO_MANIFEST_PATH \
  RUSTC_LINKER 2>/dev/null || true

targets_wanted=(wasm32-unknown-unknown wasm32-wasip1)
[ -n "$target" ] && targets_wanted=("$target")

cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/rill"
rustup_marker="$cache_dir/rustup-wasm-unavailable"

rustup_has() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$1"
}

debian_ready() {
  [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && command -v wasm-ld >/dev/null 2>&1 \
    && [ -d /usr/lib/rustlib/src/rust/library ] \
    && { [ "$1" != wasm32-wasip1 ] || [ -f /usr/lib/wasm32-wasi/libc.a ]; }
}

try_rustup() {
  local t="$1"
  command -v rustup >/dev/null 2>&1 || return 1
  # Don't retry a download that hung within the last day.
  if [ -f "$rustup_marker" ] && [ -n "$(find "$rustup_marker" -mmin -1440 2>/dev/null)" ]; then
    return 1
  fi
  say "trying 'rustup target add $t' (20 s limit)"
  if timeout 20 rustup target add "$t" >/dev/null 2>&1; then return 0; fi
  mkdir -p "$cache_dir" && touch "$rustup_marker"
  say "rustup could not add $t here; falling back to Debian's packages"
  return 1
}

install_debian() {
  command -v apt-get >/dev/null 2>&1 || die "no rustup wasm target and no apt-get: install the wasm32 targets with 'rustup target add wasm32-unknown-unknown wasm32-wasip1'"
  say "installing Debian packages rustc-web cargo-web rust-web-src lld wasi-libc"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    rustc-web cargo-web rust-web-src lld wasi-libc >/dev/null \
    || die "apt-get install of the Wasm toolchain failed"
}

# Decide the route for one target, installing what is missing when --setup was given.
route_for() {
  local t="$1"
  if rustup_has "$t"; then echo rustup; return; fi
  if [ "$setup" = 1 ]; then
    if ! debian_ready "$t" && try_rustup "$t"; then echo rustup; return; fi
    debian_ready "$t" || install_debian
  fi
  if debian_ready "$t"; then echo debian; return; fi
  die "no way to build $t here: run 'scripts/wasm-build.sh --setup' (installs Debian's rustc-web, rust-web-src, lld, wasi-libc) or 'rustup target add $t'"
}

for t in "${targets_wanted[@]}"; do
  r=$(route_for "$t")
  case "$r" in
    rustup) say "route for $t: rustup target ($(rustc --version))" ;;
    debian) say "route for $t: debian rustc-web with -Zbuild-std ($(/usr/bin/rustc --version))" ;;
  esac
done

if [ -z "$target_dir" ]; then
  [ "$setup" = 1 ] && exit 0
  die "--target-dir is required to build"
fi
[ -n "$target" ] || die "--target is required to build"

tvar=$(echo "$target" | tr 'a-z-' 'A-Z_')
# simd128 lets memchr and friends vectorise inside the guest; wasmtime enables SIMD.
flags="-C target-feature=+simd128"
case "$(route_for "$target")" in
  rustup)
    export "CARGO_TARGET_${tvar}_RUSTFLAGS=$flags"
    exec cargo build --release --target "$target" --target-dir "$target_dir" "$@"
    ;;
  debian)
    if [ "$target" = wasm32-wasip1 ]; then
      flags="$flags -L /usr/lib/wasm32-wasi -C link-self-contained=no"
    fi
    export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
    export "CARGO_TARGET_${tvar}_LINKER=wasm-ld"
    export "CARGO_TARGET_${tvar}_RUSTFLAGS=$flags"
    exec /usr/bin/cargo build --release --target "$target" --target-dir "$target_dir" \
      -Zbuild-std=std,panic_abort "$@"
    ;;
esac
