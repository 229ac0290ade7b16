"""Shared by the lab tests: an ICMP echo (ping) run with the namespace's Python, since the
machines have no `ping` binary. Either family: an address with a colon is pinged with ICMPv6
(RFC 4443 4.1; the kernel fills in an ICMPv6 raw socket's checksum, RFC 3542 3.1).

    python -c PING ADDRESS [COUNT [INTERVAL [WAIT]]]

sends COUNT echo requests (default 1) INTERVAL seconds apart (default 0.01), collects replies
until WAIT seconds (default 2) after the last request, prints {"sent", "received", "rtts"} as JSON
(rtts in seconds, in sequence order) and exits 0 when at least one reply came back.

Also `clean_sink_report`: tshark's verdict on a snapshot of a stack node's pcap sink; and
`two_node_fetch`: a two-node lab with extra stack settings, after the client fetched a body."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.kernel import capture, tshark
from lab.lab import Lab
from lab.node.control import ControlClient

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def two_node_fetch(workdir: Path, name: str, stack_line: str,
                   body: int) -> Iterator[tuple[Lab, dict[str, object]]]:
    """`topologies/two-node.yaml` with `stack_line` (e.g. "offload: true") added to its default
    stack settings, up as lab `name` + the pid; the client fetches a `body`-octet body from the
    server over HTTP. Yields (lab, the response); the lab goes down after."""
    topo = (REPO / "topologies" / "two-node.yaml").read_text()
    topo = topo.replace("name: two-node", f"name: '{name}'").replace(
        "    time_wait: 1s", f"    time_wait: 1s\n    {stack_line}")
    path = workdir / f"{name}.yaml"
    path.write_text(topo)
    lab_name = f"{name}{os.getpid() % 100000}"
    running = Lab.up(path, lab_name)
    try:
        client = ControlClient(running.run_dir / "client.sock", timeout=60)
        result = client.call("run_app", {"name": "http-client", "timeout": 30,
                                         "options": {"host": "server", "path": f"/bytes/{body}"}})
        yield running, result["responses"][0]
    finally:
        Lab.down(lab_name)


def clean_sink_report(run_dir: Path, node: str, workdir: Path) -> tshark.WireReport:
    """Copy `node`'s pcap sink into `workdir`, read it with tshark and check that it holds the
    frames copied, none malformed and no bad IP or TCP checksum; the report, for more checks."""
    copy = workdir / f"{node}.pcap"
    frames = capture.copy_sink(run_dir, node, copy)
    report = tshark.analyse(copy)
    assert frames > 0 and report.frames == frames
    assert report.malformed == [] and report.bad_ip_checksum == [] and report.bad_tcp_checksum == []
    return report


PING = r"""
import ipaddress, json, os, select, socket, struct, sys, time
dst = sys.argv[1]
dst_ip = ipaddress.ip_address(dst)
count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
wait = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
v6 = ":" in dst
if v6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    request, reply = 128, 129
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    request, reply = 8, 0
ident = os.getpid() & 0xFFFF

def packet(seq):
    body = struct.pack("!BBHHH", request, 0, 0, ident, seq) + b"tcplab-ping!"
    if v6:
        return body  # the kernel computes the ICMPv6 checksum (pseudo-header included)
    total = sum(struct.unpack(f"!{len(body) // 2}H", body))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:]

sent_at, rtts = {}, {}
next_send = time.monotonic()
deadline = None
while True:
    now = time.monotonic()
    if len(sent_at) < count and now >= next_send:
        seq = len(sent_at) + 1
        sent_at[seq] = now
        s.sendto(packet(seq), (dst, 0))
        next_send = now + interval
        if len(sent_at) == count:
            deadline = now + wait
    if deadline is not None and (now >= deadline or len(rtts) == count):
        break
    until = deadline if deadline is not None else next_send
    ready, _, _ = select.select([s], [], [], max(0.0, until - time.monotonic()))
    if not ready:
        continue
    data, addr = s.recvfrom(2048)
    got = time.monotonic()
    start = 0 if v6 else (data[0] & 15) * 4  # an IPv6 raw socket gets no IP header
    if len(data) < start + 8:
        continue
    kind, _, _, got_id, seq = struct.unpack("!BBHHH", data[start : start + 8])
    source = ipaddress.ip_address(addr[0].split("%")[0])
    if kind == reply and got_id == ident and seq in sent_at and seq not in rtts and source == dst_ip:
        rtts[seq] = got - sent_at[seq]
print(json.dumps({"sent": count, "received": len(rtts), "rtts": [rtts[k] for k in sorted(rtts)]}))
sys.exit(0 if rtts else 1)
"""
