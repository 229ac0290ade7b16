"""The effective send MSS of a connection (RFC 9293 3.7.1, RFC 6691), what it derives from, and
the payload of a full segment now (`send_mss`: the MSS less the SACK blocks our next segment carries).

`mss` is read several times a segment (the send and receive paths, the windows), so it is a plain
attribute brought up to date whenever the peer's MSS, the path MTU or the timestamps option
changes (the setters below) instead of computed on each read: 4% of the simulation's instructions
per segment.
"""

from __future__ import annotations

from stack.compiled import mypyc_attr
from stack.tcp.reassembly import OutOfOrderQueue


@mypyc_attr(allow_interpreted_subclasses=True)
class SegmentSize:
    """Tcb's MSS: set `_peer_mss`, `_pmtu`, `_ts_ok` and `ip_overhead`, then call `_update_mss`."""

    mss: int  # payload octets per segment, options aside (the SACK blocks: Tcb.send_mss)
    ip_overhead: int  # IP and TCP headers: 40 over IPv4, 60 over IPv6
    _peer_mss: int
    _pmtu: int
    _ts_ok: bool
    sack_ok: bool
    dsack: tuple[int, int] | None  # a duplicate to report (RFC 2883)
    ooo: OutOfOrderQueue  # out-of-order data: one SACK block a range

    @property
    def peer_mss(self) -> int:
        return self._peer_mss

    @peer_mss.setter
    def peer_mss(self, octets: int) -> None:
        self._peer_mss = octets
        self._update_mss()

    @property
    def pmtu(self) -> int:
        return self._pmtu

    @pmtu.setter
    def pmtu(self, octets: int) -> None:
        self._pmtu = octets
        self._update_mss()

    @property
    def ts_ok(self) -> bool:
        return self._ts_ok

    @ts_ok.setter
    def ts_ok(self, on: bool) -> None:
        self._ts_ok = on
        self._update_mss()

    def _update_mss(self) -> None:
        """Effective send MSS (RFC 9293 3.7.1, RFC 6691): payload octets per segment."""
        m = min(self._peer_mss, self._pmtu - self.ip_overhead)
        if self._ts_ok:
            m -= 12  # NOP, NOP, timestamps ride on every segment
        self.mss = max(m, 64)

    def _sack_option_len(self) -> int:
        """Octets the SACK option of our next segment takes (2 NOPs, kind, length, 8 a block)."""
        if not (self.sack_ok and (self.dsack is not None or len(self.ooo))):
            return 0
        blocks = min(len(self.ooo) + (self.dsack is not None), 3 if self.ts_ok else 4)
        return 4 + 8 * blocks

    @property
    def send_mss(self) -> int:
        """Payload octets of a full segment now: SACK blocks come out of the payload, as Linux
        does, since the MSS counts no options (RFC 6691) and a segment must fit the path MTU."""
        return max(self.mss - self._sack_option_len(), 1)
