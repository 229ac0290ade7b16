"""The stack's HTTP client against Linux servers on the kernel node: `python3 -m http.server`
(HTTP/1.0: the server closes) and nginx (HTTP/1.1 keep-alive: several requests, one connection)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.node.apps import payload
from tests.interop.conftest import InteropEnv, assert_wire_evidence

pytestmark = [pytest.mark.root, pytest.mark.interop]

PY_PORT, NGINX_PORT = 8000, 8080
FILES = {"small.bin": 1500, "big.bin": 1_000_000}
SERVER_LIFETIME = 300  # seconds: the servers end by themselves even if teardown never runs

NGINX_CONF = """\
daemon off;
master_process off;
user root;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 30s;
    keepalive_requests 100;
    server {{
        listen {addr}:{port};
        root {root};
    }}
}}
"""


def _wait_listening(env: InteropEnv, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10.0
    while f":{port} " not in env.linux(["ss", "-tlnH"]).stdout:
        assert proc.poll() is None, f"server on {port} exited: {log.read_text(errors='replace')}"
        assert time.monotonic() < deadline, f"nothing listens on {port}: {log.read_text(errors='replace')}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def servers(interop: InteropEnv) -> Iterator[InteropEnv]:
    """python3 -m http.server and nginx on the kernel node, serving the same files."""
    root = interop.workdir / "kernel-www"
    root.mkdir()
    for name, size in FILES.items():
        (root / name).write_bytes(payload.payload(size, seed=11))
    py = interop.spawn_linux(
        ["timeout", str(SERVER_LIFETIME), sys.executable, "-m", "http.server", str(PY_PORT),
         "--bind", interop.linux_addr, "--directory", str(root)],
        interop.workdir / "http-server.log",
    )  # fmt: skip
    _wait_listening(interop, PY_PORT, py, interop.workdir / "http-server.log")
    conf_dir = interop.workdir / "nginx"
    conf_dir.mkdir()
    conf = conf_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=conf_dir, addr=interop.linux_addr, port=NGINX_PORT, root=root))
    nginx = interop.spawn_linux(
        ["timeout", str(SERVER_LIFETIME), "nginx", "-p", str(conf_dir), "-e", "stderr", "-c", str(conf)],
        conf_dir / "nginx.log",
    )
    _wait_listening(interop, NGINX_PORT, nginx, conf_dir / "nginx.log")
    yield interop
    for proc in (py, nginx):
        proc.terminate()
        proc.wait(5.0)


def _fetch(env: InteropEnv, port: int, path: str, count: int = 1) -> dict[str, Any]:
    result: dict[str, Any] = env.call("run_app", {
        "name": "http-client",
        "options": {"host": env.linux_addr, "port": port, "path": path, "count": count, "timeout": 60.0},
        "timeout": 90.0,
    })  # fmt: skip
    return result


@pytest.mark.parametrize("name", sorted(FILES))
def test_stack_fetches_from_python_http_server(servers: InteropEnv, name: str) -> None:
    mark = servers.trace_mark()
    result = _fetch(servers, PY_PORT, f"/{name}")
    (response,) = result["responses"]
    assert response["status"] == 200
    assert response["body_length"] == FILES[name]
    assert response["sha256"] == payload.sha256(FILES[name], seed=11)
    servers.assert_closed_cleanly(mark)


def test_stack_fetches_from_nginx_on_one_keepalive_connection(servers: InteropEnv) -> None:
    mark = servers.trace_mark()
    result = _fetch(servers, NGINX_PORT, "/big.bin", count=3)
    responses = result["responses"]
    assert isinstance(responses, list) and len(responses) == 3
    assert result["connections"] == 1
    assert [r["reused"] for r in responses] == [False, True, True]
    for r in responses:
        assert r["status"] == 200 and r["sha256"] == payload.sha256(FILES["big.bin"], seed=11)
        assert dict(r["headers"]).get("server", "").startswith("nginx")
    small = _fetch(servers, NGINX_PORT, "/small.bin")["responses"][0]
    assert small["sha256"] == payload.sha256(FILES["small.bin"], seed=11)
    conns = servers.assert_closed_cleanly(mark, min_connections=2)
    assert len(conns) == 2, conns


def test_wire_evidence(servers: InteropEnv) -> None:
    """Last in the module: the captures of every run above, read by tshark."""
    assert_wire_evidence(servers)  # Linux sends the bulk here: the stack has nothing to resend
