#!/usr/bin/env bash
# Runs Autobahn|Testsuite's fuzzing server (cases 1.* to 11.*) with
# `loadgen autobahn` as the client under test, writes the HTML report to
# target/autobahn-client/report/, prints counts per behaviour and close
# behaviour, and fails unless every case is OK in both (exceptions, and why,
# in scripts/autobahn_summary.py).
#
# Env: RINGWS_AUTOBAHN_CLIENT_PORT (default 19002), RINGWS_BACKEND (loadgen's
# --backend, default auto; the report goes to target/autobahn-client/<backend>/),
# RINGWS_DEFLATE=1 (loadgen autobahn --deflate, and cases 1.* to 13.*; the
# report goes to target/autobahn-client/<backend>-deflate/),
# RINGWS_AUTOBAHN_CASES (a JSON list of cases instead), RINGWS_TLS=1 (wstest
# serves wss:// with a throwaway CA's certificate, made here with openssl,
# and loadgen, built with its tls feature, trusts that CA; the report goes
# to target/autobahn-client/<backend>[-deflate]-tls/).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${RINGWS_AUTOBAHN_CLIENT_PORT:-19002}"
backend="${RINGWS_BACKEND:-auto}"
out=target/autobahn-client/$backend
default_cases='["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "11.*"]'
exclude='["12.*", "13.*"]'
flags=()
label="autobahn-client ($backend)"
if [ "${RINGWS_DEFLATE:-0}" = 1 ]; then
  out=target/autobahn-client/$backend-deflate
  default_cases='["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "11.*", "12.*", "13.*"]'
  exclude='[]'
  flags=(--deflate)
  label="autobahn-client ($backend, deflate)"
fi
scheme=ws
tls_spec=""
build=(-p loadgen)
if [ "${RINGWS_TLS:-0}" = 1 ]; then
  out=$out-tls
  label="${label%)}, tls)"
  scheme=wss
  build=(-p loadgen --features tls --target-dir target/tls)
fi
cases="${RINGWS_AUTOBAHN_CASES:-$default_cases}"
mkdir -p "$out"
if [ "$scheme" = wss ]; then
  # A CA and a leaf for 127.0.0.1 (ECDSA P-256): wstest (twisted) serves
  # the leaf, loadgen trusts the CA.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=autobahn-ca -keyout "$out/ca.key" -out "$out/ca.pem" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$out/server.ext"
  openssl x509 -req -in "$out/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
    -set_serial 1 -days 2 -extfile "$out/server.ext" -out "$out/server.pem" 2>/dev/null
  tls_spec="\"key\": \"$PWD/$out/server.key\", \"cert\": \"$PWD/$out/server.pem\","
  flags+=(--ca "$out/ca.pem")
fi

wstest="$(scripts/install-wstest.sh)"
cargo build --release --quiet "${build[@]}"
bin=./target/release/loadgen
[ "$scheme" = ws ] || bin=./target/tls/release/loadgen

cat >"$out/spec.json" <<JSON
{
  "url": "$scheme://127.0.0.1:$port",
  $tls_spec
  "outdir": "$PWD/$out/report",
  "cases": $cases,
  "exclude-cases": $exclude,
  "exclude-agent-cases": {}
}
JSON
rm -rf "$out/report"
(cd "$out" && exec "$wstest" -m fuzzingserver -s spec.json) >"$out/wstest.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 $server 2>/dev/null; then tail -20 "$out/wstest.log"; echo "autobahn-client: wstest did not start" >&2; exit 1; fi
  sleep 0.2
done

"$bin" autobahn --url "$scheme://127.0.0.1:$port" --agent ringws --backend "$backend" "${flags[@]}"

python3 scripts/autobahn_summary.py "$out/report/index.json" ringws "$label"
echo "autobahn-client: report at $out/report/index.html"
