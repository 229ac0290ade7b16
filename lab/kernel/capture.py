"""Evidence on the wire: record packets in a lab (lab.kernel.tshark reads them back).

Two ways to get a pcap of what a node saw:

- `LinkCapture.start(lab, node, ifname, path)`: tcpdump on one of the node's interfaces, run in
  the node's namespace (`tun0` of a stack node included). It sees what crossed that interface.
  netem acts on the sender's egress, before tcpdump there; the user-space emulator holds packets
  on the receiving side's ingress (after tcpdump on either end), so with it a capture shows each
  packet at its sending time, lost ones included.
- `copy_sink(run_dir, node, path)`: a snapshot of a stack node's own pcap sink (NODE.pcap, every
  IP packet the stack sent or received, before any loss on the link). The daemon writes it as it
  goes, so the copy is cut at the last whole record.

Checksums and offload: a Linux node's own TCP segments leave over veth with CHECKSUM_PARTIAL
(the checksum field holds only the pseudo-header sum; the "hardware" would finish it), and a
capture on either end of the veth sees them like that, so tshark calls them bad. They are
completed before they reach user space through tun0, so the stack's own pcap sink sees every
packet with its final checksums. `tshark.analyse(..., checked_sources=...)` limits the checksum verdict
to packets from given addresses (for a link capture: the stack's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.lab import Lab

PCAP_GLOBAL_LEN = 24
PCAP_RECORD = struct.Struct("<IIII")
TCPDUMP_START_TIMEOUT = 10.0
TCPDUMP_BUFFER_KIB = 32768  # -B: a 20 MB transfer at full speed must not overrun the ring


class CaptureError(RuntimeError):
    """A capture could not be started, stopped, copied or read; the message says why."""


# -- where to capture ----------------------------------------------------------------------------


def resolve_ifname(lab: Lab, node: str, link: str | None) -> str:
    """The node's interface for `link`: a link name as `tcplab status` shows it (stack-linux), a
    link index, or an interface name (eth0, tun0). None: the node's first link interface."""
    plan = lab.plan.node(node)
    names = [iface.ifname for iface in plan.interfaces] + ([plan.tun.ifname] if plan.tun else [])
    if link is None:
        if not plan.interfaces:
            raise CaptureError(f"node {node} has no links to capture on")
        return plan.interfaces[0].ifname
    if link in names:
        return link
    try:
        found = lab.plan.link(link)
    except KeyError as exc:
        raise CaptureError(f"{exc.args[0]}; or an interface of {node}: {', '.join(names)}") from None
    for end in (found.a, found.b):
        if end.node == node:
            return end.ifname
    raise CaptureError(f"link {found.name} does not touch node {node}")


# -- tcpdump in a namespace ----------------------------------------------------------------------


@dataclasses.dataclass
class CaptureStats:
    path: Path
    captured: int
    dropped_by_kernel: int
    """Packets the capture ring overflowed on: nonzero means the pcap is incomplete."""


class LinkCapture:
    """tcpdump writing `path` from inside a node's namespace; `stop()` ends it and reads its counts."""

    def __init__(self, proc: subprocess.Popen[bytes], path: Path, log: Path, node: str, ifname: str) -> None:
        self.proc = proc
        self.path = path
        self.log = log
        self.node = node
        self.ifname = ifname

    @classmethod
    def start(
        cls,
        lab: Lab,
        node: str,
        ifname: str,
        path: Path,
        *,
        bpf: Sequence[str] = (),
        max_seconds: float = 900.0,
    ) -> LinkCapture:
        """Start tcpdump and return once it listens. `max_seconds` bounds its life whatever happens
        (coreutils timeout), so a test that dies cannot leave it running past that."""
        if shutil.which("tcpdump") is None:
            raise CaptureError("tcpdump is not installed (apt-get install tcpdump)")
        path.parent.mkdir(parents=True, exist_ok=True)
        log = path.with_suffix(path.suffix + ".log")
        argv = [
            "timeout", "-s", "INT", f"{max_seconds:g}",
            # -Z root: tcpdump would otherwise drop to its own user and fail to write under a 0700 dir.
            # --immediate-mode: each packet is handed over as it comes, not in blocks libpcap holds
            # up to a second (TPACKET_V3), so a capture stopped just after the traffic has all of it.
            "tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-s", "0", "-B", str(TCPDUMP_BUFFER_KIB),
            "-Z", "root", "-w", str(path), *bpf,
        ]  # fmt: skip
        with open(log, "wb") as errfile:
            proc = lab.spawn(node, argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errfile)
        capture = cls(proc, path, log, node, ifname)
        deadline = time.monotonic() + TCPDUMP_START_TIMEOUT
        while b"listening on" not in capture._log_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                capture.kill()
                raise CaptureError(f"tcpdump on {node}:{ifname} did not start: {capture._log_text()}")
            time.sleep(0.02)
        return capture

    def _log_bytes(self) -> bytes:
        with contextlib.suppress(OSError):
            return self.log.read_bytes()
        return b""

    def _log_text(self) -> str:
        return self._log_bytes().decode(errors="replace").strip()

    def stop(self, timeout: float = 10.0) -> CaptureStats:
        """SIGINT (tcpdump flushes and prints its counts), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            # timeout(1) forwards the signal to tcpdump; nsenter execs, so proc.pid is timeout's.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        text = self._log_text()
        return CaptureStats(
            self.path, _count(text, "packets captured"), _count(text, "packets dropped by kernel")
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5.0)


def _count(text: str, what: str) -> int:
    for line in text.splitlines():
        if line.strip().endswith(what):
            with contextlib.suppress(ValueError):
                return int(line.split()[0])
    return 0


# -- the node's own pcap sink --------------------------------------------------------------------


def copy_sink(run_dir: Path, node: str, path: Path) -> int:
    """Copy NODE.pcap (the stack's own sink) to `path`, cut at the last whole record, and return
    the number of packets copied. Safe while the daemon is still writing it."""
    source = run_dir / f"{node}.pcap"
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise CaptureError(
            f"{source} does not exist: is {node} a stack node with its pcap sink on?"
        ) from None
    if len(data) < PCAP_GLOBAL_LEN:
        raise CaptureError(f"{source} has no pcap header yet")
    end, packets = PCAP_GLOBAL_LEN, 0
    while end + PCAP_RECORD.size <= len(data):
        _sec, _usec, incl, _orig = PCAP_RECORD.unpack_from(data, end)
        if end + PCAP_RECORD.size + incl > len(data):
            break
        end += PCAP_RECORD.size + incl
        packets += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:end])
    return packets


def copy_trace(run_dir: Path, node: str, path: Path) -> int:
    """Copy NODE.trace.jsonl up to its last whole line; returns the number of events."""
    source = run_dir / f"{node}.trace.jsonl"
    data = source.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data.count(b"\n")
