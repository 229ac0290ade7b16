"""The Python stack against Linux's TCP, on `topologies/interop.yaml` and its impaired twin.

Every test module gets the fixture `interop` twice: once on the clean link (`clean`) and once on
`topologies/interop-lossy.yaml` (`lossy`: 20 ms each way, 2% loss, 5% reordering). Each is one lab
per module (module scope), always torn down. The stack node runs the HTTP server (port 80, with a
static root) and the echo server (port 7); a tcpdump on the stack node's link interface and the
stack's own pcap sink record everything, so the module's last test can check the wire with tshark
(`InteropEnv.wire_evidence`).

Kernel-side commands run in the `linux` node's namespace with `InteropEnv.linux`; traffic never
leaves the lab's namespaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lab.kernel import capture, tshark
from lab.kernel.netns import privilege_problem
from lab.lab import Lab
from lab.node.control import ControlClient, flush_traces

HTTP_PORT = 80
ECHO_PORT = 7
STACK, LINUX = "stack", "linux"
TOPOLOGIES = {
    "clean": "topologies/interop.yaml",
    "lossy": "topologies/interop-lossy.yaml",
    "offload": "topologies/interop-offload.yaml",  # the clean link, the stack with TUN offloads
}
# The stack's sender is loss-limited on the impaired link (about 270 KB/s at 2% loss and a 45 ms
# RTT, as Mathis' formula predicts), so 20 MB would take 75 s there: the impaired run moves 4 MB.
BIG_BODY = {"clean": 20_000_000, "lossy": 4_000_000, "offload": 20_000_000}
SETTLE = {"clean": 10.0, "lossy": 30.0, "offload": 10.0}
"""Seconds every connection gets to reach CLOSED or TIME_WAIT on both ends after a test."""
LINK_MTU = 1500
CLEAN_CLOSE_FROM = {"LAST_ACK", "TIME_WAIT"}
"""The states a connection may enter CLOSED from when it closed cleanly."""

_counter = iter(range(1, 1_000_000))


@dataclasses.dataclass
class InteropEnv:
    lab: Lab
    variant: str
    workdir: Path
    control: ControlClient
    link_capture: capture.LinkCapture | None = None
    processes: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)
    evidence: dict[str, Any] | None = None
    """What `wire_evidence` found (the module's later tests read it)."""
    peer_resets: set[str] = dataclasses.field(default_factory=set)
    """Stack connections a test allowed Linux to reset (wrk's abrupt close at its end)."""

    @property
    def stack_addr(self) -> str:
        return self.lab.address_of(STACK)

    @property
    def linux_addr(self) -> str:
        return self.lab.address_of(LINUX)

    @property
    def big(self) -> int:
        return BIG_BODY[self.variant]

    @property
    def lossy(self) -> bool:
        return self.variant == "lossy"

    # -- running things ----------------------------------------------------------------------

    def call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        return self.control.call(op, args or {})

    def linux(
        self, argv: Sequence[str], timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """A command in the kernel node's namespace (Linux TCP), output as text."""
        done = self.lab.exec(LINUX, argv, check=False, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def sh(self, script: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return self.linux(["sh", "-c", script], timeout=timeout)

    def spawn_linux(self, argv: Sequence[str], log: Path, **popen: Any) -> subprocess.Popen[bytes]:
        """A long-running kernel-side process; stopped at the module's end (and by `down`)."""
        with open(log, "wb") as out:
            proc = self.lab.spawn(LINUX, argv, stdout=out, stderr=subprocess.STDOUT, **popen)
        self.processes.append(proc)
        return proc

    def path(self, name: str) -> Path:
        return self.workdir / f"{next(_counter):04d}-{name}"

    # -- states and closes -------------------------------------------------------------------

    def trace_mark(self) -> int:
        """The stack trace's next sequence number: events from here on belong to the caller."""
        return int(self.call("trace", {"limit": 1, "tail": True})["next"])

    def events(self, since: int, kinds: Sequence[str]) -> list[dict[str, Any]]:
        answer = self.call("trace", {"since": since, "kinds": list(kinds), "limit": 100_000})
        events: list[dict[str, Any]] = answer["events"]
        return events

    def kernel_sockets(self) -> list[tuple[str, str, str]]:
        """(state, local, peer) of the kernel node's TCP sockets, listeners left out."""
        out = self.linux(["ss", "-tanH"]).stdout
        rows = [line.split() for line in out.splitlines() if line.strip()]
        return [(r[0], r[3], r[4]) for r in rows if r[0] != "LISTEN"]

    def stack_sockets(self) -> list[tuple[str, str, str]]:
        conns = self.call("ss")["connections"]
        return [(c["state"], c["local"], c["remote"]) for c in conns]

    def settle(self) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
        """Wait (bounded) until no socket on either end is in a state other than TIME_WAIT
        (CLOSED sockets are gone on both). Returns what is still in another state, per end."""
        deadline = time.monotonic() + SETTLE[self.variant]
        while True:
            stack = [s for s in self.stack_sockets() if s[0] != "TIME_WAIT"]
            kernel = [s for s in self.kernel_sockets() if s[0] != "TIME-WAIT"]
            if (not stack and not kernel) or time.monotonic() > deadline:
                return stack, kernel
            time.sleep(0.1)

    def assert_closed_cleanly(
        self, since: int, min_connections: int = 1, allow_peer_reset: bool = False
    ) -> list[str]:
        """Both ends settle, and every stack connection opened since `since` went to CLOSED (or
        sits in TIME_WAIT) by the textbook path, never by a reset (unless `allow_peer_reset`: then
        Linux may reset an ESTABLISHED one, which is recorded). Returns those connections."""
        stack_left, kernel_left = self.settle()
        assert not stack_left, f"stack sockets not CLOSED/TIME_WAIT: {stack_left}"
        assert not kernel_left, f"kernel sockets not CLOSED/TIME-WAIT: {kernel_left}"
        changes = self.events(since, ["StateChange"])
        last: dict[str, dict[str, Any]] = {}
        for change in changes:
            if change["new"] == "CLOSED" and allow_peer_reset and change["cause"] == "segment:R":
                self.peer_resets.add(change["conn"])
            elif change["new"] == "CLOSED":
                assert change["old"] in CLEAN_CLOSE_FROM, f"unclean close: {change}"
            last[change["conn"]] = change
        for conn, change in last.items():
            assert change["new"] in ("CLOSED", "TIME_WAIT"), f"{conn} ended in {change}"
        assert len(last) >= min_connections, f"expected {min_connections}+ connections, traced {list(last)}"
        return list(last)

    # -- evidence ----------------------------------------------------------------------------

    def wire_evidence(self) -> dict[str, Any]:
        """Stop the link capture, snapshot the stack's pcap sink and trace, and read them with
        tshark (see tests/interop/test_*: the last test of each module asserts on this)."""
        assert self.link_capture is not None, "the link capture was not started"
        flush_traces(self.lab.run_dir)  # the daemon writes its trace files out only each second otherwise
        link_stats = self.link_capture.stop()
        sink = self.workdir / "stack-sink.pcap"
        trace = self.workdir / "stack.trace.jsonl"
        sink_packets = capture.copy_sink(self.lab.run_dir, STACK, sink)
        capture.copy_trace(self.lab.run_dir, STACK, trace)
        sink_report = tshark.analyse(sink, mtu=LINK_MTU)
        # On the link, Linux's own segments may carry veth's partial checksums (offload): judge
        # checksums there only for what the stack sent; the sink holds Linux's completed ones.
        # With the stack's TUN offloads on, its own super-segments cross the veth the same way
        # (the kernel cuts them, and completes their checksums, only where a device needs it):
        # then the sink, whose every packet the stack completes, is where checksums are judged.
        judged = [] if self.variant == "offload" else [self.stack_addr]
        link_report = tshark.analyse(link_stats.path, checked_sources=judged)
        events = tshark.read_events(trace, ["Retransmit", "StateChange", "SegmentEvent"])
        retransmits = [e for e in events if e["kind"] == "Retransmit"]
        comparison = tshark.compare_retransmissions(sink_report, retransmits, self.stack_addr)
        self.evidence = {
            "sink": sink_report,
            "sink_packets": sink_packets,
            "link": link_report,
            "link_stats": link_stats,
            "retransmissions": comparison,
            "events": events,
        }
        return self.evidence


def assert_wire_evidence(env: InteropEnv, bulk: bool = False) -> dict[str, Any]:
    """What every module's last test requires of the captures of its runs. `bulk`: the module
    moved megabytes, so on the impaired link the stack must have retransmitted something."""
    ev = env.wire_evidence()
    sink: tshark.WireReport = ev["sink"]
    link: tshark.WireReport = ev["link"]
    stats: capture.CaptureStats = ev["link_stats"]
    summary = {
        "sink": sink.summary(),
        "link": link.summary(),
        "retransmissions": ev["retransmissions"].summary(),
        "link_dropped_by_kernel": stats.dropped_by_kernel,
    }
    print(summary)
    assert sink.frames == ev["sink_packets"] > 0
    assert stats.captured > 0 and stats.dropped_by_kernel == 0, summary
    for report in (sink, link):
        assert report.malformed == [], summary
        assert report.bad_ip_checksum == [], summary
        assert report.bad_tcp_checksum == [], summary
    # Every packet the stack sent is in its sink, before any loss: tshark's retransmissions from
    # the stack are exactly the stack's Retransmit events, by connection and sequence number.
    comparison: tshark.RetransmissionComparison = ev["retransmissions"]
    assert comparison.only_traced == [] and comparison.only_flagged == [], summary
    if env.lossy and bulk:
        assert comparison.traced > 0, "2% loss and no retransmission at all?"
    # Resets: the stack may answer a segment for a connection it has already CLOSED (a late
    # duplicate ACK after its LAST_ACK, reordered on the impaired link) with RST, as RFC 9293
    # 3.10.7.1 says; it must never reset a live connection. Linux may reset only what a test
    # allowed (wrk closing with a response in flight).
    closed: set[str] = set()
    state: dict[str, str] = {}
    after_close: set[str] = set()
    """Connections Linux reset after their close had completed on the stack's side: Linux had
    already forgotten the connection and answered a late stack ACK (for example the ACK RFC 7323
    sends for a PAWS-rejected, reordered duplicate) with RST, ending the stack's TIME_WAIT."""
    for event in ev["events"]:
        conn = event.get("conn", "")
        if event["kind"] == "StateChange":
            state[conn] = event["new"]
            if event["new"] == "CLOSED":
                closed.add(conn)
            else:
                closed.discard(conn)
        elif event["kind"] == "SegmentEvent" and "R" in event["flags"]:
            if event["direction"] == "out":
                assert conn in closed, f"the stack reset a live connection: {event}"
            elif state.get(conn) in ("TIME_WAIT", "CLOSED"):
                after_close.add(conn)
    summary["linux_resets_after_close"] = len(after_close)
    allowed = env.peer_resets | after_close
    peer = [
        s for s in sink.resets
        if s.src != env.stack_addr and f"{s.dst}:{s.dport}>{s.src}:{s.sport}" not in allowed
    ]  # fmt: skip
    assert peer == [], summary
    return summary


def _lab_name(variant: str) -> str:
    return f"iop{os.getpid() % 100000}{variant[0]}{next(_counter)}"


@pytest.fixture(scope="module", params=sorted(TOPOLOGIES))
def interop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteropEnv]:
    problem = privilege_problem()
    if problem:
        pytest.skip(problem)
    variant: str = request.param
    workdir = tmp_path_factory.mktemp(f"interop-{variant}")
    lab = Lab.up(TOPOLOGIES[variant], _lab_name(variant))
    env: InteropEnv | None = None
    try:
        www = workdir / "www"
        www.mkdir()
        (www / "hello.txt").write_text("hello from the python stack\n")
        env = InteropEnv(lab, variant, workdir, ControlClient(lab.run_dir / f"{STACK}.sock", timeout=180.0))
        env.call("start_app", {"name": "http-server", "options": {"port": HTTP_PORT, "root": str(www)}})
        env.call("start_app", {"name": "echo-server", "options": {"port": ECHO_PORT}})
        env.link_capture = capture.LinkCapture.start(lab, STACK, "eth0", workdir / "stack-eth0.pcap")
        yield env
    finally:
        if env is not None:
            if env.link_capture is not None:
                env.link_capture.kill()
            for proc in env.processes:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5.0)
        Lab.down(lab.name)


def parse_wrk(text: str) -> dict[str, int]:
    """Requests, socket errors and non-2xx/3xx answers from wrk's report."""
    requests = re.search(r"(\d+) requests in", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "requests": int(requests.group(1)) if requests else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }
