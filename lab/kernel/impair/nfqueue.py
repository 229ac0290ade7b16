"""A small NFQUEUE client over a netlink socket: what the link emulator needs and nothing more.

Why not the `netfilterqueue` package: it has no way to set NFQA_CFG_F_GSO (so the kernel cuts
every 64 KB TCP super-packet into MTU-sized packets before queueing them, 40 times the work), it
copies whole payloads even when only a length is needed, and it sends one verdict per syscall.
Here (nfnetlink_queue, include/uapi/linux/netfilter/nfnetlink_queue.h):

- `configure` sets the copy range (a few header bytes when the payload is not needed), the queue
  length and the flags (F_GSO: GSO packets are queued whole, with their checksum not yet filled in);
- `receive` reads every packet waiting on the socket (up to a bound) in one wake-up;
- `prepare` and `send` write all the verdicts of a wake-up in one sendmsg: several netlink messages in
  one datagram, and, where the accepted packets are the oldest ones the kernel holds, a single
  NFQNL_MSG_VERDICT_BATCH ("every id up to N") instead of one message each (`VerdictPlan`).

The message layouts are pure functions, unit-tested without root.
"""

from __future__ import annotations

import errno
import math
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

NETLINK_NETFILTER = 12
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
# Attributes.
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_TIMESTAMP = 4
NFQA_PAYLOAD = 10
NFQA_CAP_LEN = 13
NFQA_SKB_INFO = 14
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_GSO = 0x4
NFQA_SKB_CSUMNOTREADY = 0x1
NFQA_SKB_GSO = 0x2
NLA_TYPE_MASK = 0x3FFF
NF_DROP = 0
NF_ACCEPT = 1
MAX_COPY_RANGE = 0xFFFF - 4  # NFQNL_MAX_COPY_RANGE: a payload must fit one netlink attribute
SEND_CHUNK = 60_000  # bytes of verdict messages per sendmsg (well inside the socket's send buffer)

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")
_NLATTR = struct.Struct("=HH")
_PACKET_HDR = struct.Struct("!IHB")
_VERDICT_HDR = struct.Struct("!II")
_BE32 = struct.Struct("!I")
_TIMESTAMP = struct.Struct("!QQ")  # struct nfqnl_msg_packet_timestamp: seconds, microseconds
_HEADER_LEN = _NLMSGHDR.size + _NFGENMSG.size


class NfQueueError(OSError):
    """The kernel refused a configuration request (the errno says why)."""


@dataclass(slots=True)
class QueuedPacket:
    """One packet the kernel holds for us: its id, link-layer protocol, the copied bytes (all of
    them, or only the headers when the copy range is small) and its length on the wire."""

    id: int
    hw_protocol: int
    payload: bytes
    length: int
    gso: bool = False  # a GSO super-packet, several wire packets long
    csum_not_ready: bool = False  # checksum left to the device (CHECKSUM_PARTIAL): do not verify it
    timestamp: float | None = None  # when it reached the interface (CLOCK_REALTIME), if stamped


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, data: bytes) -> bytes:
    return _NLATTR.pack(4 + len(data), kind) + data + bytes(_align(len(data)) - len(data))


def message(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, queue) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def bind_message(queue: int, seq: int) -> bytes:
    cmd = struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_UNSPEC)
    return message(NFQNL_MSG_CONFIG, queue, attr(NFQA_CFG_CMD, cmd), NLM_F_REQUEST | NLM_F_ACK, seq)


def unbind_message(queue: int, seq: int) -> bytes:
    cmd = struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, socket.AF_UNSPEC)
    return message(NFQNL_MSG_CONFIG, queue, attr(NFQA_CFG_CMD, cmd), NLM_F_REQUEST | NLM_F_ACK, seq)


def config_message(queue: int, copy_range: int, maxlen: int, gso: bool, seq: int) -> bytes:
    """Copy mode and range, queue length, and the GSO flag (set or cleared through its mask)."""
    attrs = (
        attr(NFQA_CFG_PARAMS, struct.pack("!IB", min(copy_range, MAX_COPY_RANGE), NFQNL_COPY_PACKET))
        + attr(NFQA_CFG_QUEUE_MAXLEN, _BE32.pack(maxlen))
        + attr(NFQA_CFG_FLAGS, _BE32.pack(NFQA_CFG_F_GSO if gso else 0))
        + attr(NFQA_CFG_MASK, _BE32.pack(NFQA_CFG_F_GSO))
    )
    return message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq)


def verdict_message(queue: int, packet_id: int, verdict: int, payload: bytes | None = None,
                    batch: bool = False) -> bytes:
    """NFQNL_MSG_VERDICT for one packet (with a replacement payload, if any), or, with `batch`,
    NFQNL_MSG_VERDICT_BATCH: the verdict for every packet the kernel holds with an id up to this one."""
    attrs = attr(NFQA_VERDICT_HDR, _VERDICT_HDR.pack(verdict, packet_id))
    if payload is not None:
        attrs += attr(NFQA_PAYLOAD, payload)
    return message(NFQNL_MSG_VERDICT_BATCH if batch else NFQNL_MSG_VERDICT, queue, attrs)


def parse_messages(data: bytes | memoryview) -> Iterator[tuple[int, int, memoryview]]:
    """(type, seq, body) of each netlink message in one datagram."""
    view = memoryview(data)
    offset = 0
    while offset + _NLMSGHDR.size <= len(view):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(view, offset)
        if length < _NLMSGHDR.size or offset + length > len(view):
            return  # truncated or malformed: stop rather than read past it
        yield kind, seq, view[offset + _NLMSGHDR.size:offset + length]
        offset += _align(length)


def parse_attrs(body: memoryview, start: int) -> dict[int, memoryview]:
    attrs: dict[int, memoryview] = {}
    offset = start
    while offset + 4 <= len(body):
        length, kind = _NLATTR.unpack_from(body, offset)
        if length < 4 or offset + length > len(body):
            break
        attrs[kind & NLA_TYPE_MASK] = body[offset + 4:offset + length]
        offset += _align(length)
    return attrs


def parse_packet(body: memoryview) -> QueuedPacket | None:
    """An NFQNL_MSG_PACKET body (after the netlink header) as a QueuedPacket; None if malformed."""
    attrs = parse_attrs(body, _NFGENMSG.size)
    hdr = attrs.get(NFQA_PACKET_HDR)
    if hdr is None or len(hdr) < _PACKET_HDR.size:
        return None
    packet_id, hw_protocol, _hook = _PACKET_HDR.unpack_from(hdr)
    payload = bytes(attrs.get(NFQA_PAYLOAD, b""))
    cap = attrs.get(NFQA_CAP_LEN)
    length = _BE32.unpack_from(cap)[0] if cap is not None and len(cap) >= 4 else len(payload)
    info = attrs.get(NFQA_SKB_INFO)
    flags = _BE32.unpack_from(info)[0] if info is not None and len(info) >= 4 else 0
    stamp = attrs.get(NFQA_TIMESTAMP)
    timestamp = None
    if stamp is not None and len(stamp) >= 16:
        sec, usec = _TIMESTAMP.unpack_from(stamp)
        timestamp = sec + usec / 1e6
    return QueuedPacket(packet_id, hw_protocol, payload, length, bool(flags & NFQA_SKB_GSO),
                        bool(flags & NFQA_SKB_CSUMNOTREADY), timestamp)


class VerdictPlan:
    """Which verdict messages to send, knowing the order in which the kernel holds the packets.

    The kernel keeps a queue's packets in arrival order, and NFQNL_MSG_VERDICT_BATCH with id N
    settles every packet it still holds up to N. So when the packets accepted in one wake-up are the
    oldest the kernel holds (a delay-only link releases in arrival order), one batch message
    settles them all; anything else gets its own message. `received` is called for each packet in
    the order read; `messages` turns one wake-up's verdicts into bytes.
    """

    def __init__(self, queue: int) -> None:
        self.queue = queue
        self.pending: deque[int] = deque()  # ids the kernel may still hold, oldest first
        self.settled: set[int] = set()  # ids in `pending` already given a verdict

    def received(self, packet_id: int) -> None:
        self.pending.append(packet_id)

    def messages(self, verdicts: Iterable[tuple[int, int, bytes | None]]) -> list[bytes]:
        """Messages for (id, verdict, replacement payload or None); each id at most once."""
        plain = {}
        other: list[tuple[int, int, bytes | None]] = []
        for packet_id, verdict, payload in verdicts:
            if verdict == NF_ACCEPT and payload is None:
                plain[packet_id] = True
            else:
                other.append((packet_id, verdict, payload))
        out: list[bytes] = []
        pending, settled = self.pending, self.settled
        last = None
        while pending:
            head = pending[0]
            if head in settled:
                settled.discard(head)
            elif plain.pop(head, False):
                last = head
            else:
                break
            pending.popleft()
        if last is not None:
            out.append(verdict_message(self.queue, last, NF_ACCEPT, batch=True))
        for packet_id in plain:
            out.append(verdict_message(self.queue, packet_id, NF_ACCEPT))
            settled.add(packet_id)
        for packet_id, verdict, payload in other:
            out.append(verdict_message(self.queue, packet_id, verdict, payload))
            settled.add(packet_id)
        return out


def chunks(messages: list[bytes], limit: int = SEND_CHUNK) -> Iterator[bytes]:
    """Concatenated messages, at most `limit` bytes per datagram (a bigger single message alone)."""
    batch: list[bytes] = []
    size = 0
    for msg in messages:
        if batch and size + len(msg) > limit:
            yield b"".join(batch)
            batch, size = [], 0
        batch.append(msg)
        size += len(msg)
    if batch:
        yield b"".join(batch)


class NfQueue:
    """One bound NFQUEUE queue. Not thread-safe; one reader."""

    def __init__(self, queue: int, rcvbuf: int = 32 << 20) -> None:
        self.queue = queue
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        for forced, plain, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf),
                                    (SO_SNDBUFFORCE, socket.SO_SNDBUF, 4 << 20)):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, forced, size)
            except OSError:  # not privileged: the ordinary option, capped by net.core.*mem_max
                self.sock.setsockopt(socket.SOL_SOCKET, plain, size)
        self.buffer = bytearray(1 << 17)  # one message: up to 64 KB of payload and its attributes
        self.plan = VerdictPlan(queue)
        self.seq = 0
        self.errors = 0  # error messages from the kernel about our verdicts (unknown id, say)
        self.overruns = 0  # ENOBUFS: the socket overflowed and the kernel dropped packets
        self.backlog: list[QueuedPacket] = []  # packets read while waiting for an acknowledgement
        self._request(bind_message(queue, self._next_seq()))
        self.bound = True

    def fileno(self) -> int:
        return self.sock.fileno()

    def configure(self, copy_range: int, maxlen: int, gso: bool) -> None:
        self._request(config_message(self.queue, copy_range, maxlen, gso, self._next_seq()))

    def close(self) -> None:
        if self.bound:
            self.bound = False
            try:
                self._request(unbind_message(self.queue, self._next_seq()))
            except OSError:
                pass
        self.sock.close()

    def receive(self, limit: int = 1024, until: float = math.inf) -> list[QueuedPacket]:
        """Every packet waiting on the socket, without blocking: up to `limit`, and no longer than
        until the monotonic clock reads `until` (a release falls due then, and must not wait for
        the end of a long read); at least one datagram's worth."""
        packets, self.backlog = self.backlog, []
        while len(packets) < limit:
            try:
                n = self.sock.recv_into(self.buffer, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overruns += 1
                    continue
                raise
            self._dispatch(n, packets)
            if time.monotonic() >= until:
                break
        return packets

    def prepare(self, verdicts: list[tuple[int, int, bytes | None]]) -> list[bytes]:
        """The datagrams that give every verdict of one wake-up (built ahead of the time they
        are due, so that only `send` is left to do then)."""
        return list(chunks(self.plan.messages(verdicts))) if verdicts else []

    def send(self, datagrams: list[bytes]) -> int:
        """Write prepared verdict datagrams; returns the number of sendmsg calls made."""
        for datagram in datagrams:
            self.sock.send(datagram)
        return len(datagrams)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _request(self, msg: bytes) -> None:
        """Send a request with NLM_F_ACK and wait for its acknowledgement; packets read meanwhile
        (a profile changed while traffic flows) wait in `backlog` for the next `receive`."""
        seq = _NLMSGHDR.unpack_from(msg)[3]
        self.sock.send(msg)
        while True:
            try:
                n = self.sock.recv_into(self.buffer)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1
                continue
            code = self._dispatch(n, self.backlog, seq)
            if code is not None:
                if code != 0:
                    raise NfQueueError(-code, f"nfqueue {self.queue}: {errno.errorcode.get(-code, -code)}")
                return

    def _dispatch(self, n: int, packets: list[QueuedPacket], seq: int | None = None) -> int | None:
        """Sort one datagram's messages: packets into `packets`, error messages counted; returns
        the error code of the acknowledgement of request `seq` if this datagram carries it."""
        code = None
        for kind, reply_seq, body in parse_messages(memoryview(self.buffer)[:n]):
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                packet = parse_packet(body)
                if packet is not None:
                    self.plan.received(packet.id)
                    packets.append(packet)
            elif kind == NLMSG_ERROR and len(body) >= 4:
                error = struct.unpack_from("=i", body)[0]
                if seq is not None and reply_seq == seq:
                    code = error
                elif error != 0:
                    self.errors += 1
        return code
