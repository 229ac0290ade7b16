"""The stack's IPv6 on a real TUN device, with Linux as the peer, in one namespace of its own:

    [ns: the kernel, tun0 fd00:0:254::1] ---- point to point ---- [the stack, fd00:0:2::1 (and 10.2.9.1)]

Linux pings the stack over ICMPv6 and talks TCP to it both ways (a kernel client to the stack's
echo server; the stack's client to a kernel echo server on [::]); the same listener answers over
IPv4 too. No neighbour discovery is involved: tun0 has no link layer.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
STACK4, KERNEL4 = "10.2.9.1", "10.254.9.1"
STACK6, KERNEL6 = "fd00:0:2::1", "fd00:0:254::1"

STACK_PROCESS = r"""
import asyncio, json, sys
from stack.host import Host
from stack.socket import Stack
from stack.tun import TunDriver

async def main():
    loop = asyncio.get_running_loop()
    host = Host(sys.argv[1], address6=sys.argv[2])
    driver = TunDriver("tun0", host, loop)
    driver.start()
    stack = Stack(driver.runtime)

    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    await stack.start_server(echo, host="::", port=7)
    print("ready", flush=True)
    port = int(await loop.run_in_executor(None, sys.stdin.readline))
    reader, writer = await stack.open_connection(sys.argv[3], port)
    data = bytes(i % 251 for i in range(200_000))
    writer.write(data)
    writer.write_eof()
    got = await reader.read()
    print("client", len(got), got == data, flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    print(json.dumps(dict(host.counters)), flush=True)

asyncio.run(main())
"""

KERNEL_ECHO = r"""
import socket, sys
srv = socket.create_server(("::", int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True)
print("listening", flush=True)
c, _ = srv.accept()
while data := c.recv(65536):
    c.sendall(data)
c.close()
"""

KERNEL_CLIENT = r"""
import socket, sys
host, n = sys.argv[1], int(sys.argv[2])
data = bytes((i * 7) & 0xFF for i in range(n))
s = socket.create_connection((host, 7), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = bytearray()
while chunk := s.recv(65536):
    got += chunk
print(len(got), bytes(got) == data)
"""

PING6 = r"""
import os, socket, struct, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)  # the kernel sums it
s.settimeout(2.0)
ident = os.getpid() & 0xFFFF
s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"tcplab", (sys.argv[1], 0))
while True:
    reply, _ = s.recvfrom(2048)
    if reply[0] == 129 and struct.unpack("!H", reply[4:6])[0] == ident:
        print("reply", reply[8:].decode())
        break
"""


def ns_run(ns: str, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


class Lines:
    """The stdout lines of a process, read by a thread, waited for with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        out = proc.stdout
        threading.Thread(target=lambda: [self.q.put(line) for line in out], daemon=True).start()

    def next(self, timeout: float = 30.0) -> str:
        return self.q.get(timeout=timeout).strip()


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"tcplab-t6-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_ipv6_tcp_and_icmpv6_between_linux_and_the_stack_over_tun(namespace: str) -> None:
    ns = namespace
    stack = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", STACK_PROCESS, STACK4, STACK6, KERNEL6],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    kernel_server: subprocess.Popen[str] | None = None
    try:
        lines = Lines(stack)
        assert lines.next() == "ready"
        for argv in (["link", "set", "tun0", "up"],
                     ["addr", "add", KERNEL4, "peer", STACK4, "dev", "tun0"],
                     ["-6", "addr", "add", KERNEL6, "peer", f"{STACK6}/128", "dev", "tun0", "nodad"]):
            subprocess.run(["ip", "-n", ns, *argv], check=True)

        ping = ns_run(ns, [sys.executable, "-c", PING6, STACK6])
        assert ping.stdout.strip() == "reply tcplab", ping.stderr

        for address in (STACK6, STACK4):  # one listener on :: answers both families
            done = ns_run(ns, [sys.executable, "-c", KERNEL_CLIENT, address, "300000"])
            assert done.stdout.strip() == "300000 True", (address, done.stderr)

        kernel_server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", KERNEL_ECHO, "8"],
                                         stdout=subprocess.PIPE, text=True)
        assert Lines(kernel_server).next() == "listening"
        assert stack.stdin is not None
        stack.stdin.write("8\n")
        stack.stdin.flush()
        assert lines.next(60) == "client 200000 True"
        stack.stdin.write("\n")
        stack.stdin.flush()
        counters = json.loads(lines.next())
        # Nothing the kernel sent made the stack drop a packet of ours: the only drops are the
        # kernel's own chatter on tun0 (router solicitations, MLD reports to multicast groups).
        assert set(counters) <= {"ip_not_for_us", "icmp6_nd_ignored", "icmp6_echo"}, counters
        assert counters["icmp6_echo"] == 1
    finally:
        for proc in (stack, kernel_server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
