# tcplab in a container: the stack and the lab (namespaces, veth, TUN, NFQUEUE) for hosts that are
# not Linux, or Linux hosts you would rather not touch. Run it with docker-compose.yml, which grants
# the capabilities and the /dev/net/tun device the lab needs:  docker compose run --rm lab tcplab check
#
# Build arguments:
#   BASE    the Python base image (default: the official python:3.11-slim-bookworm). Any Debian
#           bookworm image with python3 (>= 3.11) and its venv module works; docker/make-base-image.sh
#           makes one with debootstrap where no registry is reachable.
#   EXTRAS  the package's extras to install (default: lab; "lab,test" adds pytest and friends).
#   TSHARK  1 to add tshark (about 100 MB more) for reading the lab's pcaps inside the container.
ARG BASE=python:3.11-slim-bookworm

# ---- build: compile python-pytun (no wheel exists) and install tcplab into a venv -------------
FROM ${BASE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends gcc libc6-dev; \
    # The official python images carry Python.h; a plain Debian base needs python3-dev for it.
    python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
      || apt-get install -y --no-install-recommends python3-dev; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -m venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
ARG EXTRAS=lab
# Dependencies first, against empty packages, so a change to the code does not redo this layer.
# The install is editable: the lab finds topologies/ next to its code, as in a checkout.
COPY pyproject.toml README.md ./
RUN set -eux; \
    mkdir stack drill lab; touch stack/__init__.py drill/__init__.py lab/__init__.py; \
    pip install -e ".[${EXTRAS}]"; \
    python -c 'import pyroute2, pytun'

# ---- runtime: the system tools the lab drives, the venv, the source ----------------------------
FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
ARG TSHARK=0
# iproute2: `ip`/`tc` for looking around; iptables: the NFQUEUE rules of the link emulator;
# util-linux: nsenter (tcplab exec);
# tcpdump: captures on the lab's links; procps: ps/pkill for looking at node daemons.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
      iproute2 iptables nftables util-linux tcpdump procps; \
    if [ "$TSHARK" = 1 ]; then apt-get install -y --no-install-recommends tshark; fi; \
    rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/venv /opt/venv
WORKDIR /src
COPY . .
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN tcplab --help >/dev/null
ENTRYPOINT ["/src/docker/entrypoint.sh"]
CMD ["tcplab", "check"]
