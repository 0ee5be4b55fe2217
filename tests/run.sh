#!/usr/bin/env bash
# Every test, on a fresh machine, from this one command:
#   1. the container tools and the local base image (local_test/build_base_image.sh: podman,
#      docker-registry and a debootstrapped Debian base image; installs with apt as root, a no-op
#      when all are there). Not root and something missing: one line says what to run, and
#      nothing runs;
#   2. a virtual environment with the package and its test dependencies;
#   3. pytest: unit tests, the real `train` entry point, the real `serve`, the push to a local
#      registry through a local AWS API;
#   4. the image test (tests/image/run_image_tests.sh: builds the image, trains in it, serves from
#      it, predicts from the host, two hosts on a test network).
#   ./tests/run.sh [pytest args]
# Pytest arguments narrow step 3 only; the image test always runs (COSTAWARE_SKIP_IMAGE_TESTS=1
# skips it, and the log says so).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

missing=()
for tool in podman docker-registry buildah debootstrap runc; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: the image tests need ${missing[*]}: run 'sudo ./local_test/build_base_image.sh' once, then ./tests/run.sh" >&2
    exit 2
fi
if [[ " ${missing[*]} " == *" python3-venv "* ]]; then
    echo "=== installing python3-venv (Debian's python3 has no venv without it)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
echo "=== container tools and base image (local_test/build_base_image.sh)"
./local_test/build_base_image.sh

echo "=== virtual environment"
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e './container[test]'
export PATH="$PWD/$VENV/bin:$PATH"

echo "=== pytest"
"$VENV/bin/python" -m pytest -p no:cacheprovider tests "$@"

if [ "${COSTAWARE_SKIP_IMAGE_TESTS:-0}" = 1 ]; then
    echo "=== image test SKIPPED (COSTAWARE_SKIP_IMAGE_TESTS=1)"
else
    echo "=== image test (tests/image/run_image_tests.sh)"
    PYTHON="$VENV/bin/python" ./tests/image/run_image_tests.sh
fi
echo "=== all tests passed in $(( $(date +%s) - start )) s"
