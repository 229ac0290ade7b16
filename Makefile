# The two set-up commands of the README: `make demo` and `make test`.
# Each installs what it needs first (system packages, a virtual environment), idempotently.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# docker.io and debootstrap: container nodes; their tests start dockerd and build a small local image.
APT_PACKAGES := iproute2 iptables nftables tcpdump tshark socat netcat-openbsd wrk nginx-light curl docker.io debootstrap hping3
STAMP := $(VENV)/.installed

.PHONY: demo demo-sim test lint bench accel deps sysdeps clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lab]'
	touch $(STAMP)

deps: sysdeps $(STAMP)

# System packages: only when one is missing, and only when we are root (CI and the lab need root).
sysdeps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not root: skipping system packages ($$missing); lab tests will be skipped"; fi; \
	fi

demo: deps
	$(VENV)/bin/tcplab demo

demo-sim: $(STAMP)
	$(VENV)/bin/tcplab demo --sim

test: deps
	$(VENV)/bin/ruff check stack drill lab tests
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check stack drill lab tests
	$(VENV)/bin/mypy

# Benchmarks: one table of figures and ratios (see tests/bench/run.py); BENCH_ARGS="--json bench.json".
# iperf3 measures the kernel's TCP when it can be installed; Python sockets stand in otherwise.
bench: deps
	@command -v iperf3 >/dev/null || [ "$$(id -u)" != 0 ] || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null || \
	  echo "iperf3 not installed: the kernel's TCP is measured with Python sockets"
	$(PY) -m tests.bench.run $(BENCH_ARGS)

# The optional compiled stack (mypyc) in build/accel (tests/bench/accel.py); `make bench BENCH_ARGS=--accel` builds it too.
accel: $(STAMP)
	$(PY) -m tests.bench.accel

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
