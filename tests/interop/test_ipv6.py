"""The stack against Linux over IPv6, on the interop labs (which are dual-stack like every lab):
curl -6 and ping -6 from the kernel node to the stack's IPv6 address, and the stack's HTTP client
to nginx listening on [::].

These need a stack that speaks IPv6 (`stack.host.Host(..., address6=...)`); until then the module
is skipped with that reason, and the lab keeps IPv6 off the stack node's tun0 (see lab.daemon).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

import lab.cli
from lab.node.apps import payload
from lab.node.tun_setup import stack_speaks_ipv6
from tests.interop.conftest import ECHO_PORT, HTTP_PORT, LINUX, STACK, InteropEnv
from tests.interop.test_stack_clients import NGINX_CONF, SERVER_LIFETIME, _wait_listening
from tests.lab.support import PING

pytestmark = [
    pytest.mark.root,
    pytest.mark.interop,
    pytest.mark.skipif(
        not stack_speaks_ipv6(),
        reason="the stack has no IPv6 yet: stack.host.Host takes no address6",
    ),
]

NGINX6_PORT = 8086
SIZE = 1_000_000


def _curl6(env: InteropEnv, url: str) -> list[str]:
    done = env.linux(["curl", "-6", "-g", "-sS", "--max-time", "120", "-o", "/dev/null",
                      "-w", "%{http_code} %{size_download} %{remote_ip}", url], timeout=150)  # fmt: skip
    return done.stdout.split()


def test_ping6_reaches_the_stack(interop: InteropEnv) -> None:
    answered = interop.linux([sys.executable, "-c", PING, interop.lab.address6_of(STACK), "5"], check=False)
    assert answered.returncode == 0, answered.stdout + answered.stderr


def test_curl6_fetches_from_the_stack(interop: InteropEnv) -> None:
    addr6 = interop.lab.address6_of(STACK)
    mark = interop.trace_mark()
    hello = interop.linux(["curl", "-6", "-g", "-sS", "--max-time", "60", f"http://[{addr6}]:{HTTP_PORT}/hello.txt"])
    assert hello.stdout == "hello from the python stack\n"
    assert _curl6(interop, f"http://[{addr6}]:{HTTP_PORT}/bytes/{SIZE}") == ["200", str(SIZE), addr6]
    if interop.variant == "offload":  # TSO6: Linux took the body as super-segments its veth cut
        outs = [e for e in interop.events(mark, ["SegmentEvent"]) if e["direction"] == "out"]
        assert any(e.get("gso") == 1428 for e in outs), "offloads on, and no IPv6 super-segment sent"
    interop.assert_closed_cleanly(mark, min_connections=2)


@pytest.fixture(scope="module")
def nginx6(interop: InteropEnv) -> Iterator[InteropEnv]:
    """nginx on the kernel node listening on [::] (IPv6 only, nginx's default for [::])."""
    root = interop.workdir / "www6"
    root.mkdir()
    (root / "big.bin").write_bytes(payload.payload(SIZE, seed=6))
    conf_dir = interop.workdir / "nginx6"
    conf_dir.mkdir()
    conf = conf_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=conf_dir, addr="[::]", port=NGINX6_PORT, root=root))
    proc = interop.spawn_linux(
        ["timeout", str(SERVER_LIFETIME), "nginx", "-p", str(conf_dir), "-e", "stderr", "-c", str(conf)],
        conf_dir / "nginx.log",
    )
    _wait_listening(interop, NGINX6_PORT, proc, conf_dir / "nginx.log")
    yield interop
    proc.terminate()
    proc.wait(5.0)


def test_stack_fetches_from_nginx_on_ipv6(nginx6: InteropEnv) -> None:
    mark = nginx6.trace_mark()
    result: dict[str, Any] = nginx6.call("run_app", {
        "name": "http-client",
        "options": {"host": nginx6.lab.address6_of(LINUX), "port": NGINX6_PORT, "path": "/big.bin",
                    "count": 3, "timeout": 60.0},
        "timeout": 90.0,
    })  # fmt: skip
    assert result["ok"] and result["connections"] == 1
    for response in result["responses"]:
        assert response["status"] == 200 and response["body_length"] == SIZE
        assert response["sha256"] == payload.sha256(SIZE, seed=6)
    nginx6.assert_closed_cleanly(mark)


def test_tcplab_ss_shows_an_ipv6_connection(interop: InteropEnv) -> None:
    """A kernel client holds a connection to the stack's echo server over IPv6; `tcplab ss`
    lists it with both IPv6 endpoints."""
    stack6, linux6 = interop.lab.address6_of(STACK), interop.lab.address6_of(LINUX)
    log = interop.path("socat6.log")
    # socat's stdin is a pipe this test holds open: the connection lives until socat is stopped.
    holder = interop.spawn_linux(["socat", "-", f"TCP6:[{stack6}]:{ECHO_PORT}"], log, stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20.0
        while not any(linux6 in c["remote"] and c["state"] == "ESTABLISHED"
                      for c in interop.call("ss")["connections"]):  # fmt: skip
            assert holder.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, interop.call("ss")
            time.sleep(0.1)
        shown = CliRunner().invoke(lab.cli.app, ["ss", STACK, "--lab", interop.lab.name])
        assert shown.exit_code == 0, shown.output
        row = next(line for line in shown.output.splitlines() if "ESTABLISHED" in line)
        assert stack6 in row and linux6 in row
    finally:
        holder.terminate()
        holder.wait(5.0)
