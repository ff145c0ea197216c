#!/usr/bin/env bash
# What a deflate bomb costs the server in memory (see scripts/deflate_bomb.py):
#   scripts/deflate-bomb.sh [--mode shared|dedicated] [--limit BYTES] [--bombs N]
set -euo pipefail
cd "$(dirname "$0")/.."
# With --features tls, as scripts/autobahn.sh builds it: scripts/test.sh then
# makes one fat-LTO build of the server, not one per feature set.
cargo build --release --quiet -p ringws --features tls
exec python3 scripts/deflate_bomb.py "$@"
