#!/usr/bin/env bash
# Builds sockudo (a Rust Pusher Channels compatible server, the peer of
# ringws-gateway in comparisons) from crates.io, pinned to one version and
# with its own Cargo.lock (--locked), into target/peers-sockudo/, and prints
# the binary's path. Idempotent: when that version's binary is already
# there, it only prints the path.
#
# Built with its default features (local adapter, v2 protocol extensions,
# OpenTelemetry), as `cargo install sockudo` would, but with the same release
# profile as ringws and the other peers (fat LTO, one codegen unit; see the
# root Cargo.toml and benches/peers/Cargo.toml): the published crate carries
# no [profile] of its own, so cargo install would otherwise use cargo's
# default release profile (thin local LTO, 16 codegen units).
#
# Needs a C toolchain, cmake, pkg-config, OpenSSL's headers and protoc (a
# build script of one dependency compiles .proto files): Debian's packages,
# installed once (as root, or through sudo) when missing.
#
# The configuration it is run with: benches/peers/sockudo/config.json.
set -euo pipefail
cd "$(dirname "$0")/.."

version=5.2.0
root=target/peers-sockudo
bin="$root/bin/sockudo"

if [ -x "$bin" ] && grep -qs "\"sockudo $version " "$root/.crates2.json"; then
  echo "$PWD/$bin"
  exit 0
fi

missing=""
command -v cc >/dev/null 2>&1 || missing="$missing build-essential"
command -v make >/dev/null 2>&1 || missing="$missing make"
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
command -v protoc >/dev/null 2>&1 || missing="$missing protobuf-compiler"
pkg-config --exists openssl 2>/dev/null || missing="$missing libssl-dev"
if [ -n "$missing" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

# The build directory is kept (target/peers-sockudo/build) so that a rebuild,
# say after a toolchain update, reuses what it can.
CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
  cargo install sockudo --version "=$version" --locked \
  --root "$root" --target-dir "$root/build" >&2
echo "$PWD/$bin"
