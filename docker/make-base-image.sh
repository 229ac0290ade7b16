#!/usr/bin/env bash
# Make a local Debian bookworm base image for the tcplab Dockerfile, without any registry.
#
# For machines that can reach Debian's package mirror but no container registry. Normal users do
# not need this: the Dockerfile's default base (python:3.11-slim-bookworm) is pulled as usual.
#
#   docker/make-base-image.sh [IMAGE_NAME]          (default: tcplab-base:bookworm; needs root)
#   TCPLAB_BASE=tcplab-base:bookworm docker compose build lab
#
# The root filesystem comes from debootstrap (minbase: python3, python3-venv, iproute2). When the
# host trusts an extra certificate authority (a TLS-intercepting proxy in front of PyPI, say), its
# CA bundle is copied into the image and pip is pointed at it (PIP_CERT), so `pip install` inside
# the build trusts what pip on the host trusts. Set TCPLAB_CA_BUNDLE= (empty) to skip that.
set -euo pipefail

IMAGE=${1:-tcplab-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${TCPLAB_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}

if [ "$(id -u)" != 0 ]; then echo "make-base-image: needs root (debootstrap)" >&2; exit 2; fi
for tool in debootstrap docker tar; do
  command -v "$tool" >/dev/null || { echo "make-base-image: $tool not found (apt-get install $tool)" >&2; exit 2; }
done

ROOTFS=$(mktemp -d /tmp/tcplab-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT

echo "make-base-image: debootstrap $SUITE into $ROOTFS" >&2
debootstrap --variant=minbase --include=python3,python3-venv,iproute2 "$SUITE" "$ROOTFS" "$MIRROR" >&2

# The same trimming the official Debian images do: no apt caches, no downloaded .debs.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*

changes=(--change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]')
if [ -n "$CA_BUNDLE" ] && [ -s "$CA_BUNDLE" ]; then
  mkdir -p "$ROOTFS/usr/local/share/tcplab"
  cp "$CA_BUNDLE" "$ROOTFS/usr/local/share/tcplab/ca-bundle.crt"
  changes+=(--change 'ENV PIP_CERT=/usr/local/share/tcplab/ca-bundle.crt')
  echo "make-base-image: pip in images built on this base trusts $CA_BUNDLE" >&2
fi

echo "make-base-image: importing as $IMAGE" >&2
tar --numeric-owner -C "$ROOTFS" -c . | docker import "${changes[@]}" - "$IMAGE" >/dev/null
docker image ls "$IMAGE"
