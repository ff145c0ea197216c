#!/usr/bin/env bash
# Runs Autobahn|Testsuite's fuzzing client (cases 1.* to 11.*) against the
# release server with default flags, writes the HTML report to
# target/autobahn/report/, prints counts per behaviour and close behaviour,
# and fails unless every case is OK in both.
#
# The only exceptions, and why, are in scripts/autobahn_summary.py.
#
# Env: RINGWS_AUTOBAHN_PORT (default 19001, clear of a server on 9001), RINGWS_AUTOBAHN_CASES (a JSON list,
# default ["1.*", ..., "11.*"]), RINGWS_BACKEND (the server's --backend,
# default auto; the report goes to target/autobahn/<backend>/),
# RINGWS_DEFLATE (the server's --deflate: off, shared or dedicated; with it
# on, the default cases are 1.* to 13.*, and the report goes to
# target/autobahn/<backend>-deflate-<mode>/), RINGWS_TLS=1 (wss://: the
# server gets a certificate made here by the openssl command, signed by a
# throwaway CA, and wstest connects over TLS without verifying it; the report
# goes to target/autobahn/<backend>-tls[-deflate-<mode>]/).
#
# The server is built with --features tls for every run, TLS or not: the
# feature only adds code, and one release build serves every step of
# scripts/test.sh instead of a fat-LTO build for each feature set.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${RINGWS_AUTOBAHN_PORT:-19001}"
deflate="${RINGWS_DEFLATE:-off}"
backend="${RINGWS_BACKEND:-auto}"
tls="${RINGWS_TLS:-0}"
name=$backend
[ "$tls" = 1 ] && name=$backend-tls
if [ "$deflate" = off ]; then
  default_cases='["1.*","2.*","3.*","4.*","5.*","6.*","7.*","9.*","10.*","11.*"]'
  exclude='["12.*", "13.*"]'
  out=target/autobahn/$name
else
  default_cases='["1.*","2.*","3.*","4.*","5.*","6.*","7.*","9.*","10.*","11.*","12.*","13.*"]'
  exclude='[]'
  out=target/autobahn/$name-deflate-$deflate
fi
cases="${RINGWS_AUTOBAHN_CASES:-$default_cases}"
mkdir -p "$out"

wstest="$(scripts/install-wstest.sh)"
cargo build --release --quiet --features tls --bin ringws

server=""
certs=""
cleanup() {
  [ -z "$server" ] || { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  [ -z "$certs" ] || rm -rf "$certs"
}
trap cleanup EXIT
scheme=ws
tls_flags=()
if [ "$tls" = 1 ]; then
  # The CA and its leaf for 127.0.0.1, in a directory removed at the end.
  certs="$(mktemp -d)"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=ringws-autobahn-ca -keyout "$certs/ca.key" -out "$certs/ca.pem" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$certs/leaf.key" -out "$certs/leaf.csr" 2>/dev/null
  echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$certs/leaf.ext"
  openssl x509 -req -in "$certs/leaf.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" \
    -set_serial 1 -days 2 -extfile "$certs/leaf.ext" -out "$certs/leaf.pem" 2>/dev/null
  scheme=wss
  tls_flags=(--tls-cert "$certs/leaf.pem" --tls-key "$certs/leaf.key")
fi

./target/release/ringws --listen "127.0.0.1:$port" --backend "$backend" --deflate "$deflate" \
  "${tls_flags[@]}" --log-level warn >"$out/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 $server 2>/dev/null; then cat "$out/server.log"; echo "autobahn: server did not start" >&2; exit 1; fi
  sleep 0.1
done

cat >"$out/spec.json" <<JSON
{
  "outdir": "$PWD/$out/report",
  "servers": [{"agent": "ringws", "url": "$scheme://127.0.0.1:$port"}],
  "cases": $cases,
  "exclude-cases": $exclude,
  "exclude-agent-cases": {}
}
JSON
rm -rf "$out/report"
(cd "$out" && "$wstest" -m fuzzingclient -s spec.json >wstest.log 2>&1) || {
  tail -20 "$out/wstest.log"; echo "autobahn: wstest failed" >&2; exit 1; }

if ! kill -0 $server 2>/dev/null; then
  cat "$out/server.log"; echo "autobahn: the server died during the run" >&2; exit 1
fi

label="autobahn ($backend"
[ "$tls" = 1 ] && label="$label, wss"
[ "$deflate" = off ] || label="$label, deflate $deflate"
label="$label)"
python3 scripts/autobahn_summary.py "$out/report/index.json" ringws "$label"
echo "autobahn: report at $out/report/index.html"
