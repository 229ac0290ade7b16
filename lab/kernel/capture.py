"""Evidence on the wire: record packets in a lab, and read them back with tshark.

Two ways to get a pcap of what a node saw:

- `LinkCapture.start(lab, node, ifname, path)`: tcpdump on one of the node's interfaces, run in
  the node's namespace (`tun0` of a stack node included). It sees what crossed that interface:
  on egress *after* the impairment emulator (netem or the user-space NFQUEUE one), so a packet the
  link lost is not in a capture of the sender's link interface.
- `copy_sink(run_dir, node, path)`: a snapshot of a stack node's own pcap sink (NODE.pcap, every
  IP packet the stack sent or received, before any loss on the link). The daemon writes it as it
  goes, so the copy is cut at the last whole record.

Then `analyse(pcap)` runs tshark with IP and TCP checksum validation on and counts malformed
packets, bad checksums and the frames tshark's sequence analysis flags as retransmissions;
`syn_options(pcap)` reads the options of every SYN; `traced_retransmits` and
`compare_retransmissions` line tshark's retransmissions up with the stack's Retransmit events.

Checksums and offload: a Linux node's own TCP segments leave over veth with CHECKSUM_PARTIAL
(the checksum field holds only the pseudo-header sum; the "hardware" would finish it), and a
capture on either end of the veth sees them like that, so tshark calls them bad. They are
completed before they reach user space through tun0, so the stack's own pcap sink sees every
packet with its final checksums. `analyse(..., checked_sources=...)` limits the checksum verdict
to packets from given addresses (for a link capture: the stack's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.lab import Lab

PCAP_GLOBAL_LEN = 24
PCAP_RECORD = struct.Struct("<IIII")
TCPDUMP_START_TIMEOUT = 10.0
TCPDUMP_BUFFER_KIB = 32768  # -B: a 20 MB transfer at full speed must not overrun the ring
TSHARK_TIMEOUT = 300.0
CHECKSUM_PREFS = ("-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE")


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
            "tcpdump", "-i", ifname, "-n", "-U", "-s", "0", "-B", str(TCPDUMP_BUFFER_KIB),
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


# -- tshark --------------------------------------------------------------------------------------


def tshark_fields(pcap: Path, display_filter: str, fields: Sequence[str]) -> list[list[str]]:
    """One row per frame matching `display_filter`, one column per field (checksums validated)."""
    if shutil.which("tshark") is None:
        raise CaptureError("tshark is not installed (apt-get install tshark)")
    argv = ["tshark", "-n", *CHECKSUM_PREFS, "-r", str(pcap), "-Y", display_filter, "-T", "fields",
            "-E", "separator=\t", "-E", "occurrence=f"]  # fmt: skip
    for name in fields:
        argv += ["-e", name]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TSHARK_TIMEOUT, check=False)
    if done.returncode != 0:
        raise CaptureError(f"tshark on {pcap} failed ({done.returncode}): {done.stderr.strip()}")
    return [line.split("\t") for line in done.stdout.splitlines() if line]


@dataclasses.dataclass(frozen=True)
class WireSegment:
    """One TCP segment as tshark read it (absolute sequence numbers)."""

    frame: int
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    len: int
    flags: str
    """SYN/FIN/RST/ACK/PSH letters, like the stack's trace: "S", "SA", "FA", "A"..."""
    analysis: str = ""
    """tshark's word for a resent segment: retransmission, fast_retransmission,
    spurious_retransmission or out_of_order (a retransmission sent soon after the segment with
    the highest sequence number: tshark's heuristic cannot tell the two apart)."""

    @property
    def conn(self) -> str:
        """The stack trace's connection id from the sender's point of view."""
        return f"{self.src}:{self.sport}>{self.dst}:{self.dport}"


@dataclasses.dataclass
class WireReport:
    pcap: Path
    frames: int
    tcp_segments: int
    malformed: list[int]
    """Frame numbers tshark marks malformed."""
    bad_ip_checksum: list[int]
    bad_tcp_checksum: list[int]
    unchecked_sources: list[str]
    """Sources whose checksums were not judged (offloaded on veth, see the module docstring)."""
    retransmissions: list[WireSegment]
    resets: list[WireSegment]
    oversized: list[int] = dataclasses.field(default_factory=list)
    """Frames longer than the `mtu` given to `analyse`, from the judged sources."""
    icmp_errors: list[int] = dataclasses.field(default_factory=list)
    """ICMP errors (the headers they quote are cut short, so their checksums are not judged)."""
    ffff_checksums: list[int] = dataclasses.field(default_factory=list)
    """TCP checksums 0xffff where 0x0000 was computed: the same one's-complement value (RFC 1624),
    which tshark flags; not counted as bad."""

    def summary(self) -> dict[str, Any]:
        return {
            "pcap": str(self.pcap),
            "frames": self.frames,
            "tcp_segments": self.tcp_segments,
            "malformed": len(self.malformed),
            "bad_ip_checksum": len(self.bad_ip_checksum),
            "bad_tcp_checksum": len(self.bad_tcp_checksum),
            "checksums_not_judged_for": self.unchecked_sources,
            "retransmissions": dict(Counter(s.src for s in self.retransmissions)),
            "resets": len(self.resets),
            "oversized": len(self.oversized),
            "icmp_errors": len(self.icmp_errors),
            "ffff_checksums": len(self.ffff_checksums),
        }


RESENT = {
    "This frame is a (suspected) fast retransmission": "fast_retransmission",
    "This frame is a (suspected) spurious retransmission": "spurious_retransmission",
    "This frame is a (suspected) retransmission": "retransmission",
    "This frame is a (suspected) out-of-order segment": "out_of_order",
}
"""tshark's sequence-analysis verdicts for a segment that carries sequence space seen before, most
specific first (a fast retransmission is also called a retransmission). Out-of-order is among them:
tshark calls a retransmission sent soon after the highest segment out-of-order, and a sender's own
capture has no other out-of-order segments."""

_FIELDS = ("frame.number", "frame.protocols", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport",
           "tcp.seq_raw", "tcp.len", "tcp.flags", "ip.checksum.status", "tcp.checksum.status",
           "_ws.expert.message", "ip.len", "ipv6.src", "ipv6.dst", "ipv6.plen")  # fmt: skip


def _flag_letters(bits: int) -> str:
    return "".join(letter for bit, letter in ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"),
                                               (0x10, "A")) if bits & bit)  # fmt: skip


def analyse(
    pcap: Path, *, checked_sources: Sequence[str] | None = None, mtu: int | None = None
) -> WireReport:
    """tshark's verdict on a pcap, in one pass. `checked_sources`: judge checksums (and sizes)
    only of packets from these addresses (None: every packet); `mtu`: flag longer IP packets."""
    if shutil.which("tshark") is None:
        raise CaptureError("tshark is not installed (apt-get install tshark)")
    argv = ["tshark", "-n", *CHECKSUM_PREFS, "-r", str(pcap), "-T", "fields", "-E", "separator=\t",
            "-E", "occurrence=a", "-E", "aggregator=|"]  # fmt: skip
    for name in _FIELDS:
        argv += ["-e", name]
    report = WireReport(pcap, 0, 0, [], [], [], [], [], [])
    unchecked: set[str] = set()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            r = line.rstrip("\n").split("\t")
            r += [""] * (len(_FIELDS) - len(r))
            frame = int(r[0])
            report.frames += 1
            if "_ws.malformed" in r[1].split(":"):
                report.malformed.append(frame)
            protocols = r[1].split(":")
            if not r[2] and r[13]:  # IPv6: its addresses, and its length with the 40-byte header
                r[2], r[4] = r[13], r[14]
                r[12] = str(int(r[15].split("|")[0]) + 40) if r[15] else ""
            if "icmpv6" in protocols and "tcp" in protocols:
                protocols.append("icmp")  # an ICMPv6 error quoting TCP; neighbour discovery is not one
            src = r[2].split("|")[0]
            judged = checked_sources is None or src in checked_sources
            if src and not judged:
                unchecked.add(src)
            if "icmp" in protocols:
                report.icmp_errors.append(frame)
            if judged and mtu is not None and r[12] and int(r[12].split("|")[0]) > mtu:
                report.oversized.append(frame)
            # Status values: 0 bad, 1 good, 2 unverified (Wireshark 3.x and later). Only the
            # outer IP header counts inside an ICMP error: what it quotes is cut short.
            if judged and r[9].split("|")[0] == "0":
                report.bad_ip_checksum.append(frame)
            if judged and r[10] == "0" and "icmp" not in protocols:
                if any("instead of 0x0000 (see RFC 1624)" in m for m in r[11].split("|")):
                    report.ffff_checksums.append(frame)
                else:
                    report.bad_tcp_checksum.append(frame)
            if not r[3] or "icmp" in protocols:
                continue
            report.tcp_segments += 1
            if not (r[5] and r[6] and r[8]):
                continue  # a TCP header cut short (inside an ICMP error, or truncated): no analysis
            seg = WireSegment(frame, src, int(r[3]), r[4].split("|")[0], int(r[5]), int(r[6]),
                              int(r[7] or 0), _flag_letters(int(r[8], 16)))  # fmt: skip
            messages = r[11].split("|")
            word = next((w for m, w in RESENT.items() if m in messages), None)
            if word is not None:
                report.retransmissions.append(dataclasses.replace(seg, analysis=word))
            if "R" in seg.flags:
                report.resets.append(seg)
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait(TSHARK_TIMEOUT)
    if proc.returncode != 0:
        raise CaptureError(f"tshark on {pcap} failed ({proc.returncode}): {err.strip()}")
    report.unchecked_sources = sorted(unchecked)
    return report


@dataclasses.dataclass(frozen=True)
class SynOptions:
    """The options of one SYN or SYN-ACK as tshark decodes them."""

    frame: int
    src: str
    dst: str
    syn_ack: bool
    mss: int | None
    wscale: int | None
    sack_permitted: bool
    timestamps: bool
    window: int
    conn: str


def syn_options(pcap: Path) -> list[SynOptions]:
    rows = tshark_fields(
        pcap, "tcp.flags.syn == 1",
        ["frame.number", "ip.src", "ip.dst", "tcp.flags.ack", "tcp.options.mss_val",
         "tcp.options.wscale.shift", "tcp.options.sack_perm", "tcp.options.timestamp.tsval",
         "tcp.window_size_value", "tcp.srcport", "tcp.dstport"],
    )  # fmt: skip
    out = []
    for r in rows:
        r = r + [""] * (11 - len(r))
        out.append(SynOptions(
            frame=int(r[0]), src=r[1], dst=r[2], syn_ack=r[3] in ("1", "True"),
            mss=int(r[4]) if r[4] else None, wscale=int(r[5]) if r[5] else None,
            sack_permitted=bool(r[6]), timestamps=bool(r[7]), window=int(r[8] or 0),
            conn=f"{r[1]}:{r[9]}>{r[2]}:{r[10]}",
        ))  # fmt: skip
    return out


# -- the stack's trace against tshark ------------------------------------------------------------


def read_events(trace: Path, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
    wanted = set(kinds) if kinds is not None else None
    events = []
    with open(trace) as f:
        for line in f:
            if line.strip():
                event = json.loads(line)
                if wanted is None or event.get("kind") in wanted:
                    events.append(event)
    return events


@dataclasses.dataclass(frozen=True)
class RetransmissionComparison:
    traced: int
    """Retransmit events in the stack's trace."""
    flagged: int
    """Frames the stack sent that tshark flags tcp.analysis.retransmission."""
    matched: int
    only_traced: list[tuple[str, int]]
    """(conn, seq) the stack says it retransmitted that tshark did not flag."""
    only_flagged: list[tuple[str, int]]
    """(conn, seq) tshark flags that the stack did not trace as a retransmission."""

    def summary(self) -> dict[str, Any]:
        return {"traced": self.traced, "flagged": self.flagged, "matched": self.matched,
                "only_traced": self.only_traced[:20], "only_flagged": self.only_flagged[:20]}  # fmt: skip


def compare_retransmissions(
    report: WireReport, retransmits: Sequence[dict[str, Any]], stack_address: str
) -> RetransmissionComparison:
    """Match tshark's retransmission frames sent by the stack with its Retransmit events, by
    (connection, sequence number) as multisets. Both count the same thing when the capture holds
    every packet the stack sent (its own pcap sink does): a segment is a retransmission exactly
    when it carries sequence space the stack had sent before."""
    flagged = Counter((s.conn, s.seq) for s in report.retransmissions if s.src == stack_address)
    traced = Counter((str(e["conn"]), int(e["seq"])) for e in retransmits)
    matched = flagged & traced
    return RetransmissionComparison(
        traced=sum(traced.values()),
        flagged=sum(flagged.values()),
        matched=sum(matched.values()),
        only_traced=sorted((traced - flagged).elements()),
        only_flagged=sorted((flagged - traced).elements()),
    )
