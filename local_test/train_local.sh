#!/usr/bin/env bash
# Trains in the image exactly as SageMaker does: `docker run -v <tree>:/opt/ml IMAGE train`.
#
#   local_test/train_local.sh IMAGE
#
#   TEST_DIR         the /opt/ml-shaped tree (default: local_test/test_dir; input/config/*.json and
#                    input/data/<channel>/ in, model/ and output/ written back)
#   DOCKER           docker (default) or podman;  DOCKER_RUN_ARGS: extra `run` arguments (local_test/engine.sh)
#   CONTAINER_NAME   optional --name
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 1 ]; then echo "usage: $0 IMAGE" >&2; exit 2; fi
IMAGE="$1"
TEST_DIR="$(cd "${TEST_DIR:-$here/test_dir}" && pwd)"
# shellcheck source=local_test/engine.sh
. "$here/engine.sh"
require_engine

# A fresh run, like a new training job: no model or output left from an earlier one.
rm -rf "$TEST_DIR/model" "$TEST_DIR/output"
mkdir -p "$TEST_DIR/model" "$TEST_DIR/output"

name_args=()
[ -n "${CONTAINER_NAME:-}" ] && name_args=(--name "$CONTAINER_NAME" --hostname algo-1)
# shellcheck disable=SC2086
exec "$DOCKER" run --rm $DOCKER_RUN_ARGS "${name_args[@]}" -v "$TEST_DIR:/opt/ml" "$IMAGE" train
