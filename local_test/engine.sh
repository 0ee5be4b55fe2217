# shellcheck shell=bash
# Sourced by the local_test/*.sh scripts, build_and_push.sh and tests/image/*: picks the container
# engine and, for podman, the settings some hosts need (see local_test/build_base_image.sh).
#
#   DOCKER            engine binary: docker (default) or podman
#   DOCKER_RUN_ARGS   extra arguments for `run` and `build`. Unset + podman + runc installed -> "--runtime runc"
#                     (crun fails on hosts with hybrid cgroups). Set it to "" to use the engine's default.
#   CONTAINERS_CONF   podman's config file. Unset + podman -> the file build_base_image.sh writes
#                     (default_ulimits = [], which runc needs where setrlimit is denied), if it exists.

DOCKER="${DOCKER:-docker}"
COSTAWARE_CONTAINERS_CONF="${COSTAWARE_CONTAINERS_CONF:-${XDG_CONFIG_HOME:-$HOME/.config}/costaware/containers.conf}"

engine_is_podman() {
    case "$(basename -- "$DOCKER")" in
        podman*) return 0 ;;
    esac
    # `docker` may be podman-docker's wrapper
    "$DOCKER" --version 2>/dev/null | grep -qi podman
}

require_engine() {
    if ! command -v "$DOCKER" >/dev/null 2>&1; then
        echo "error: container engine '$DOCKER' not found on PATH. Install Docker, or podman and run with DOCKER=podman" \
             "(local_test/build_base_image.sh installs podman on Debian)." >&2
        exit 2
    fi
    if ! engine_is_podman && ! "$DOCKER" info >/dev/null 2>&1; then
        echo "error: '$DOCKER' cannot reach a Docker engine (is the daemon running / DOCKER_HOST set?)." \
             "Without a daemon, use podman: DOCKER=podman $0 ..." >&2
        exit 2
    fi
}

if engine_is_podman; then
    if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$COSTAWARE_CONTAINERS_CONF" ]; then
        export CONTAINERS_CONF="$COSTAWARE_CONTAINERS_CONF"
    fi
    if [ -z "${DOCKER_RUN_ARGS+set}" ]; then
        if command -v runc >/dev/null 2>&1; then DOCKER_RUN_ARGS="--runtime runc"; else DOCKER_RUN_ARGS=""; fi
    fi
fi
DOCKER_RUN_ARGS="${DOCKER_RUN_ARGS:-}"
