#!/usr/bin/env bash
# Real TLS clients against the release server (built with --features tls)
# on io_uring and on epoll:
#   * Python `websockets` and Node's `ws` over wss://, trusting only a test
#     CA: echo of text and binary messages up to 1 MiB, then close 1000;
#   * `openssl s_client`: TLS 1.0 and 1.1 refused (a fatal alert to the
#     ClientHello, no certificate, no cipher), an ALPN offer of only h2
#     refused (no_application_protocol), ALPN http/1.1 with TLS 1.3 and TLS
#     1.2 negotiated, SNI picking the certificate;
#   * plain HTTP on the TLS port closed at once.
# Prints one line per check, `tls-clients: <backend> <check> ok`; on a
# failure, the reason and the server log's tail, and exits non-zero.
#
# The CA and leaf certificates are made here with the openssl command in a
# temporary directory, removed at the end: no key is committed. Installs
# what it needs when missing: websockets (pip), node and npm (Debian's
# nodejs and npm), and `ws` from scripts/tls-clients/package-lock.json
# (npm ci, into scripts/tls-clients/node_modules).
#
# Env: RINGWS_TLS_CLIENTS_BACKENDS (default "io-uring epoll").
set -euo pipefail
cd "$(dirname "$0")/.."

backends="${RINGWS_TLS_CLIENTS_BACKENDS:-io-uring epoll}"
clients=scripts/tls-clients
out=target/tls-clients
mkdir -p "$out"

# What the checks need, installed once.
missing=""
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
python3 -c "import websockets.sync.client" 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check "websockets>=13"
(cd "$clients" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null)
cargo build --release --quiet --features tls --bin ringws

tmp="$(mktemp -d)"
server=""
stop_server() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT

# A throwaway CA and two leaves it signs: `localhost` (also 127.0.0.1), the
# default certificate, and `other.test`, chosen by SNI.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=ringws-test-ca -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
leaf() {
  local name=$1
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$tmp/$name.key" -out "$tmp/$name.csr" 2>/dev/null
  echo "subjectAltName=DNS:$name,IP:127.0.0.1" >"$tmp/$name.ext"
  openssl x509 -req -in "$tmp/$name.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -set_serial "$RANDOM" -days 2 -extfile "$tmp/$name.ext" -out "$tmp/$name.pem" 2>/dev/null
}
leaf localhost
leaf other.test

backend=""
log=""
fail() {
  echo "tls-clients: $backend: FAILED: $*" >&2
  if [ -n "$log" ]; then
    echo "tls-clients: last lines of $log:" >&2
    tail -20 "$log" >&2
  fi
  exit 1
}
ok() { echo "tls-clients: $backend $1 ok"; }

# A port nothing listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# `openssl s_client` against the server; its output (and the certificate it
# was shown) to $tmp/s_client.out. Returns its status.
s_client() {
  timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$tmp/ca.pem" "$@" \
    </dev/null >"$tmp/s_client.out" 2>&1
}
# The handshake failed before the server authenticated itself: s_client
# exits non-zero and was shown no certificate.
refused() {
  if s_client "$@"; then fail "s_client $*: the handshake succeeded"; fi
  grep -q "no peer certificate available" "$tmp/s_client.out" ||
    fail "s_client $*: the server showed its certificate"
}
# The subject of the certificate the server showed, as "CN=name".
shown_subject() {
  openssl x509 -noout -subject -nameopt RFC2253 <"$tmp/s_client.out" | sed 's/^subject=//'
}

for backend in $backends; do
  port="$(free_port)"
  log="$out/$backend.log"
  ./target/release/ringws --listen "127.0.0.1:$port" --backend "$backend" --log-level info \
    --tls-cert "$tmp/localhost.pem" --tls-key "$tmp/localhost.key" \
    --tls-sni "other.test=$tmp/other.test.pem,$tmp/other.test.key" >"$log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    kill -0 "$server" 2>/dev/null || fail "the server did not start"
    sleep 0.1
  done
  url="wss://127.0.0.1:$port/"

  timeout 60 python3 "$clients/client.py" websockets "$url" "$tmp/ca.pem" ||
    fail "Python websockets: see above"
  ok python-websockets
  timeout 60 node "$clients/client.mjs" "$url" "$tmp/ca.pem" || fail "Node ws: see above"
  ok node-ws

  # OpenSSL 3 offers TLS 1.0 and 1.1 only at security level 0. -msg shows
  # that a ClientHello of that version went out and that the server answered
  # it with a fatal alert and no certificate: the refusal is the server's.
  # (rustls sends handshake_failure here, not protocol_version: it refuses a
  # pre-1.2 ClientHello first for lacking signature_algorithms.)
  for v in tls1 tls1_1; do
    refused "-$v" -cipher "DEFAULT@SECLEVEL=0" -msg
    want="TLS 1.0"
    [ "$v" = tls1 ] || want="TLS 1.1"
    grep -q "^>>> $want, Handshake .*ClientHello" "$tmp/s_client.out" ||
      fail "s_client -$v: sent no $want ClientHello"
    grep -q "^<<< .*Alert .*fatal" "$tmp/s_client.out" ||
      fail "s_client -$v: no fatal alert from the server"
    grep -q "Cipher is (NONE)" "$tmp/s_client.out" ||
      fail "s_client -$v: a cipher was agreed: $(grep -m1 'Cipher is' "$tmp/s_client.out")"
    ok "$v-refused"
  done

  for v in tls1_3 tls1_2; do
    refused -alpn h2 "-$v"
    grep -q "alert no application protocol" "$tmp/s_client.out" ||
      fail "s_client -alpn h2 -$v: no no_application_protocol alert: $(grep -m1 -i 'alert\|error' "$tmp/s_client.out")"
    grep -q "No ALPN negotiated" "$tmp/s_client.out" || fail "s_client -alpn h2 -$v: a protocol was agreed"
  done
  ok alpn-h2-refused

  s_client -alpn http/1.1 -tls1_3 -verify_return_error || fail "s_client -alpn http/1.1 -tls1_3: failed"
  grep -q "ALPN protocol: http/1.1" "$tmp/s_client.out" || fail "s_client -tls1_3: ALPN http/1.1 not agreed"
  grep -q "^New, TLSv1.3" "$tmp/s_client.out" || fail "s_client -tls1_3: not TLS 1.3"
  grep -q "Verify return code: 0 (ok)" "$tmp/s_client.out" || fail "s_client -tls1_3: not verified"
  ok alpn-http1.1-tls1.3
  s_client -alpn http/1.1 -tls1_2 -verify_return_error || fail "s_client -alpn http/1.1 -tls1_2: failed"
  grep -q "ALPN protocol: http/1.1" "$tmp/s_client.out" || fail "s_client -tls1_2: ALPN http/1.1 not agreed"
  grep -q "^New, TLSv1.2" "$tmp/s_client.out" || fail "s_client -tls1_2: not TLS 1.2"
  ok alpn-http1.1-tls1.2

  s_client -servername other.test -verify_return_error || fail "s_client -servername other.test: failed"
  [ "$(shown_subject)" = CN=other.test ] || fail "SNI other.test: shown $(shown_subject)"
  ok sni-other.test
  s_client -noservername || fail "s_client -noservername: failed"
  [ "$(shown_subject)" = CN=localhost ] || fail "no SNI: shown $(shown_subject)"
  ok sni-none-default
  s_client -servername unknown.test || fail "s_client -servername unknown.test: failed"
  [ "$(shown_subject)" = CN=localhost ] || fail "SNI unknown.test: shown $(shown_subject)"
  ok sni-unknown-default

  python3 "$clients/client.py" plain-http 127.0.0.1 "$port" || fail "plain HTTP: see above"
  ok plain-http-closed

  kill -0 "$server" 2>/dev/null || fail "the server died"
  stop_server
done
