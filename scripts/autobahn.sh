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
# default auto; the report goes to target/autobahn/<backend>/).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${RINGWS_AUTOBAHN_PORT:-19001}"
cases="${RINGWS_AUTOBAHN_CASES:-[\"1.*\",\"2.*\",\"3.*\",\"4.*\",\"5.*\",\"6.*\",\"7.*\",\"9.*\",\"10.*\",\"11.*\"]}"
backend="${RINGWS_BACKEND:-auto}"
out=target/autobahn/$backend
mkdir -p "$out"

wstest="$(scripts/install-wstest.sh)"
cargo build --release --quiet --bin ringws

./target/release/ringws --listen "127.0.0.1:$port" --backend "$backend" --log-level warn >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 $server 2>/dev/null; then cat "$out/server.log"; echo "autobahn: server did not start" >&2; exit 1; fi
  sleep 0.1
done

cat >"$out/spec.json" <<JSON
{
  "outdir": "$PWD/$out/report",
  "servers": [{"agent": "ringws", "url": "ws://127.0.0.1:$port"}],
  "cases": $cases,
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON
rm -rf "$out/report"
(cd "$out" && "$wstest" -m fuzzingclient -s spec.json >wstest.log 2>&1) || {
  tail -20 "$out/wstest.log"; echo "autobahn: wstest failed" >&2; exit 1; }

if ! kill -0 $server 2>/dev/null; then
  cat "$out/server.log"; echo "autobahn: the server died during the run" >&2; exit 1
fi

python3 scripts/autobahn_summary.py "$out/report/index.json" ringws "autobahn ($backend)"
echo "autobahn: report at $out/report/index.html"
