#!/usr/bin/env bash
# Builds the image from the repository's Dockerfile and prints its size.
#
#   local_test/build_image.sh [IMAGE]          (default IMAGE: costaware:latest)
#
#   DOCKER=podman|docker     engine (default: podman if installed, else docker)
#   BASE_IMAGE=...           base image; default: python:3.11-slim-bookworm, or, with podman, the local
#                            localhost/debian-python:bookworm (local_test/build_base_image.sh) when that
#                            exists and the official one is not already present locally.
#   PLATFORM=linux/amd64     passed as --platform when set
#   BUILD_ARGS="..."         extra arguments for `build`
#
# With podman, the build gets this machine's trust store and pip settings (index URLs, find-links,
# constraints, certificate) read-only, so pip inside the build reaches the same package index as
# pip on the host. Nothing from those mounts ends up in the image.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
IMAGE="${1:-costaware:latest}"
if [ -z "${DOCKER:-}" ]; then
    if command -v podman >/dev/null 2>&1; then DOCKER=podman; else DOCKER=docker; fi
fi
# shellcheck source=local_test/engine.sh
. "$here/engine.sh"
require_engine

OFFICIAL_BASE="python:3.11-slim-bookworm"
LOCAL_BASE="localhost/debian-python:bookworm"
args=()
if [ -z "${BASE_IMAGE:-}" ]; then
    BASE_IMAGE="$OFFICIAL_BASE"
    # No pull attempt here: where the local base exists, the official one is usually unreachable.
    if engine_is_podman && ! podman image exists "$OFFICIAL_BASE" && podman image exists "$LOCAL_BASE"; then
        BASE_IMAGE="$LOCAL_BASE"
    fi
fi
args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -n "${PLATFORM:-}" ] && args+=(--platform "$PLATFORM")

tmp="$(mktemp -d /tmp/costaware-build.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

if engine_is_podman; then
    # This machine's trust store (pip's and apt's https) ...
    [ -d /etc/ssl/certs ] && args+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
    # ... and its effective pip configuration (files + PIP_* variables), merged into one pip.conf,
    # with every local file or directory it names (file:// indexes, find-links, constraints).
    host_python="${HOST_PYTHON:-python3}"
    if command -v "$host_python" >/dev/null 2>&1 && "$host_python" -m pip --version >/dev/null 2>&1; then
        "$host_python" -m pip config list 2>/dev/null | "$host_python" -c '
import configparser, os, re, sys
out_conf, out_mounts = sys.argv[1], sys.argv[2]
vals = {}
for line in sys.stdin:
    m = re.match(r"^([^=]+?)\.([^.=]+)=(.*)$", line.strip())
    if not m:
        continue
    section, key, value = m.group(1), m.group(2), m.group(3).strip("\x27\"")
    if section == ":env:":
        section = "global"
        vals[(section, key)] = value          # PIP_* variables win over files
    else:
        vals.setdefault((section, key), value)
cp = configparser.ConfigParser(interpolation=None)
mounts = set()
for (section, key), value in sorted(vals.items()):
    if not cp.has_section(section):
        cp.add_section(section)
    cp.set(section, key, value)
    for word in value.split():
        path = word[len("file://"):] if word.startswith("file://") else word
        if not path.startswith("/") or not os.path.exists(path):
            continue
        if word.startswith("file://") and key in ("index-url", "extra-index-url"):
            path = os.path.dirname(path.rstrip("/"))   # simple/ links to ../files
        mounts.add(os.path.realpath(path) if os.path.isdir(path) else path)
with open(out_conf, "w") as f:
    cp.write(f)
with open(out_mounts, "w") as f:
    f.write("\n".join(sorted(mounts)) + ("\n" if mounts else ""))
' "$tmp/pip.conf" "$tmp/mounts"
        if [ -s "$tmp/pip.conf" ]; then
            args+=(-v "$tmp/pip.conf:/etc/pip.conf:ro")
            while IFS= read -r p; do
                case "$p" in /etc/ssl/certs|/etc/ssl/certs/*) continue ;; esac
                args+=(-v "$p:$p:ro")
            done <"$tmp/mounts"
        fi
    elif [ -f /etc/pip.conf ]; then
        args+=(-v /etc/pip.conf:/etc/pip.conf:ro)
        [ -d /etc/xdg/pip ] && args+=(-v /etc/xdg/pip:/etc/xdg/pip:ro)
    fi
    # runtime (e.g. --runtime runc) for the build's RUN steps too
    # shellcheck disable=SC2206
    args+=($DOCKER_RUN_ARGS)
fi
# shellcheck disable=SC2206
args+=(${BUILD_ARGS:-})

echo "== building $IMAGE with $DOCKER (base $BASE_IMAGE)"
t0=$(date +%s)
"$DOCKER" build "${args[@]}" -f "$repo/Dockerfile" -t "$IMAGE" "$repo"
t1=$(date +%s)
size_bytes="$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE")"
echo "== image $IMAGE built in $((t1 - t0)) s; size $((size_bytes / 1000000)) MB ($size_bytes bytes)"
