"""lab.scenarios.kernel_server, the far end of `tcplab check` on a kernel node, run here on the
host's own TCP (no namespace, no root): it says `ready` only once its apps listen, serves them,
and ends on SIGTERM."""

from __future__ import annotations

import select
import socket
import subprocess
import sys

from lab.lab import REPO_ROOT
from lab.scenarios import kernel_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serves_the_apps_it_is_given_until_stopped() -> None:
    port = _free_port()
    argv = [sys.executable, "-m", "lab.scenarios.kernel_server", "--serve", f"echo-server:{port}"]
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60.0)
        assert ready and proc.stdout.readline().strip() == b"ready"
        with socket.create_connection(("127.0.0.1", port), timeout=30.0) as conn:
            conn.sendall(b"hello, kernel")
            conn.shutdown(socket.SHUT_WR)
            echoed = b""
            while chunk := conn.recv(4096):
                echoed += chunk
        assert echoed == b"hello, kernel"
    finally:
        kernel_server.stop(proc)
    assert proc.returncode == 0  # SIGTERM is a clean stop, not a crash


def test_a_malformed_server_is_a_one_line_usage_error() -> None:
    argv = [sys.executable, "-m", "lab.scenarios.kernel_server", "--serve", "echo-server"]
    ran = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert ran.returncode == 2
    assert "give APP:PORT" in ran.stderr
