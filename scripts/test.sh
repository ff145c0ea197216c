#!/usr/bin/env bash
# Every test of the project, from a fresh checkout: formatting, lints, docs,
# unit and integration tests (metrics checked with Python's
# prometheus_client, installed when missing), the systemd unit, a short
# fuzz run of every target, and
# real TLS clients against the release server (Python websockets, Node ws,
# openssl s_client), Autobahn|Testsuite cases 1-11 against the release
# server and with loadgen as the client, then 1-13 with permessage-deflate
# (the server in both of its modes, and loadgen), and over wss:// (1-11 on
# epoll, 1-13 with deflate on io_uring). Installs what it needs (cargo-fuzz,
# wstest in a cached virtualenv, redis-server, nodejs and npm from apt,
# websockets from pip, ws and the gateway's pusher-js and pusher from npm)
# on the way.
#
# Each Autobahn run is one wstest process, which keeps one core busy while
# the server mostly waits: on two cores they run two at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check
step "clippy (without and with TLS)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --features ringws/tls,loadgen/tls,ringws-gateway/tls -- -D warnings
step "format and clippy of the benchmark peers (a workspace of their own)"
cargo fmt --manifest-path benches/peers/Cargo.toml -- --check
cargo clippy --manifest-path benches/peers/Cargo.toml --target-dir target --all-targets -- -D warnings
step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet --features ringws/tls,loadgen/tls,ringws-gateway/tls
step "unit and integration tests (with TLS)"
# tests/ops.rs checks /metrics with a real Prometheus text parser.
python3 -c "import prometheus_client" 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check prometheus_client
# tests/tls.rs makes its certificates with the openssl command; tests/resp.rs
# (and the Redis broker's tests) start a real redis-server; the gateway's
# conformance test runs node: Debian's packages, installed once (as root, or
# through sudo).
missing=""
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
# The gateway's conformance harness (gateway/tests/js) drives it with the
# official pusher-js and pusher packages, as locked in its package-lock.json;
# installed again only when the lockfile is newer than the last install
# (npm writes node_modules/.package-lock.json when one completes).
js=gateway/tests/js
if [ ! "$js/node_modules/.package-lock.json" -nt "$js/package-lock.json" ]; then
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
RINGWS_REQUIRE_NPM=1 cargo test --workspace --features ringws/tls,loadgen/tls,ringws-gateway/tls
step "the systemd unit (systemd-analyze verify, where systemd is installed)"
scripts/check-deploy.sh
step "fuzz smoke run"
scripts/fuzz-smoke.sh
step "deflate bombs against the release server: 1009, and peak RSS within 2x the limit per bomb"
scripts/deflate-bomb.sh --mode shared --port 19061
scripts/deflate-bomb.sh --mode dedicated --port 19062
step "TLS with real clients (Python websockets, Node ws, openssl s_client), on io_uring and epoll"
scripts/tls-clients.sh
step "Autobahn|Testsuite 1.* to 11.* over wss:// on epoll, beside the next four runs"
# wstest is installed first: two runs starting at once must not both make
# its virtualenv.
scripts/install-wstest.sh >/dev/null
RINGWS_TLS=1 RINGWS_BACKEND=epoll RINGWS_AUTOBAHN_PORT=19071 scripts/autobahn.sh &
wss_epoll=$!
step "Autobahn|Testsuite 1.* to 11.*, ringws as the server on io_uring"
RINGWS_BACKEND=io-uring scripts/autobahn.sh
step "Autobahn|Testsuite 1.* to 11.*, ringws as the server on epoll"
RINGWS_BACKEND=epoll scripts/autobahn.sh
step "Autobahn|Testsuite 1.* to 11.*, loadgen as the client on io_uring"
RINGWS_BACKEND=io-uring scripts/autobahn-client.sh
step "Autobahn|Testsuite 1.* to 11.*, loadgen as the client on epoll"
RINGWS_BACKEND=epoll scripts/autobahn-client.sh
step "Autobahn|Testsuite 1.* to 11.*, loadgen as the client over wss:// (wstest's TLS fuzzing server) on io_uring"
RINGWS_TLS=1 RINGWS_BACKEND=io-uring RINGWS_AUTOBAHN_CLIENT_PORT=19073 scripts/autobahn-client.sh
wait $wss_epoll
step "Autobahn|Testsuite 1.* to 13.* (permessage-deflate), ringws as the server, shared and dedicated at once"
# Each run is one wstest process, busy on one core, and a server that mostly
# waits on it: the two modes side by side take about as long as one.
RINGWS_DEFLATE=shared RINGWS_AUTOBAHN_PORT=19021 scripts/autobahn.sh &
shared=$!
RINGWS_DEFLATE=dedicated RINGWS_AUTOBAHN_PORT=19031 scripts/autobahn.sh &
dedicated=$!
wait $shared
wait $dedicated
step "Autobahn|Testsuite 1.* to 13.* (permessage-deflate), loadgen as the client, and ringws over wss:// on io_uring at once"
RINGWS_TLS=1 RINGWS_BACKEND=io-uring RINGWS_DEFLATE=shared RINGWS_AUTOBAHN_PORT=19081 scripts/autobahn.sh &
wss_uring=$!
RINGWS_DEFLATE=1 RINGWS_AUTOBAHN_CLIENT_PORT=19041 scripts/autobahn-client.sh
wait $wss_uring
step "all passed"
