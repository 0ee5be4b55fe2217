#!/usr/bin/env bash
# Serves the model in local_test/test_dir/model exactly as SageMaker does: `docker run IMAGE serve`,
# on http://127.0.0.1:${PORT:-8080} (/ping, /invocations). Ctrl-C stops it.
#
#   local_test/serve_local.sh IMAGE
#
#   TEST_DIR         the /opt/ml-shaped tree holding model/ (default: local_test/test_dir)
#   PORT             host port, published on 127.0.0.1 only (default 8080)
#   DOCKER           docker (default) or podman;  DOCKER_RUN_ARGS: extra `run` arguments (local_test/engine.sh)
#   CONTAINER_NAME   optional --name;  SERVE_ENV: extra "-e NAME=VALUE ..." arguments
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 1 ]; then echo "usage: $0 IMAGE" >&2; exit 2; fi
IMAGE="$1"
TEST_DIR="$(cd "${TEST_DIR:-$here/test_dir}" && pwd)"
PORT="${PORT:-8080}"
# shellcheck source=local_test/engine.sh
. "$here/engine.sh"
require_engine

if [ ! -d "$TEST_DIR/model" ] || [ -z "$(ls -A "$TEST_DIR/model")" ]; then
    echo "error: no model in $TEST_DIR/model; run local_test/train_local.sh $IMAGE first" >&2
    exit 2
fi
name_args=()
[ -n "${CONTAINER_NAME:-}" ] && name_args=(--name "$CONTAINER_NAME")
# shellcheck disable=SC2086
exec "$DOCKER" run --rm $DOCKER_RUN_ARGS "${name_args[@]}" ${SERVE_ENV:-} \
    -p "127.0.0.1:$PORT:8080" -v "$TEST_DIR:/opt/ml" "$IMAGE" serve
