"""The stack against Linux over IPv6, on the interop labs (which are dual-stack like every lab):
curl -6 and ping -6 from the kernel node to the stack's IPv6 address, and the stack's HTTP client
to nginx listening on [::].

These need a stack that speaks IPv6 (`stack.host.Host(..., address6=...)`); until then the module
is skipped with that reason, and the lab keeps IPv6 off the stack node's tun0 (see lab.daemon).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from lab.apps import payload
from lab.daemon import stack_speaks_ipv6
from tests.interop.conftest import HTTP_PORT, LINUX, STACK, InteropEnv
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
