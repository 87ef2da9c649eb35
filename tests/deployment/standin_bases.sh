#!/usr/bin/env bash
# Stand-in base images for the compose end-to-end test where no image registry can be reached:
#   tests/deployment/standin_bases.sh [PYTHON_IMAGE [REDIS_IMAGE]]
# PYTHON_IMAGE: Debian bookworm (Python 3.11) from debootstrap, with this host's CA bundle, so that pip
# inside a build trusts the same registry certificates as pip here. REDIS_IMAGE: the same base with
# Debian's redis-server, run like the official image (working directory /data, no protected mode: the
# compose network is the boundary). Images already present are kept. Needs root, debootstrap and docker.
set -euo pipefail

PYTHON_IMAGE=${1:-vigil-standin/python:bookworm}
REDIS_IMAGE=${2:-vigil-standin/redis:bookworm}
# The mirror apt uses here (deb822 or one-line sources), else Debian's CDN.
MIRROR=${DEBIAN_MIRROR:-$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null | head -n1 | tr -d ' ' || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have_image "$PYTHON_IMAGE"; then
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    echo "debootstrap bookworm from $MIRROR for $PYTHON_IMAGE"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log"; exit 1; }
    rm -f "$rootfs.log"
    cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import --change 'CMD ["python3"]' - "$PYTHON_IMAGE" >/dev/null
fi

if ! have_image "$REDIS_IMAGE"; then
    echo "building $REDIS_IMAGE"
    context=$(mktemp -d)
    cat >"$context/Dockerfile" <<DOCKERFILE
FROM $PYTHON_IMAGE
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data \
    && printf '#!/bin/sh\nexec /usr/bin/redis-server "\$@" --protected-mode no\n' > /usr/local/bin/redis-server \
    && chmod +x /usr/local/bin/redis-server
WORKDIR /data
EXPOSE 6379
CMD ["redis-server"]
DOCKERFILE
    docker build --network=host -q -t "$REDIS_IMAGE" "$context" >/dev/null
    rm -rf "$context"
fi
echo "stand-in bases: $PYTHON_IMAGE $REDIS_IMAGE"
