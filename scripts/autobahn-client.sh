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
# RINGWS_AUTOBAHN_CASES (a JSON list of cases instead).
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
cases="${RINGWS_AUTOBAHN_CASES:-$default_cases}"
mkdir -p "$out"

wstest="$(scripts/install-wstest.sh)"
cargo build --release --quiet -p loadgen

cat >"$out/spec.json" <<JSON
{
  "url": "ws://127.0.0.1:$port",
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

./target/release/loadgen autobahn --url "ws://127.0.0.1:$port" --agent ringws --backend "$backend" "${flags[@]}"

python3 scripts/autobahn_summary.py "$out/report/index.json" ringws "$label"
echo "autobahn-client: report at $out/report/index.html"
