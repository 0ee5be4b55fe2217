#!/usr/bin/env bash
# Prepares a Docker-less Debian host to build and run the image with podman (idempotent):
#   1. installs podman, buildah, debootstrap, runc and docker-registry when missing (needs root);
#   2. writes a containers.conf with `default_ulimits = []` (runc on hosts that deny setrlimit);
#   3. builds the base image localhost/debian-python:bookworm with debootstrap + `podman import`,
#      for hosts that cannot pull python:3.11-slim-bookworm. Skipped when the image already exists.
# The apt mirror is read from this machine's apt sources at run time.
# Afterwards: export CONTAINERS_CONF=<printed path>  (the local_test scripts do this themselves).
set -euo pipefail

BASE_IMAGE_NAME="${BASE_IMAGE_NAME:-localhost/debian-python:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"

t0=$(date +%s)
need=()
for tool in podman:podman buildah:buildah debootstrap:debootstrap runc:runc docker-registry:docker-registry; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: missing ${need[*]}; run this script as root (it apt-get installs them)" >&2
        exit 2
    fi
    echo "== installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq podman buildah debootstrap runc docker-registry >/dev/null
    # docker-registry's package starts a system service on :5000; the tests run their own instance.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
        systemctl stop docker-registry || true
    fi
fi

conf="${COSTAWARE_CONTAINERS_CONF:-${XDG_CONFIG_HOME:-$HOME/.config}/costaware/containers.conf}"
if [ ! -f "$conf" ]; then
    mkdir -p "$(dirname "$conf")"
    cat >"$conf" <<'CONF'
# Written by costaware's local_test/build_base_image.sh. Use with: CONTAINERS_CONF=<this file>
# and `--runtime runc`. Podman's default ulimits make runc call setrlimit, which some hosts deny.
[containers]
default_ulimits = []
CONF
fi
export CONTAINERS_CONF="$conf"
echo "== containers.conf: $conf"

if podman image exists "$BASE_IMAGE_NAME"; then
    echo "== base image $BASE_IMAGE_NAME already exists (podman rmi it to rebuild)"
else
    mirror="${DEBIAN_MIRROR:-}"
    if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
        # first URIs: of a stanza that is not the security archive
        mirror="$(awk '/^URIs:/ {u=$2} /^Suites:/ && u != "" { if ($0 !~ /-security/) { print u; exit } ; u="" }' \
                  /etc/apt/sources.list.d/debian.sources)"
    fi
    if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
        mirror="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
                  /etc/apt/sources.list)"
    fi
    if [ -z "$mirror" ]; then
        echo "error: no Debian mirror found in this machine's apt sources; set DEBIAN_MIRROR" >&2
        exit 2
    fi
    rootfs="$(mktemp -d /tmp/costaware-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' EXIT
    echo "== debootstrap $SUITE (minbase + python3) from the machine's apt mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -30 "$rootfs.log" >&2; exit 1; }
    rm -f "$rootfs.log"
    # what apt would clean (downloaded .debs, package lists) and what a slim image drops (docs,
    # translations; the C.UTF-8 locale lives in /usr/lib/locale and stays)
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    tar -C "$rootfs" -c . | podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE_IMAGE_NAME" >/dev/null
    echo "== built $BASE_IMAGE_NAME in $(( $(date +%s) - t0 )) s"
fi
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$BASE_IMAGE_NAME"
echo "export CONTAINERS_CONF=$conf   # for podman commands outside the local_test scripts"
