#!/usr/bin/env bash
# Multi-instance training in the image, as SageMaker runs it with instance_count=N: one container
# per host (algo-1 … algo-N) on a container network this script creates, each with its own
# /opt/ml tree and resourceconfig.json; algo-1 runs XGBoost's tracker and writes the model.
#
#   local_test/train_multi_host.sh IMAGE [N]          (N hosts, default 2)
#
#   TEST_DIR       single-host tree to split (default: local_test/test_dir)
#   HOSTS_DIR      where the host trees and logs go (default: a new /tmp/costaware-hosts.XXXXXX);
#                  HOSTS_DIR/algo-K is host K's /opt/ml, HOSTS_DIR/algo-K.log its log
#   DISTRIBUTION   ShardedByS3Key (default) or FullyReplicated (see local_test/split_hosts.py)
#   COSTAWARE_PEER_TIMEOUT  seconds a host waits for the others (default here 120)
#   DOCKER, DOCKER_RUN_ARGS as for train_local.sh (local_test/engine.sh)
#
# Host names resolve through --add-host entries (static addresses on the network), which works
# with Docker and with podman whether or not the network has a DNS plugin.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 1 ]; then echo "usage: $0 IMAGE [N]" >&2; exit 2; fi
IMAGE="$1"
N="${2:-2}"
TEST_DIR="$(cd "${TEST_DIR:-$here/test_dir}" && pwd)"
DISTRIBUTION="${DISTRIBUTION:-ShardedByS3Key}"
HOSTS_DIR="${HOSTS_DIR:-$(mktemp -d /tmp/costaware-hosts.XXXXXX)}"
mkdir -p "$HOSTS_DIR"
HOSTS_DIR="$(cd "$HOSTS_DIR" && pwd)"
# shellcheck source=local_test/engine.sh
. "$here/engine.sh"
require_engine

tag="$$"
network=""
names=()
cleanup() {
    local rc=$?
    set +e
    for name in "${names[@]}"; do "$DOCKER" rm -f "$name" >/dev/null 2>&1; done
    [ -n "$network" ] && "$DOCKER" network rm -f "$network" >/dev/null 2>&1
    exit "$rc"
}
trap cleanup EXIT INT TERM

python3 "$here/split_hosts.py" "$TEST_DIR" "$HOSTS_DIR" "$N" --distribution "$DISTRIBUTION" >/dev/null

# A network of our own with a subnet we choose (static addresses need one with Docker).
for _ in 1 2 3 4 5 6 7 8; do
    prefix="10.$((RANDOM % 150 + 100)).$((RANDOM % 250 + 1))"
    if "$DOCKER" network create --subnet "$prefix.0/24" "costaware-hosts-$tag" >/dev/null 2>&1; then
        network="costaware-hosts-$tag"
        break
    fi
done
[ -n "$network" ] || { echo "error: could not create a container network" >&2; exit 1; }

add_hosts=()
for k in $(seq 1 "$N"); do add_hosts+=(--add-host "algo-$k:$prefix.$((10 + k))"); done

pids=()
for k in $(seq 1 "$N"); do
    name="costaware-algo-$k-$tag"
    names+=("$name")
    # shellcheck disable=SC2086
    "$DOCKER" run --rm $DOCKER_RUN_ARGS --network "$network" --ip "$prefix.$((10 + k))" \
        "${add_hosts[@]}" --name "$name" --hostname "algo-$k" \
        -e "COSTAWARE_PEER_TIMEOUT=${COSTAWARE_PEER_TIMEOUT:-120}" \
        -v "$HOSTS_DIR/algo-$k:/opt/ml" "$IMAGE" train >"$HOSTS_DIR/algo-$k.log" 2>&1 &
    pids+=($!)
done

status=0
for k in $(seq 1 "$N"); do
    rc=0
    wait "${pids[$((k - 1))]}" || rc=$?
    echo "algo-$k: exit $rc (log: $HOSTS_DIR/algo-$k.log)"
    if [ "$rc" -ne 0 ]; then
        status=1
        tail -5 "$HOSTS_DIR/algo-$k.log" | sed 's/^/    /'
        [ -f "$HOSTS_DIR/algo-$k/output/failure" ] && echo "    failure: $(cat "$HOSTS_DIR/algo-$k/output/failure")"
    fi
done
grep -h '^\[final\]' "$HOSTS_DIR/algo-1.log" || true
[ "$status" -eq 0 ] && echo "model: $HOSTS_DIR/algo-1/model  evaluation: $HOSTS_DIR/algo-1/output/data/evaluation.json"
exit "$status"
