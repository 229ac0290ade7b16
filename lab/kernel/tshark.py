"""Read a capture back with tshark (lab.kernel.capture records it).

`analyse(pcap)` runs tshark with IP and TCP checksum validation on and counts malformed packets,
bad checksums and the frames tshark's sequence analysis flags as retransmissions;
`syn_options(pcap)` reads the options of every SYN; `read_events` and `compare_retransmissions`
line tshark's retransmissions up with the stack's Retransmit events.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lab.kernel.capture import CaptureError

TSHARK_TIMEOUT = 300.0
CHECKSUM_PREFS = ("-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE")


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
