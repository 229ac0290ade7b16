"""Options negotiated with Linux, as seen on the wire (tshark over the stack's pcap sink) and as
each end says it understood them (`ss -tni` in the kernel node, the stack's `ss`)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from lab.kernel import capture, tshark
from lab.node.control import flush_traces
from tests.interop.conftest import ECHO_PORT, STACK, InteropEnv, assert_wire_evidence

pytestmark = [pytest.mark.root, pytest.mark.interop]

LINK_MTU = 1500
MSS = LINK_MTU - 40  # what both ends announce: tun0 and the veth have the link's MTU
TS_OPTION = 12  # bytes of the timestamp option (with padding) in every segment once negotiated
PY_PORT = 8001


def _stack_wscale(env: InteropEnv) -> int:
    config = env.call("status")["tcp_config"]
    # The window must be able to say the most the buffer may grow to (autotuning, as Linux).
    space = max(int(config["rcvbuf"]), int(config.get("rcvbuf_max") or 0))
    shift = 0
    while (space >> shift) > 0xFFFF:
        shift += 1
    return shift


def _syns(env: InteropEnv, conn_port: int) -> list[tshark.SynOptions]:
    flush_traces(env.lab.run_dir)  # the daemon writes its pcap out only each second otherwise
    pcap = env.path("syn.pcap")
    capture.copy_sink(env.lab.run_dir, STACK, pcap)
    return [
        s for s in tshark.syn_options(pcap) if f":{conn_port}>" in s.conn or s.conn.endswith(f":{conn_port}")
    ]


def test_linux_opens_options_on_the_wire_and_in_both_ends(interop: InteropEnv) -> None:
    mark = interop.trace_mark()
    proc = interop.lab.spawn("linux", ["nc", "-N", interop.stack_addr, str(ECHO_PORT)], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10.0
        while True:
            line = interop.linux(["ss", "-tniH", "state", "established", "dst", interop.stack_addr]).stdout
            if "wscale" in line or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        stack_conn = next(
            c for c in interop.call("ss")["connections"] if c["local"].endswith(f":{ECHO_PORT}")
        )
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30.0)
    kernel_port = int(stack_conn["remote"].rsplit(":", 1)[1])
    wscale = re.search(r"wscale:(\d+),(\d+)", line)
    assert wscale, line
    linux_sees_stack_shift, linux_shift = int(wscale.group(1)), int(wscale.group(2))
    # Linux's effective MSS is the announced one less the timestamp option: timestamps are on.
    assert f"mss:{MSS - TS_OPTION}" in line, line

    syns = _syns(interop, kernel_port)
    syn = [s for s in syns if not s.syn_ack]
    syn_ack = [s for s in syns if s.syn_ack]
    assert syn and syn_ack, syns
    for s in syn:  # Linux's SYN (more than one only if the impaired link lost one)
        assert (s.src, s.mss, s.wscale, s.sack_permitted, s.timestamps) == (
            interop.linux_addr,
            MSS,
            linux_shift,
            True,
            True,
        ), s
    for s in syn_ack:  # the stack's answer: the same four options, its own values
        assert (s.src, s.mss, s.wscale, s.sack_permitted, s.timestamps) == (
            interop.stack_addr,
            MSS,
            _stack_wscale(interop),
            True,
            True,
        ), s
    assert linux_sees_stack_shift == _stack_wscale(interop)
    # The stack understood Linux's options: effective MSS less the timestamp option, all three on.
    assert stack_conn["mss"] == MSS - TS_OPTION
    assert set(stack_conn["options"].split(",")) == {"ws", "sack", "ts"}
    # The stack's trace spells what the wire carries.
    traced = [e for e in interop.events(mark, ["SegmentEvent"])
              if e["direction"] == "out" and e["flags"].startswith("S")]  # fmt: skip
    assert traced and all(
        f"mss {MSS}" in e["options"]
        and f"wscale {_stack_wscale(interop)}" in e["options"]
        and "sackOK" in e["options"]
        and "TS val" in e["options"]
        for e in traced
    ), traced
    interop.assert_closed_cleanly(mark)


def test_stack_opens_options_on_the_wire(interop: InteropEnv) -> None:
    mark = interop.trace_mark()
    log = interop.workdir / "options-http.log"
    argv = ["timeout", "120", sys.executable, "-m", "http.server", str(PY_PORT),
            "--bind", interop.linux_addr, "--directory", str(interop.workdir)]  # fmt: skip
    server = interop.spawn_linux(argv, log)
    try:
        deadline = time.monotonic() + 10.0
        while f":{PY_PORT} " not in interop.linux(["ss", "-tlnH"]).stdout:
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()
            time.sleep(0.05)
        result = interop.call(
            "run_app",
            {
                "name": "http-client",
                "timeout": 60.0,
                "options": {"host": interop.linux_addr, "port": PY_PORT, "path": "/"},
            },
        )
        assert result["responses"][0]["status"] == 200
    finally:
        server.terminate()
        server.wait(5.0)
    syns = _syns(interop, PY_PORT)
    syn = [s for s in syns if not s.syn_ack and s.src == interop.stack_addr]
    syn_ack = [s for s in syns if s.syn_ack and s.src == interop.linux_addr]
    assert syn and syn_ack, syns
    for s in syn:
        assert (s.mss, s.wscale, s.sack_permitted, s.timestamps) == (
            MSS,
            _stack_wscale(interop),
            True,
            True,
        ), s
    for s in syn_ack:  # Linux answers every option the stack offered
        assert (s.mss, s.sack_permitted, s.timestamps) == (MSS, True, True), s
        assert s.wscale is not None and 0 <= s.wscale <= 14, s
    interop.assert_closed_cleanly(mark)


def test_wire_evidence(interop: InteropEnv) -> None:
    assert_wire_evidence(interop)
