#!/usr/bin/env bash
# Create or refresh .venv for udd, idempotently: it reinstalls only when a requirements or
# project file changed since the last successful install (a stamp in .venv records their hash).
# Usage: scripts/setup-env.sh [app|test]
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-app}"
req="requirements.txt"; [ "$kind" = test ] && req="requirements-test.txt"
py="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    echo "udd: creating .venv" >&2
    "$py" -m venv .venv
fi
stamp=".venv/.udd-installed-$kind"
hash_of() { cat requirements.txt "$1" pyproject.toml | sha256sum | cut -d' ' -f1; }
want="$(hash_of "$req")"
# The test set includes the app's (-r requirements.txt): a current test install serves ./run-app as it is,
# instead of a reinstall that briefly removes .venv/bin/udd from under a running command.
if [ "$kind" = app ] && [ "$(cat .venv/.udd-installed-test 2>/dev/null)" = "$(hash_of requirements-test.txt)" ]; then
    exit 0
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "udd: installing $req into .venv (first run takes a minute or two)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
fi
