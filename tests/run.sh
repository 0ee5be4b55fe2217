#!/usr/bin/env bash
# Every test, on a fresh machine, from this one command:
#   1. the container tools and the local base image (local_test/build_base_image.sh: podman,
#      docker-registry and a debootstrapped Debian base image; installs with apt, a no-op when all
#      are there), and python3-venv if Debian's Python lacks it. This needs root: not as root, one
#      line says what to run, and nothing runs;
#   2. a virtual environment with the package and its test dependencies;
#   3. pytest: unit tests, the real `train` entry point, the real `serve`, the push to a local
#      registry through a local AWS API;
#   4. the image test (tests/image/run_image_tests.sh: builds the image, trains in it, serves from
#      it, predicts from the host, two hosts on a test network).
#   ./tests/run.sh [--fast] [pytest args]
# Pytest arguments narrow step 3 only. COSTAWARE_SKIP_IMAGE_TESTS=1 runs steps 2 and 3 without
# the image and registry tests (any user); the log says what was left out.
# --fast: the fast tier for a developer's loop (under 3 minutes on a 2-core machine): steps 2 and
# 3 only, without the tests marked `slow` (tests/conftest.py says which and why) and without the
# image; every module is still exercised. CI runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

skip_image=${COSTAWARE_SKIP_IMAGE_TESTS:-0}
pytest_extra=()
if [ "${1:-}" = "--fast" ]; then
    shift
    skip_image=1
    pytest_extra+=(-m "not slow")
    echo "=== fast tier: the tests marked slow, the image and registry tests are not run (CI runs them)"
fi
if [ "$skip_image" = 1 ]; then
    echo "=== image and registry tests SKIPPED: tests/image is not run"
    pytest_extra+=(--ignore=tests/image)
    python3 -c 'import ensurepip, venv' 2>/dev/null || {
        echo "tests/run.sh: Python has no venv module: run 'sudo apt-get install python3-venv' once, then ./tests/run.sh" >&2
        exit 2
    }
elif [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: the image tests need root (apt-installed podman and a debootstrapped base image): run 'sudo ./tests/run.sh', or 'COSTAWARE_SKIP_IMAGE_TESTS=1 ./tests/run.sh' for the rest" >&2
    exit 2
else
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        echo "=== installing python3-venv (Debian's python3 has no venv without it)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    echo "=== container tools and base image (local_test/build_base_image.sh)"
    ./local_test/build_base_image.sh
fi

echo "=== virtual environment"
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e './container[test]'
export PATH="$PWD/$VENV/bin:$PATH"

echo "=== pytest"
# two test files at a time (pytest-xdist; a file's tests stay together, sharing its fixtures);
# COSTAWARE_TEST_PROCESSES=0 runs them in this one process
"$VENV/bin/python" -m pytest -p no:cacheprovider -n "${COSTAWARE_TEST_PROCESSES:-2}" --dist loadfile \
    tests ${pytest_extra[@]+"${pytest_extra[@]}"} "$@"

if [ "$skip_image" = 1 ]; then
    echo "=== image test SKIPPED"
else
    echo "=== image test (tests/image/run_image_tests.sh)"
    PYTHON="$VENV/bin/python" ./tests/image/run_image_tests.sh
fi
if [ "$skip_image" = 1 ]; then
    echo "=== tests passed in $(( $(date +%s) - start )) s, the image and registry tests not run"
else
    echo "=== all tests passed in $(( $(date +%s) - start )) s"
fi
