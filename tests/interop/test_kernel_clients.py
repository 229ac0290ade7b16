"""Linux TCP clients (curl, urllib, socat, nc, wrk) against the stack's HTTP and echo servers,
on the clean and the impaired link. The same bytes arrive; both ends end CLOSED or TIME_WAIT."""

from __future__ import annotations

import hashlib
import json
import shlex
import sys

import pytest

from lab.kernel import tshark
from lab.node.apps import payload
from tests.interop.conftest import (
    ECHO_PORT,
    HTTP_PORT,
    LINK_MTU,
    InteropEnv,
    assert_wire_evidence,
    parse_wrk,
)

pytestmark = [pytest.mark.root, pytest.mark.interop]

SMALL = (1, 1000, 65536)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_curl_small_files(interop: InteropEnv) -> None:
    mark = interop.trace_mark()
    base = f"http://{interop.stack_addr}:{HTTP_PORT}"
    for n in SMALL:
        out = interop.path(f"small-{n}")
        done = interop.linux(["curl", "-sS", "--max-time", "30", "-o", str(out), "-w", "%{http_code}",
                              f"{base}/bytes/{n}"])  # fmt: skip
        assert done.stdout == "200"
        assert _digest(out.read_bytes()) == payload.sha256(n)
    out = interop.path("hello")
    done = interop.linux(["curl", "-sS", "--max-time", "30", "-o", str(out), "-w", "%{http_code}",
                          f"{base}/hello.txt"])  # fmt: skip
    assert done.stdout == "200" and out.read_text() == "hello from the python stack\n"
    interop.assert_closed_cleanly(mark, min_connections=len(SMALL) + 1)


def test_curl_keepalive_reuses_one_connection(interop: InteropEnv) -> None:
    mark = interop.trace_mark()
    sizes = (100, 5000, 20000, 1)
    argv = ["curl", "-sS", "--max-time", "60", "-w", "%{http_code} %{num_connects}\\n"]
    outs = [interop.path(f"ka-{n}") for n in sizes]
    for n, out in zip(sizes, outs, strict=True):
        argv += ["-o", str(out), f"http://{interop.stack_addr}:{HTTP_PORT}/bytes/{n}"]
    lines = interop.linux(argv).stdout.split()
    codes, connects = lines[0::2], [int(c) for c in lines[1::2]]
    assert codes == ["200"] * len(sizes)
    assert connects == [1] + [0] * (len(sizes) - 1), f"curl opened {sum(connects)} connections"
    for n, out in zip(sizes, outs, strict=True):
        assert _digest(out.read_bytes()) == payload.sha256(n)
    conns = interop.assert_closed_cleanly(mark)
    assert len(conns) == 1, conns


def test_curl_large_body_digest(interop: InteropEnv) -> None:
    mark = interop.trace_mark()
    url = f"http://{interop.stack_addr}:{HTTP_PORT}/bytes/{interop.big}"
    done = interop.sh(f"curl -sS --max-time 100 {url} | sha256sum", timeout=110)
    assert done.stdout.split()[0] == payload.sha256(interop.big)
    interop.assert_closed_cleanly(mark)


def test_curl_post_body(interop: InteropEnv) -> None:
    mark = interop.trace_mark()
    body = payload.payload(300_000, seed=3)
    sent, got = interop.path("post-body"), interop.path("post-answer")
    sent.write_bytes(body)
    done = interop.linux([
        "curl", "-sS", "--max-time", "60", "--data-binary", f"@{sent}",
        "-H", "Content-Type: application/octet-stream", "-o", str(got), "-w", "%{http_code}",
        f"http://{interop.stack_addr}:{HTTP_PORT}/echo",
    ])  # fmt: skip
    assert done.stdout == "200"
    assert got.read_bytes() == body
    interop.assert_closed_cleanly(mark)


URLLIB = """
import hashlib, json, sys, urllib.request
base, big = sys.argv[1], int(sys.argv[2])
out = {}
with urllib.request.urlopen(base + "/bytes/1000", timeout=60) as r:
    out["small"] = [r.status, hashlib.sha256(r.read()).hexdigest()]
h = hashlib.sha256(); n = 0
with urllib.request.urlopen(base + "/bytes/%d" % big, timeout=60) as r:
    status = r.status
    while chunk := r.read(1 << 16):
        h.update(chunk); n += len(chunk)
out["big"] = [status, n, h.hexdigest()]
body = bytes(range(256)) * 400
req = urllib.request.Request(base + "/echo", data=body, method="POST")
with urllib.request.urlopen(req, timeout=60) as r:
    out["post"] = [r.status, r.read() == body]
print(json.dumps(out))
"""


def test_urllib_get_and_post(interop: InteropEnv) -> None:
    mark = interop.trace_mark()
    base = f"http://{interop.stack_addr}:{HTTP_PORT}"
    done = interop.linux([sys.executable, "-c", URLLIB, base, str(interop.big)], timeout=110)
    result = json.loads(done.stdout)
    assert result["small"] == [200, payload.sha256(1000)]
    assert result["big"] == [200, interop.big, payload.sha256(interop.big)]
    assert result["post"] == [200, True]
    interop.assert_closed_cleanly(mark, min_connections=3)


@pytest.mark.parametrize("tool", ["socat", "nc"])
def test_echo_with_half_close_from_linux(interop: InteropEnv, tool: str) -> None:
    """Linux sends, then shuts its sending side (FIN) while the stack is still echoing back: the
    stack's connection reaches CLOSE_WAIT and keeps sending data, and every byte returns."""
    mark = interop.trace_mark()
    size = 1_000_000 if tool == "socat" else 200_000
    data = payload.payload(size, seed=7)
    sent, got = interop.path(f"{tool}-in"), interop.path(f"{tool}-out")
    sent.write_bytes(data)
    target = f"{interop.stack_addr} {ECHO_PORT}"
    if tool == "socat":
        # On stdin's EOF socat shuts down the TCP write side, then reads until the stack's FIN
        # (-t: how long it waits for that, not a limit on the transfer).
        command = f"socat -t 60 - TCP:{interop.stack_addr}:{ECHO_PORT} < {shlex.quote(str(sent))}"
    else:
        command = f"nc -N -w 60 {target} < {shlex.quote(str(sent))}"
    interop.sh(f"{command} > {shlex.quote(str(got))}", timeout=90)
    received = got.read_bytes()
    assert len(received) == size and received == data
    conns = interop.assert_closed_cleanly(mark)
    echo_conns = [c for c in conns if c.split(">")[0].endswith(f":{ECHO_PORT}")]
    assert len(echo_conns) == 1, conns
    conn = echo_conns[0]
    events = [e for e in interop.events(mark, ["StateChange", "SegmentEvent"]) if e["conn"] == conn]
    close_wait = next(
        i for i, e in enumerate(events) if e["kind"] == "StateChange" and e["new"] == "CLOSE_WAIT"
    )
    data_after = [e for e in events[close_wait:] if e["kind"] == "SegmentEvent" and e["direction"] == "out"
                  and e["len"] > 0]  # fmt: skip
    assert data_after, "the stack had echoed everything before Linux's FIN: no half-closed phase"
    states = [e["new"] for e in events if e["kind"] == "StateChange"]
    assert states[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"], states


def test_wrk_two_connections_five_seconds(interop: InteropEnv) -> None:
    mark = interop.trace_mark()
    done = interop.linux(["wrk", "-t", "2", "-c", "2", "-d", "5s", "--timeout", "10s",
                          f"http://{interop.stack_addr}:{HTTP_PORT}/bytes/1000"], timeout=60)  # fmt: skip
    result = parse_wrk(done.stdout)
    print(done.stdout, result)
    assert result["requests"] > 0, done.stdout
    assert result["socket_errors"] == 0, done.stdout
    assert result["non_2xx"] == 0, done.stdout
    # wrk stops at the deadline by closing its sockets, often with a response in flight: Linux
    # then resets (RFC 1122 4.2.2.13, close with unread data). That is wrk's doing, so a reset
    # from Linux is allowed here, and only here; both ends still end CLOSED or TIME_WAIT.
    interop.assert_closed_cleanly(mark, min_connections=2, allow_peer_reset=True)


def test_wire_evidence(interop: InteropEnv) -> None:
    """Last in the module: the captures of every run above, read by tshark."""
    assert_wire_evidence(interop, bulk=True)


def test_stack_packets_fit_the_link_mtu(interop: InteropEnv) -> None:
    """Every IP packet the stack sent fits the 1500-byte link (so the node's kernel never had to
    answer with ICMP fragmentation-needed), SACK blocks on full-sized data segments included."""
    evidence = interop.evidence or interop.wire_evidence()
    sink: tshark.WireReport = evidence["sink"]
    if interop.variant == "offload":
        # TSO/GRO super-segments are longer than the link by design (so the sink has them): what
        # must fit is every segment the kernel cuts from one, gso payload octets plus headers.
        outs = [e for e in evidence["events"] if e["kind"] == "SegmentEvent" and e["direction"] == "out"]
        assert any(e.get("gso") for e in outs), "offloads on, and no super-segment sent"
        too_big = [e for e in outs
                   if 40 + _option_octets(e["options"]) + (e.get("gso") or e["len"]) > LINK_MTU]
        assert too_big == [], too_big[:5]
    else:
        assert sink.oversized == [], (
            f"{len(sink.oversized)} packets over {LINK_MTU} bytes, frames {sink.oversized[:10]}"
        )
    assert sink.icmp_errors == [], f"ICMP errors to the stack: frames {sink.icmp_errors[:10]}"


def _option_octets(options: str) -> int:
    """TCP option octets of a data segment as traced: timestamps (with two NOPs), SACK blocks."""
    n = 12 if "TS val" in options else 0
    for part in options.split(","):
        if part.startswith("sack "):
            n += 4 + 8 * len(part.split()[1:])
    return n
