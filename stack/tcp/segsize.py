"""The effective send MSS of a connection (RFC 9293 3.7.1, RFC 6691) and what it derives from.

`mss` is read several times a segment (the send and receive paths, the windows), so it is a plain
attribute brought up to date whenever the peer's MSS, the path MTU or the timestamps option
changes (the setters below) instead of computed on each read: 4% of the simulation's instructions
per segment.
"""

from __future__ import annotations


class SegmentSize:
    """Tcb's MSS: set `_peer_mss`, `_pmtu`, `_ts_ok` and `ip_overhead`, then call `_update_mss`."""

    mss: int  # payload octets per segment, options aside (the SACK blocks: Tcb.send_mss)
    ip_overhead: int  # IP and TCP headers: 40 over IPv4, 60 over IPv6
    _peer_mss: int
    _pmtu: int
    _ts_ok: bool

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

