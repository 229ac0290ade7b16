"""HTTP/1.1 from Linux to the stack: wrk on the `linux` (kernel) node of `topologies/interop.yaml`
against the stack node's http-server, the daemon as a user runs it (trace files on).

Two figures: requests per second over keep-alive connections (`-c 10`), and new connections per
second (each request on its own connection: `Connection: close`, so every request is a handshake,
one request and a close). Needs root.

    python -m tests.bench.http_wrk [--seconds 5] [--connections 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

TOPOLOGY = "topologies/interop.yaml"
PORT = 80


def _wrk(lab: Any, url: str, seconds: float, connections: int, close: bool) -> dict[str, Any]:
    argv = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "10s"]
    if close:
        argv += ["-H", "Connection: close"]
    done = lab.exec("linux", [*argv, url], check=False, timeout=seconds + 60)
    text = done.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests_per_s": float(rate.group(1)) if rate else None,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "exit": done.returncode,
        "output": text[-400:] if not rate else "",
    }


def measure(seconds: float = 5.0, connections: int = 10) -> dict[str, Any]:
    from lab.lab import Lab
    from lab.node.control import ControlClient

    name = f"wrk{os.getpid() % 100000}"
    lab = Lab.up(TOPOLOGY, name)
    try:
        with tempfile.TemporaryDirectory() as www:
            (Path(www) / "hello.txt").write_text("hello from the python stack\n")
            control = ControlClient(lab.run_dir / "stack.sock", timeout=60)
            control.call("start_app", {"name": "http-server", "options": {"port": PORT, "root": www}})
            url = f"http://{lab.address_of('stack')}:{PORT}/hello.txt"
            keepalive = _wrk(lab, url, seconds, connections, close=False)
            fresh = _wrk(lab, url, seconds, connections, close=True)
    finally:
        Lab.down(name)
    return {"keepalive": keepalive, "new_connections": fresh, "connections": connections,
            "seconds": seconds, "trace_files": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.http_wrk", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.seconds, args.connections), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
