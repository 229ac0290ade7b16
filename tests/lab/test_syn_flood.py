"""A SYN flood on real namespaces: hping3 on a kernel node floods a stack node's HTTP server with
SYNs from a spoofed, unassigned address of the lab (bounded in count and time), while curl on
another kernel node keeps getting its answers at once, served through SYN cookies once the SYN
queue is full. Every packet stays inside the lab: the SYN-ACKs to the spoofed address die at the
router.

The rate (2,000 SYNs a second) is what the Python node can take in: `hping3 --flood` sends
hundreds of thousands a second, more than the node's TUN queue holds, so it drops SYNs
(curl's too) before TCP sees them, which no TCP mechanism can help; Linux has the same limit,
higher up."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab.lab import Lab
from lab.node.control import ControlClient

pytestmark = pytest.mark.root

TOPOLOGY = """\
name: synflood
defaults:
  stack:
    time_wait: 1s
nodes:
  web:
    kind: stack
    apps: [{name: http-server, options: {port: 80}}]
  r: {kind: router}
  flooder: {kind: kernel}
  client: {kind: kernel}
links:
  - endpoints: [web, r]
  - endpoints: [flooder, r]
  - endpoints: [client, r]
"""
FLOOD_SECONDS = 15
FLOOD_GAP_US = 500  # 2,000 SYNs a second: the SYN queue (128) is full in 64 ms
FLOOD_COUNT = FLOOD_SECONDS * 1_000_000 // FLOOD_GAP_US
REQUESTS = 5


def unassigned_neighbour(lab: Lab, node: str) -> str:
    """An address on node's link that nobody has (the spoofed source of the flood)."""
    for link in lab.plan.links:
        if node in (link.a.node, link.b.node):
            taken = {link.a.address.ip, link.b.address.ip}
            for host in link.subnet.hosts():
                if host not in taken:
                    return str(host)
    raise AssertionError(f"no free address next to {node}")


def test_curl_is_served_during_a_hping3_syn_flood(tmp_path: Path) -> None:
    if shutil.which("hping3") is None:
        pytest.skip("hping3 is not installed (make deps installs it as root)")
    topo = tmp_path / "synflood.yaml"
    topo.write_text(TOPOLOGY)
    lab = Lab.up(topo, f"sf{os.getpid() % 100000}")
    flood: subprocess.Popen[bytes] | None = None
    try:
        web = lab.address_of("web")
        spoofed = unassigned_neighbour(lab, "flooder")
        assert ipaddress.IPv4Address(spoofed).is_private
        control = ControlClient(lab.run_dir / "web.sock", timeout=60.0)
        before = control.call("status", {})["counters"]["host"]
        flood = lab.spawn(
            "flooder",
            ["timeout", str(FLOOD_SECONDS), "hping3", "-q", "-S", "-p", "80", "-a", spoofed,
             "-i", f"u{FLOOD_GAP_US}", "-c", str(FLOOD_COUNT), web],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # Wait until the flood is in full swing: the SYN queue (128) full, and over a thousand
        # SYNs answered with cookies since.
        deadline = time.monotonic() + 20.0
        while (control.call("status", {})["counters"]["host"].get("syncookies_sent", 0)
               <= before.get("syncookies_sent", 0) + 1000):
            assert time.monotonic() < deadline and flood.poll() is None, "the flood filled no SYN queue"
            time.sleep(0.05)
        answers = []
        for i in range(REQUESTS):
            done = lab.exec("client", ["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w",
                                       "%{http_code} %{time_connect}", f"http://{web}/bytes/{1000 + i}"],
                            check=False, timeout=30)
            answers.append((done.returncode, done.stdout.strip(), done.stderr.strip()))
        still_flooding = flood.poll() is None
        flood.terminate()
        flood.wait(timeout=10)
        after = control.call("status", {})["counters"]["host"]
        print({"answers": answers, "counters": {k: after.get(k, 0) - before.get(k, 0) for k in after}})
        assert still_flooding, "the flood ended before the requests did: nothing was shown"
        assert [a[0] for a in answers] == [0] * REQUESTS, answers
        assert all(a[1].startswith("200 ") for a in answers), answers
        # Connected at once: no SYN retransmission (the first comes after 1 s).
        assert all(float(a[1].split()[1]) < 1.0 for a in answers), answers
        assert after.get("syncookies_sent", 0) - before.get("syncookies_sent", 0) > 1000
        cookie_clients = after.get("syncookies_recv", 0) - before.get("syncookies_recv", 0)
        assert cookie_clients >= 1  # curl came in by cookie
    finally:
        if flood is not None and flood.poll() is None:
            flood.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                flood.wait(5.0)
        Lab.down(lab.name)
