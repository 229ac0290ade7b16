"""The script's remote end on the wire, for drill.runner.

What the stack transmits is parsed and queued in order (`transmit`, the stack's output); each
`>` line takes the oldest queued segment and checks its time and fields (`expect`, with
drill.matcher); each `<` line is built into an IPv4 or IPv6 packet, as the script's IP version
says (`inbound`, drill.addresses). What the stack sends must be TCP, of that version, to the
script's address.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from drill import ast
from drill.icmp import inbound_icmp
from drill.matcher import (
    Flow,
    describe_actual,
    describe_expected,
    inbound_packet,
    learn,
    match_outbound,
    note_sent,
)
from drill.report import ScriptFailed, usecs_text
from stack.errors import ParseError as WireParseError
from stack.host import Host
from stack.inet import pack
from stack.sim.loop import VirtualTimeLoop
from stack.wire.ipv4 import PROTO_TCP, parse_ipv4
from stack.wire.ipv6 import parse_ipv6
from stack.wire.tcp import TcpSegment, parse_tcp

RUNAWAY_PACKETS = 100_000  # unread packets the stack may send before the script fails
# A `>` line's IP fields, by either family's name: (TTL or hop limit, TOS or traffic class).
_IP_FIELD = {"ttl": 0, "hlim": 0, "tos": 1, "class": 1}


class Wire:
    """The segments the stack sent that no `>` line has taken yet, and the virtual clock."""

    def __init__(
        self, loop: VirtualTimeLoop, flow: Flow, line: Callable[[], int]
    ) -> None:
        self.loop = loop
        self.flow = flow
        self.line = line  # the script line being run: a failure in transmit() names it
        self.sent: deque[tuple[int, TcpSegment, tuple[int, int]]] = deque()  # time, segment, IP fields
        self._waiter: asyncio.Future[None] | None = None

    def now(self) -> int:
        return round(self.loop.time() * 1e6)

    def transmit(self, packet: bytes) -> None:
        seg, ip = self._tcp(packet)
        note_sent(seg, self.flow)
        self.sent.append((self.now(), seg, ip))
        if len(self.sent) > RUNAWAY_PACKETS:  # a stack bug sending without end must not hang a corpus run
            raise ScriptFailed(self.line(), f"the stack sent over {RUNAWAY_PACKETS} packets no line expected")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _tcp(self, packet: bytes) -> tuple[TcpSegment, tuple[int, int]]:
        """The TCP segment of a packet the stack sent and its IP header's (TTL or hop limit, TOS
        or traffic class); ScriptFailed if it is anything else."""
        addrs = self.flow.addrs
        version = packet[0] >> 4 if packet else 0
        want = 6 if addrs.wire6 else 4
        if version != want:
            raise ScriptFailed(
                self.line(), f"the stack sent an IPv{version} packet; the script's packets are IPv{want} "
                f"(--ip_version={addrs.version})",
            )  # fmt: skip
        try:
            if version == 6:
                ip6 = parse_ipv6(packet)
                src, dst, protocol, payload = ip6.src, ip6.dst, ip6.next_header, ip6.payload
                fields = (ip6.hop_limit, ip6.traffic_class)
            else:
                ip4 = parse_ipv4(packet)
                src, dst, protocol, payload = ip4.src, ip4.dst, ip4.protocol, ip4.payload
                fields = (ip4.ttl, ip4.tos)
            if protocol != PROTO_TCP:
                raise ScriptFailed(self.line(), f"the stack sent a non-TCP packet (protocol {protocol})")
            if (src, dst) != (addrs.local_ip, addrs.remote_ip):
                raise ScriptFailed(
                    self.line(), f"the stack sent a packet from {src} to {dst}; the script's addresses are "
                    f"{addrs.local_ip} (the stack) and {addrs.remote_ip}",
                )  # fmt: skip
            return parse_tcp(payload, pack(src), pack(dst)), fields
        except WireParseError as e:
            raise ScriptFailed(self.line(), f"the stack sent a malformed packet: {e}") from None

    async def sleep_until(self, usecs: int) -> None:
        if usecs > self.now():
            fut: asyncio.Future[None] = self.loop.create_future()
            handle = self.loop.call_at(usecs / 1e6, _resolve, fut)
            try:
                await fut
            finally:
                handle.cancel()

    async def _wait_packet(self, until_usecs: int) -> None:
        """Until the stack sends something or the clock passes until_usecs."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiter = fut
        handle = self.loop.call_at((until_usecs + 1) / 1e6, _resolve, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._waiter = None

    async def expect(self, ev: ast.PacketEvent, lo: int, hi: int, exact: bool, tol: int, host: Host) -> int:
        """The oldest segment sent, seen between lo and hi and matching the `>` line; the time it
        was sent. `exact`: the line has one time (lo and hi are it widened by the tolerance)."""
        expected = describe_expected(ev)
        while not self.sent:
            if self.now() > hi:
                raise ScriptFailed(
                    ev.line, f"expected a packet by t={usecs_text(hi)}, got nothing",
                    expected, f"nothing sent by t={usecs_text(self.now())}",
                )  # fmt: skip
            await self._wait_packet(hi)
        at, seg, ip = self.sent.popleft()
        learn(seg, self.flow, ev.seq_start if "S" in ev.flags else 0)
        actual = f"{describe_actual(seg, self.flow)} at t={usecs_text(at)}"
        if at < lo or at > hi:
            want = usecs_text(lo + tol) if exact else f"{usecs_text(lo)}~{usecs_text(hi)}"
            raise ScriptFailed(
                ev.line,
                f"packet at t={usecs_text(at)}, expected at t={want} (tolerance {tol} us)",
                expected, actual,
            )  # fmt: skip
        problem = match_outbound(ev, seg, self.flow) or _match_ip(ev, ip)
        if problem is not None:
            raise ScriptFailed(ev.line, f"outbound packet mismatch: {problem}", expected, actual)
        return at

    def inbound(self, ev: ast.PacketEvent | ast.IcmpEvent) -> bytes:
        """The IPv4 or IPv6 packet a `<` line describes."""
        try:
            if isinstance(ev, ast.PacketEvent):
                return inbound_packet(ev, self.flow)
            return inbound_icmp(ev, self.flow)
        except ValueError as e:
            raise ScriptFailed(ev.line, f"cannot inject the packet: {e}") from None


def _match_ip(ev: ast.PacketEvent, ip: tuple[int, int]) -> str | None:
    for name, want in ev.ip_fields:
        got = ip[_IP_FIELD[name]]
        if got != want:
            return f"{name} {got:#04x}, expected {want:#04x}" if name in ("tos", "class") else (
                f"{name} {got}, expected {want}"
            )
    return None


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
