#!/usr/bin/env bash
# Checks deploy/ringws.service and deploy/ringws-gateway.service with
# `systemd-analyze verify`: fails on any
# message about the unit (an unknown key, a value that does not parse, a
# missing binary), which verify only prints, exiting 0 for most of them.
# Skips, exiting 0, where systemd-analyze is missing (apt package systemd).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null; then
    echo "skipped: no systemd-analyze"
    exit 0
fi

# verify checks that ExecStart's binary exists and is executable, and
# /usr/local/bin/ringws is not installed on a build machine. So a copy of
# each unit is verified, under the same name (verify derives the unit's
# name from the file's), with only ExecStart's binary swapped for one that
# exists: the release build when there is one, else /bin/true. Every other
# line is checked as written.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() {
    local name=$1 bin=$PWD/target/release/$1
    [[ -x $bin ]] || bin=/bin/true
    sed "s|^ExecStart=/usr/local/bin/$name |ExecStart=$bin |" "deploy/$name.service" >"$tmp/$name.service"
    if cmp -s "deploy/$name.service" "$tmp/$name.service"; then
        echo "check-deploy.sh: ExecStart=/usr/local/bin/$name ... not found in the unit" >&2
        exit 1
    fi
    # Messages about other units (the targets the unit names, read from
    # this host) are shown but do not fail the check.
    local status=0 out
    out=$(systemd-analyze verify "$tmp/$name.service" 2>&1) || status=$?
    if [[ -n $out ]]; then
        echo "$out"
    fi
    if [[ $status -ne 0 ]] || grep -q "$name\.service" <<<"$out"; then
        echo "check-deploy.sh: deploy/$name.service has problems (above)" >&2
        exit 1
    fi
    echo "ok: systemd-analyze verify deploy/$name.service ($(systemd-analyze --version | head -n1), ExecStart=$bin)"
    # The sandbox's rating, for information (offline mode: systemd 250 and
    # later).
    systemd-analyze security --offline=yes "$tmp/$name.service" 2>/dev/null | tail -n1 || true
}
check ringws
check ringws-gateway
