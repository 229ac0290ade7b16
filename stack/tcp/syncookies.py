"""SYN cookies (RFC 4987 section 3.6), encoded as Linux does (net/ipv4/syncookies.c).

When a listener's SYN queue is full (or always, with `syncookies=2`), the host answers a SYN
without keeping any state: the SYN-ACK's sequence number (the cookie) carries what the connection
needs, and the peer's ACK, whose ACK field is cookie + 1, brings it back.

    cookie = H1(tuple) + peer ISN + (count << 24) + ((H2(tuple, count, peer ISN) + MSS index) mod 2**24)

`count` counts minutes; a cookie older than MAX_AGE minutes, or whose low 24 bits do not decode
to an index of MSS_TABLE, is refused: a blind ACK passes with probability about 2**-29. H1 and H2
are keyed hashes with a secret derived from the host's ISN key (RFC 6528). Unlike Linux, H2 also
covers the peer's ISN, so an ACK whose SEQ is off by a few cannot decode to a neighbouring index.

Only the MSS fits in the cookie. When the peer uses timestamps (RFC 7323), the low TS_BITS of
the SYN-ACK's TSval carry its window scale and SACK permission (and ECN, which the stack does not
implement), and come back in the ACK's TSecr. Without timestamps the connection gets neither,
as on Linux, and the SYN-ACK offers neither.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from stack import seq
from stack.config import TcpConfig
from stack.tcp.tcb import MAX_WSCALE
from stack.wire.tcp import (
    ACK,
    SYN,
    Mss,
    Nop,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    WindowScale,
)

MSS_TABLE = (536, 1300, 1440, 1460)  # Linux's msstab for IPv4
MSS_TABLE6 = (1220, 1420, 1440, 8940)  # and for IPv6: MTUs 1280, 1480, 1500, 9000 less 60 octets
COOKIE_BITS = 24
COOKIE_MASK = (1 << COOKIE_BITS) - 1
MAX_AGE = 2  # minutes a cookie stays valid (Linux MAX_SYNCOOKIE_AGE)
VALID_AFTER_SENDING = 120.0  # seconds a listener checks ACKs for cookies after sending one
TS_BITS = 6
TS_MASK = (1 << TS_BITS) - 1
_TS_NO_WSCALE = 0xF  # the 4 window-scale bits when the peer sent no window scale option
_TS_SACK = 1 << 4
_TS_ECN = 1 << 5


@dataclass(frozen=True, slots=True)
class CookieOptions:
    """What a valid cookie ACK says the peer's SYN offered."""

    mss: int
    wscale: int | None  # the peer's shift; None: no window scaling
    sack: bool
    timestamps: bool


def mss_index(peer_mss: int, table: tuple[int, ...] = MSS_TABLE) -> int:
    """The largest table entry not above the peer's MSS (index 0 when it is smaller still)."""
    for i in range(len(table) - 1, 0, -1):
        if peer_mss >= table[i]:
            return i
    return 0


def encode_ts(tsval: int, wscale: int | None, sack: bool) -> int:
    """A TSval no later than `tsval` whose low TS_BITS carry the peer's options (Linux's
    cookie_init_timestamp): the peer's later TSecr echoes them back."""
    options = (_TS_NO_WSCALE if wscale is None else min(wscale, MAX_WSCALE)) | (_TS_SACK if sack else 0)
    ts = (tsval & ~TS_MASK & seq.MASK) | options
    if seq.gt(ts, tsval):
        ts = seq.add(ts, -(TS_MASK + 1))
    return ts


def decode_ts(tsecr: int) -> tuple[int | None, bool] | None:
    """(peer's window scale or None, SACK permitted), or None if the bits cannot be ours."""
    if tsecr & _TS_ECN:
        return None  # the stack has no ECN: it never sets this bit
    wscale = tsecr & _TS_NO_WSCALE
    return (None if wscale == _TS_NO_WSCALE else wscale), bool(tsecr & _TS_SACK)


def wscale_for(config: TcpConfig) -> int:
    """The shift a connection with this configuration announces (Handshake._choose_wscale's rule:
    the receive buffer, or the most autotuning may grow it to: `rcvbuf_max`, or with `wscale_space`
    the most Linux's autotuning may reach)."""
    space = config.rcvbuf
    if config.rcvbuf_max is not None and not config.rcvbuf_locked:
        space = max(space, config.rcvbuf_max)  # the window must be able to say the grown buffer
    if config.wscale_space is not None and (config.wscale_space_always or not config.rcvbuf_locked):
        space = max(space, config.wscale_space)
    shift = 0
    while (space >> shift) > 0xFFFF and shift < MAX_WSCALE:
        shift += 1
    return shift


class SynCookies:
    def __init__(self, isn_key: bytes) -> None:
        self._key = hashlib.blake2s(isn_key or b"tcplab", person=b"syncooki").digest()

    def _hash(self, tuple_bytes: bytes, count: int, which: int, peer_isn: int = 0) -> int:
        data = tuple_bytes + (count & seq.MASK).to_bytes(4, "big") + peer_isn.to_bytes(4, "big")
        data += bytes((which,))
        return int.from_bytes(hashlib.blake2s(data, key=self._key, digest_size=4).digest(), "big")

    @staticmethod
    def _count(now: float) -> int:
        return int(now // 60)

    def make(self, now: float, tuple_bytes: bytes, peer_isn: int, peer_mss: int,
             table: tuple[int, ...] = MSS_TABLE) -> int:
        """The cookie (our ISN) for a SYN with sequence number peer_isn on this 4-tuple; `table`:
        the MSS values of the family (MSS_TABLE6 for IPv6, whose smallest path is 1280)."""
        count = self._count(now)
        data = mss_index(peer_mss, table)
        h2 = (self._hash(tuple_bytes, count, 2, peer_isn) + data) & COOKIE_MASK
        return (self._hash(tuple_bytes, 0, 1) + peer_isn + (count << COOKIE_BITS) + h2) & seq.MASK

    def check(self, now: float, tuple_bytes: bytes, peer_isn: int, cookie: int,
              table: tuple[int, ...] = MSS_TABLE) -> int | None:
        """The peer's MSS the cookie encodes, or None when it is not a valid, recent cookie."""
        count = self._count(now)
        v = (cookie - self._hash(tuple_bytes, 0, 1) - peer_isn) & seq.MASK
        age = (count - (v >> COOKIE_BITS)) & 0xFF
        if age >= MAX_AGE:
            return None
        data = (v - self._hash(tuple_bytes, count - age, 2, peer_isn)) & COOKIE_MASK
        return table[data] if data < len(table) else None

    def ts_offset(self, tuple_bytes: bytes) -> int:
        """The timestamp offset of a connection made from a cookie: found again from the tuple
        alone, so the SYN-ACK and the connection it becomes share one TSval clock."""
        return self._hash(tuple_bytes, 0, 3)


def synack(config: TcpConfig, syn: TcpSegment, cookie: int, tsval: int, mss: int | None = None) -> TcpSegment:
    """The stateless SYN-ACK: the option layout a connection would send (Linux's), without the
    options a cookie cannot carry when the peer sent no timestamps. `mss`: the MSS to offer
    (the MTU less the family's headers; config.mss, the IPv4 one, by default)."""
    ts = syn.timestamps
    use_ts = config.timestamps and ts is not None
    use_sack = use_ts and config.sack and syn.sack_permitted
    use_ws = use_ts and config.window_scaling and syn.wscale is not None
    opts: list[TcpOption] = [Mss(config.mss if mss is None else mss)]
    if ts is not None and use_ts:
        stamp = Timestamps(encode_ts(tsval, syn.wscale if use_ws else None, use_sack), ts.tsval)
        opts += [SackPermitted(), stamp] if use_sack else [Nop(), Nop(), stamp]
    if use_ws:
        opts += [Nop(), WindowScale(wscale_for(config))]
    window = min(config.rcvbuf, 0xFFFF)  # RFC 7323 2.2: a SYN's window is never scaled
    options = () if config.noopt else tuple(opts)  # TCP_NOOPT: none at all, as a connection's
    return TcpSegment(
        syn.dst_port, syn.src_port, cookie, seq.add(syn.seq, 1), SYN | ACK, window, b"", options
    )


def options_of(ack: TcpSegment, mss: int, config: TcpConfig) -> CookieOptions | None:
    """What the peer's SYN offered, from a valid cookie ACK (None: timestamp bits corrupt)."""
    ts = ack.timestamps
    if ts is None or not config.timestamps:
        return CookieOptions(mss, None, False, False)
    decoded = decode_ts(ts.tsecr)
    if decoded is None:
        return None
    wscale, sack = decoded
    return CookieOptions(mss, wscale if config.window_scaling else None, sack and config.sack, True)


def rebuilt_syn(ack: TcpSegment, opts: CookieOptions) -> TcpSegment:
    """The SYN the peer sent, as far as the cookie remembers it (for the passive open)."""
    options: list[TcpOption] = [Mss(opts.mss)]
    if opts.sack:
        options.append(SackPermitted())
    ts = ack.timestamps
    if opts.timestamps and ts is not None:
        options.append(Timestamps(ts.tsval, 0))
    if opts.wscale is not None:
        options.append(WindowScale(opts.wscale))
    return TcpSegment(
        ack.src_port, ack.dst_port, seq.add(ack.seq, -1), 0, SYN, ack.window, b"", tuple(options)
    )
