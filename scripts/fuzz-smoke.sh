#!/usr/bin/env bash
# A short run of every fuzz target (default 15 s each; FUZZ_SECONDS to change).
# cargo-fuzz wants nightly for its -Z flags; RUSTC_BOOTSTRAP=1 lets the one
# stable toolchain accept them, so no second toolchain is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-15}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1
for target in frame_header handshake connection deflate_offers inflate http resp pusher; do
  out=$(cargo fuzz run "$target" -- -max_total_time="$secs" 2>&1) || {
    printf '%s\n' "$out" | grep -v '^\s*[0-9]*: \|^ *at ' | tail -40
    echo "fuzz: $target FAILED" >&2
    exit 1
  }
  echo "fuzz: $target ok: $(printf '%s\n' "$out" | grep -E '^Done' | tail -1)"
done
