#!/usr/bin/env bash
# The test suite on a fresh machine: a virtual environment with the package and its test
# dependencies, then pytest (unit, the real `train` entry point, the real `serve`).
#   ./tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e './container[test]'
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider tests "$@"
