#!/usr/bin/env bash
# Which deflate backend permessage-deflate should use: zlib-rs, zlib-ng
# (through flate2) and libdeflate, compressing and decompressing JSON-like
# messages of 20 B to 64 KiB as the shared mode (reset per message) and the
# dedicated mode (context takeover) would. Prints a Markdown table.
# benches/deflate is a workspace of its own; zlib-ng's build needs cmake,
# installed here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null; then
  echo "installing cmake (zlib-ng's build needs it)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q cmake >/dev/null; else sudo apt-get install -y -q cmake >/dev/null; fi
fi
cargo build --release --quiet --manifest-path benches/deflate/Cargo.toml --target-dir target
exec taskset -c "${CORE:-0}" target/release/ringws-deflate-bench
