"""The Linux kernel's TCP on the same veth, between the two namespaces: the reference the stack is
compared with. iperf3 when it is installed (`apt-get install iperf3`), else Python sockets (one
sender, one receiver, 1 MiB buffers; the work per byte is the kernel's either way).

Roles of the Python fallback, run inside a node's namespace:

    python -m tests.bench.kernel_tcp recv --port 5202 [--accept-timeout 10]
    python -m tests.bench.kernel_tcp send --host 10.1.0.2 --port 5202 --seconds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from tests.bench import REPO_ROOT, child_env, finish, last_json_line, role_argv

if TYPE_CHECKING:
    from lab.lab import Lab

PORT = 5202
BUFSIZE = 1 << 20


def recv_role(port: int, accept_timeout: float) -> dict[str, Any]:
    with socket.create_server(("0.0.0.0", port)) as server:
        print("ready", flush=True)
        server.settimeout(accept_timeout)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(accept_timeout)
            buf = bytearray(BUFSIZE)
            view = memoryview(buf)
            n = conn.recv_into(view)
            t0 = time.monotonic()
            total = n
            while n:
                n = conn.recv_into(view)
                total += n
            elapsed = time.monotonic() - t0
    return {"bytes": total, "seconds": elapsed}


def send_role(host: str, port: int, seconds: float) -> dict[str, Any]:
    chunk = bytes(BUFSIZE)
    sent = 0
    with socket.create_connection((host, port), timeout=10) as sock:
        t0 = time.monotonic()
        deadline = t0 + seconds
        while time.monotonic() < deadline:
            sock.sendall(chunk)
            sent += len(chunk)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # the receiver closes once it has read everything
        elapsed = time.monotonic() - t0
    return {"bytes": sent, "seconds": elapsed}


def server_address(lab: Lab) -> str:
    """The server's own veth address (the kernel owns it; not the stack address behind tun0)."""
    return str(lab.plan.node("server").interfaces[0].address.ip)


def _iperf3(lab: Lab, seconds: float) -> dict[str, Any]:
    server = lab.spawn("server", ["iperf3", "-s", "-1", "-p", str(PORT)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        argv = ["iperf3", "-c", server_address(lab), "-p", str(PORT), "-t", f"{seconds:g}", "-J"]
        for _attempt in range(20):  # the server needs a moment to listen
            done = lab.exec("client", argv, check=False, timeout=seconds + 20)
            # iperf3 -J can exit 0 with "unable to connect" in its report: that is a retry too.
            if done.returncode == 0 and "unable to connect" not in done.stdout:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"iperf3 client failed: {done.stdout[-300:]} {done.stderr[-300:]}")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(5)
    report = json.loads(done.stdout)
    end = report.get("end") or {}
    received = end.get("sum_received")
    if not received:  # iperf3 can exit 0 with an error in its report
        raise RuntimeError(f"iperf3 reported no result: {report.get('error') or done.stdout[-300:]}")
    return {
        "tool": "iperf3",
        "bytes": int(received["bytes"]),
        "seconds": float(received["seconds"]),
        "bytes_per_s": float(received["bits_per_second"]) / 8,
        "retransmits": int((end.get("sum_sent") or {}).get("retransmits", 0)),
    }


def _python_sockets(lab: Lab, seconds: float) -> dict[str, Any]:
    opts: dict[str, Any] = {"cwd": str(REPO_ROOT), "env": child_env(),
                            "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    receiver = lab.spawn("server", role_argv("kernel_tcp", "recv", "--port", str(PORT)), **opts)
    sender: subprocess.Popen[bytes] | None = None
    try:
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != b"ready":
            _, err = finish(receiver, 5)
            raise RuntimeError(f"kernel TCP receiver did not start: {err[-500:]}")
        sender = lab.spawn("client", role_argv("kernel_tcp", "send", "--host", server_address(lab),
                                               "--port", str(PORT), "--seconds", str(seconds)), **opts)
        sout, serr = finish(sender, seconds + 15)
        rout, rerr = finish(receiver, 10)
    finally:
        for proc in (receiver, sender):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
    try:
        got = last_json_line(rout)
        last_json_line(sout)
    except ValueError as exc:
        raise RuntimeError(f"kernel TCP: {exc}; {rerr[-300:]} {serr[-300:]}") from None
    return {
        "tool": "python sockets",
        "bytes": got["bytes"],
        "seconds": got["seconds"],
        "bytes_per_s": got["bytes"] / (got["seconds"] or 1e-9),
        "retransmits": None,
    }


def measure(lab: Lab, seconds: float = 3.0, tool: str = "auto") -> dict[str, Any]:
    """Kernel TCP goodput client → server over the veth: iperf3 if installed (or asked; two tries),
    else (or when iperf3 fails under "auto") Python sockets, saying why in `note`."""
    note = ""
    if tool == "iperf3" or (tool == "auto" and shutil.which("iperf3")):
        for attempt in range(2):
            try:
                return _iperf3(lab, seconds)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                if tool == "iperf3" and attempt == 1:
                    raise
                note = f"iperf3 failed ({exc}); Python sockets instead"
    result = _python_sockets(lab, seconds)
    if note:
        result["note"] = note[:300]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.kernel_tcp", description=__doc__)
    parser.add_argument("role", choices=["recv", "send"])
    parser.add_argument("--host", default="10.1.0.2")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--accept-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.role == "recv":
        result = recv_role(args.port, args.accept_timeout)
    else:
        result = send_role(args.host, args.port, args.seconds)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
