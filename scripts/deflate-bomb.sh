#!/usr/bin/env bash
# What a deflate bomb costs the server in memory (see scripts/deflate_bomb.py):
#   scripts/deflate-bomb.sh [--mode shared|dedicated] [--limit BYTES] [--bombs N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p ringws
exec python3 scripts/deflate_bomb.py "$@"
