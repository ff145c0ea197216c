#!/usr/bin/env bash
# Installs Autobahn|Testsuite's `wstest` into a virtualenv cached outside the
# repository and prints the path of the wstest executable.
#
# wstest only runs on Python 2.7. It comes from pyenv's 2.7.18 when that is
# there; without pyenv, `python2.7` on PATH is used. The venv is cached in
# ${RINGWS_CACHE:-$HOME/.cache/ringws}/wstest-venv so later runs start at once.
set -euo pipefail

cache="${RINGWS_CACHE:-$HOME/.cache/ringws}"
venv="$cache/wstest-venv"
version="25.10.1"

if [ -x "$venv/bin/wstest" ] && "$venv/bin/wstest" --help >/dev/null 2>&1; then
  echo "$venv/bin/wstest"
  exit 0
fi

py=""
if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/2.7.18/bin/python2.7" ]; then
  py="$(pyenv root)/versions/2.7.18/bin/python2.7"
elif command -v pyenv >/dev/null 2>&1; then
  # pyenv builds 2.7.18 from source; that needs the source tarball, which is
  # only reachable where the machine has general network access.
  echo "install-wstest: pyenv has no 2.7.18; trying 'pyenv install 2.7.18'" >&2
  pyenv install -s 2.7.18 >&2
  py="$(pyenv root)/versions/2.7.18/bin/python2.7"
elif command -v python2.7 >/dev/null 2>&1; then
  py="$(command -v python2.7)"
else
  echo "install-wstest: no Python 2.7 found (wstest needs it)" >&2
  exit 1
fi

mkdir -p "$cache"
rm -rf "$venv"
{
  "$py" -m pip --version >/dev/null 2>&1 || "$py" -m ensurepip
  "$py" -m pip install -q --disable-pip-version-check virtualenv
  "$py" -m virtualenv -q "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "autobahntestsuite==$version"
} >&2
"$venv/bin/wstest" --help >/dev/null
echo "$venv/bin/wstest"
