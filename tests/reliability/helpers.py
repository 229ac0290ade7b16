"""Shared set-up for the reliability tests: seeded payloads, a bidirectional transfer over asyncio
streams between the two hosts of tests/two_hosts.py, trace queries, link taps that drop chosen
segments, and `Rig`, a host fed single segments (tests/injection.py).

Everything runs in virtual time; a seed fixes every packet's fate, so a failing seed replays
exactly (`run_transfer(seed=...)`).

Address family: hosts have an IPv4 and an IPv6 address; `FAMILY` ("ipv4" unless a test uses the
`family` fixture of tests/reliability/conftest.py) picks the one connections use: `peer_addr()`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass, field

from stack.config import TcpConfig
from stack.inet import AF_INET, AF_INET6, tcp_overhead
from stack.seq import add as seq_add
from stack.sim import Link
from stack.tcp.connection import TcpConnection
from stack.tcp.state import State
from stack.trace import MemorySink, StateChange
from stack.wire.segment import tcp_of
from stack.wire.tcp import Flags, Mss, SackPermitted, TcpOption, TcpSegment, Timestamps, WindowScale
from tests.injection import deliver, new_host, run_timers, take_segments
from tests.two_hosts import A_ADDR, A_ADDR6, B_ADDR, B_ADDR6, TwoHosts

PORT = 5001
FAMILY = "ipv4"  # set by the `family` fixture (tests/reliability/conftest.py)


def peer_addr() -> str:
    """b's address in the current family: what a connects to."""
    return B_ADDR6 if FAMILY == "ipv6" else B_ADDR


def sock_family() -> int:
    """The socket family for the current family (AF_INET or AF_INET6)."""
    return AF_INET6 if FAMILY == "ipv6" else AF_INET


def smss() -> int:
    """The sender's segment size over a 1500-octet path with timestamps: 1448 over IPv4 (1500 -
    40 - 12), 1428 over IPv6 (1500 - 60 - 12)."""
    return 1500 - overhead() - 12


def overhead() -> int:
    """IP + TCP header octets in the current family (40 or 60): MSS = MTU - overhead()."""
    return tcp_overhead(peer_addr())


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def digest(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class TransferResult:
    sent_ab: bytes
    sent_ba: bytes
    got_ab: bytearray = field(default_factory=bytearray)  # what b received from a
    got_ba: bytearray = field(default_factory=bytearray)  # what a received from b
    start: float = 0.0
    done_ab: float = 0.0  # virtual time when b saw EOF from a
    done: float = 0.0  # virtual time when both apps finished
    read_pause: float = 0.0  # b reads 16 kB, then sleeps this long (0: reads at once)


async def _pump_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out: bytes, into: bytearray,
    read_pause: float = 0.0,
) -> None:
    async def write() -> None:
        view = memoryview(out)
        for i in range(0, len(view), 64 * 1024):
            writer.write(view[i : i + 64 * 1024])
            await writer.drain()
        writer.write_eof()

    async def read() -> None:
        while True:
            chunk = await reader.read(16 * 1024 if read_pause else 256 * 1024)
            if not chunk:
                return
            into.extend(chunk)
            if read_pause:  # a slow reader: the receive window fills and closes
                await asyncio.sleep(read_pause)

    await asyncio.gather(write(), read())
    writer.close()


async def bidirectional(pair: TwoHosts, res: TransferResult) -> None:
    """a connects to b; both send their payload, shut down writing, read to EOF and close."""
    served = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _pump_stream(reader, writer, res.sent_ba, res.got_ab, res.read_pause)
            res.done_ab = pair.net.now
            served.set_result(None)
        except BaseException as e:  # surface server-side errors in the test
            served.set_exception(e)

    server = await pair.stack_b.start_server(handle, port=PORT)
    res.start = pair.net.now
    reader, writer = await pair.stack_a.open_connection(peer_addr(), PORT)
    await _pump_stream(reader, writer, res.sent_ab, res.got_ba)
    await served
    res.done = pair.net.now
    server.close()


def run_transfer(
    pair: TwoHosts, size_ab: int, size_ba: int, seed: int, timeout: float = 3600.0, read_pause: float = 0.0
) -> TransferResult:
    res = TransferResult(payload(seed * 2 + 1, size_ab), payload(seed * 2 + 2, size_ba),
                         read_pause=read_pause)
    pair.net.run(bidirectional(pair, res), timeout=timeout)
    return res


def final_states(sink: MemorySink) -> dict[str, str]:
    """Each connection's last state in a host's trace."""
    last: dict[str, str] = {}
    for e in sink.of(StateChange):
        last[e.conn] = e.new
    return last


# ---------------------------------------------------------------------------------------------
# Single-segment injection: one real Host, and the test speaking for its peer.

PEER_ISS = 100_000


@dataclass
class Out:
    """A segment the host under test transmitted, with the virtual time it left."""

    time: float
    seg: TcpSegment


class Rig:
    """A Host at A_ADDR (and A_ADDR6) whose peer (peer_addr():PEER_PORT) is played by the test,
    in virtual time.

    `inject` hands the host one segment from the peer; `advance` runs the host's timers up to a
    time; both return what the host sent, parsed. Nothing is sent anywhere else.
    """

    PEER_PORT = 80

    def __init__(self, config: TcpConfig | None = None) -> None:
        self.host, self.sink = new_host(A_ADDR, config or TcpConfig(), isn_key=b"reliability",
                                        address6=A_ADDR6)
        self.peer = peer_addr()
        self.now = 0.0
        self.sent: list[Out] = []  # everything the host sent, in order

    def _collect(self) -> list[Out]:
        out = [Out(self.now, seg) for _, seg in take_segments(self.host)]
        self.sent += out
        return out

    def inject(self, seg: TcpSegment, at: float | None = None) -> list[Out]:
        """Deliver seg from the peer at time `at` (timers due before then run first)."""
        out = self.advance(self.now if at is None else at)
        deliver(self.host, self.peer, seg, self.now)
        return out + self._collect()

    def advance(self, until: float) -> list[Out]:
        """Run every timer due up to `until` (inclusive), then set the clock to `until`."""
        out: list[Out] = []

        def fired(now: float) -> None:
            self.now = now
            out.extend(self._collect())

        self.now = run_timers(self.host, self.now, until, slack=1e-9, fired=fired)
        return out

    def app(self, conn: TcpConnection) -> list[Out]:
        """After an application call on conn: let the host see it, collect what it sent."""
        self.host.app_call(conn)
        return self._collect()

    # -- the peer's segments

    def seg(self, conn: TcpConnection, flags: Flags = Flags.ACK, *, seq: int | None = None,
            ack: int | None = None, payload: bytes = b"", window: int = 65535,
            options: tuple[TcpOption, ...] = (), urgent: int = 0) -> TcpSegment:
        """A segment from the peer; seq defaults to what conn expects next, ack to all it sent."""
        return TcpSegment(self.PEER_PORT, conn.local_port,
                          conn.rcv_nxt if seq is None else seq,
                          conn.snd_max if ack is None else ack,
                          flags, window, payload, options, urgent)

    def open(self, *, at: float = 0.1, mss: int = 1000, window: int = 65535, sack: bool = False,
             ts: bool = False, wscale: int | None = None) -> TcpConnection:
        """Active open from the host; the peer's SYN-ACK arrives at `at` (one RTT sample)."""
        conn = self.host.connect(self.peer, self.PEER_PORT, self.now)
        syn = self._collect()[-1].seg
        assert syn.flags == Flags.SYN
        opts: list[TcpOption] = [Mss(mss)]
        if sack:
            opts.append(SackPermitted())
        if ts:
            opts.append(Timestamps(1, syn.timestamps.tsval if syn.timestamps else 0))
        if wscale is not None:
            opts.append(WindowScale(wscale))
        self.inject(TcpSegment(self.PEER_PORT, conn.local_port, PEER_ISS, seq_add(syn.seq, 1),
                               Flags.SYN | Flags.ACK, window, b"", tuple(opts)), at=at)
        assert conn.state is State.ESTABLISHED, conn.state
        return conn


def data_segments(outs: list[Out]) -> list[Out]:
    return [o for o in outs if o.seg.payload]


def pure_acks(outs: list[Out]) -> list[Out]:
    return [o for o in outs if not o.seg.payload and o.seg.flags == Flags.ACK]


def drop_data_packets(link: Link, indices: set[int]) -> list[int]:
    """Make `link` drop the data-carrying TCP packets whose 0-based index (counting every
    data packet the link is given, retransmissions included) is in `indices`. Returns the list
    the sequence numbers of the dropped segments are appended to."""
    original = link.send
    counter = [0]
    dropped: list[int] = []

    def send(packet: bytes) -> None:
        seg = tcp_of(packet, verify_checksum=False)
        if seg is not None:
            if seg.payload:
                i = counter[0]
                counter[0] += 1
                if i in indices:
                    dropped.append(seg.seq)
                    return
        original(packet)

    link.send = send  # type: ignore[method-assign]
    return dropped


def drop_segment_repeatedly(link: Link, index: int, times: int) -> list[float]:
    """Drop the `index`-th data packet on `link` and then its next `times - 1` retransmissions
    (same sequence number). Returns the virtual times of the drops."""
    original = link.send
    state = {"count": 0, "seq": -1, "left": times}
    drops: list[float] = []

    def send(packet: bytes) -> None:
        seg = tcp_of(packet, verify_checksum=False)
        if seg is not None:
            if seg.payload:
                if state["count"] == index:
                    state["seq"] = seg.seq
                state["count"] += 1
                if seg.seq == state["seq"] and state["left"] > 0:
                    state["left"] -= 1
                    drops.append(link.loop.time())
                    return
        original(packet)

    link.send = send  # type: ignore[method-assign]
    return drops
