"""Run a packetdrill script against the stack on a virtual clock.

One stack Host at 192.168.0.1 (packetdrill's local address) runs on a VirtualTimeLoop; the script
plays the remote end, 192.0.2.1. Its `<` lines are built into IPv4 packets and delivered at their
script time; what the stack transmits is queued, and each `>` line takes the oldest queued packet
and checks it (flags, sequence numbers, ack, window, urgent pointer, options in order: see
drill.matcher). System calls go to the stack's socket API (stack.socket).

Timing (packetdrill's rules): script time 0 is the start of the run. An absolute time is from the
start, `+x` from the previous event's (start) time, `*` any time, `a~b` a range. A `>` line must be seen
within the tolerance (--tolerance_usecs, default 4000) of its time or range; after `*` or a range
the time it was seen becomes the previous event's time. A blocking call `a...b name(...)` starts
at a, the script carries on meanwhile, and it must have returned at b (within the tolerance) by
the next system call or the end of the script. A call written without `...` must not block.

Anything the runner cannot do (a %{ }% block, a tcpi_ struct, a socket option or system call
the stack lacks, IPv6) ends the script as unsupported, naming the construct and the line: never a
silent pass. Shell lines are interpreted by drill.shell (sysctls mapped to stack settings).
"""

from __future__ import annotations

import asyncio
import errno
import random
import re
import struct
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from drill import ast, shell
from drill.icmp import inbound_icmp
from drill.lexer import ParseError
from drill.matcher import (
    LOCAL_IP,
    PASSIVE_REMOTE_PORT,
    REMOTE_IP,
    REMOTE_PORT,
    Flow,
    describe_actual,
    describe_expected,
    inbound_packet,
    learn,
    match_outbound,
    note_sent,
)
from drill.parser import parse_script
from drill.report import Failure, ScriptResult
from stack import socket as so
from stack.config import TcpConfig, freebsd_profile, linux_profile
from stack.driver import StackRuntime
from stack.errors import ParseError as WireParseError
from stack.host import Host
from stack.sim.loop import VirtualTimeLoop, close_loop
from stack.socket import Socket, Stack
from stack.tcp.state import State
from stack.wire.ipv4 import PROTO_TCP, pack_addr, parse_ipv4
from stack.wire.tcp import TcpSegment, parse_tcp

DEFAULT_TOLERANCE_USECS = 4000  # packetdrill's --tolerance_usecs
ANY_TIME_LIMIT_USECS = 24 * 3600 * 1_000_000  # how long `*` waits for a packet
RUNAWAY_PACKETS = 100_000  # unread packets the stack may send before the script fails
PROFILES = ("linux", "default", "freebsd")

# Script options that need nothing from the runner, and the values it can honour.
_OPTION_VALUES: dict[str, set[str | None]] = {
    "ip_version": {"ipv4"},
    "local_ip": {LOCAL_IP},
    "remote_ip": {REMOTE_IP},
    "address_family": {"AF_INET"},
}
_INT_OPTIONS = ("tolerance_usecs", "bind_port", "connect_port", "speaker_port", "mtu")
MSG_PEEK = "MSG_PEEK"
_TCPI_STATE = re.compile(r"assert\s+tcpi_state\s*==\s*TCPI_([A-Z_0-9]+)")

O_RDWR = 0x2
O_NONBLOCK = 0x800

_SOCKOPTS: dict[str, tuple[int, int]] = {
    "SO_REUSEADDR": (so.SOL_SOCKET, so.SO_REUSEADDR),
    "SO_KEEPALIVE": (so.SOL_SOCKET, so.SO_KEEPALIVE),
    "SO_LINGER": (so.SOL_SOCKET, so.SO_LINGER),
    "SO_RCVBUF": (so.SOL_SOCKET, so.SO_RCVBUF),
    "SO_SNDBUF": (so.SOL_SOCKET, so.SO_SNDBUF),
    "SO_ERROR": (so.SOL_SOCKET, so.SO_ERROR),
    "TCP_NODELAY": (so.IPPROTO_TCP, so.TCP_NODELAY),
    "TCP_KEEPIDLE": (so.IPPROTO_TCP, so.TCP_KEEPIDLE),
    "TCP_KEEPINTVL": (so.IPPROTO_TCP, so.TCP_KEEPINTVL),
    "TCP_KEEPCNT": (so.IPPROTO_TCP, so.TCP_KEEPCNT),
}
_LEVELS = {"SOL_SOCKET": so.SOL_SOCKET, "IPPROTO_TCP": so.IPPROTO_TCP, "SOL_TCP": so.IPPROTO_TCP}
_GETTABLE = {"SO_KEEPALIVE", "SO_RCVBUF", "SO_SNDBUF", "SO_ERROR", "TCP_NODELAY", "SO_REUSEADDR"}
_GETTABLE |= {"TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"}
_SHUT = {"SHUT_RD": so.SHUT_RD, "SHUT_WR": so.SHUT_WR, "SHUT_RDWR": so.SHUT_RDWR}


def profile_config(profile: str) -> TcpConfig:
    """The stack's settings for a profile.

    `linux`: what packetdrill scripts written on Linux assume, Linux 6.x's choices where the RFCs
    leave one (stack.config.linux_profile).
    `default`: the stack's own defaults (TcpConfig()).
    `freebsd`: FreeBSD 13/14's defaults and choices where the RFCs leave one, so that the FreeBSD
    TCP test suite's scripts pass (stack.config.freebsd_profile).
    """
    if profile == "default":
        return TcpConfig()
    if profile == "freebsd":
        return freebsd_profile()
    if profile == "linux":
        return linux_profile()
    raise ValueError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")


class ScriptFailed(Exception):
    def __init__(self, line: int, message: str, expected: str | None = None, actual: str | None = None):
        super().__init__(message)
        self.failure = Failure(line, message, expected, actual)


class ScriptUnsupported(ScriptFailed):
    """The script needs `construct`, which the runner or the stack does not have."""

    def __init__(self, line: int, construct: str) -> None:
        super().__init__(line, f"unsupported: {construct}")
        self.construct = construct


class _SysError(Exception):
    """A system call's -1 result with its errno name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _errno_name(exc: BaseException) -> str:
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    for kind, name in (
        (ConnectionRefusedError, "ECONNREFUSED"),
        (ConnectionResetError, "ECONNRESET"),
        (ConnectionAbortedError, "ECONNABORTED"),
        (BrokenPipeError, "EPIPE"),
        (TimeoutError, "ETIMEDOUT"),
    ):
        if isinstance(exc, kind):
            return name
    return "EIO"


def _usecs_text(usecs: float) -> str:
    return f"{usecs / 1e6:.6f}"


@dataclass
class _Fd:
    sock: Socket
    nonblocking: bool = False


@dataclass
class _Blocking:
    event: ast.SyscallEvent
    task: asyncio.Task[int]
    end_usecs: int
    done_usecs: int | None = None


class Runner:
    """Runs one parsed script once; `run()` gives its ScriptResult."""

    def __init__(
        self,
        script: ast.Script,
        *,
        name: str = "<script>",
        profile: str = "linux",
        tolerance_usecs: int | None = None,
        config: TcpConfig | None = None,
        seed: int = 1,
    ) -> None:
        self.script = script
        self.name = name
        self.config = config if config is not None else profile_config(profile)
        self.seed = seed
        self.tolerance = tolerance_usecs
        self.bind_port = REMOTE_PORT
        self.connect_port = REMOTE_PORT
        self.flow = Flow()
        self.sent: deque[tuple[int, TcpSegment]] = deque()
        self.fds: dict[int, _Fd] = {}
        self.blocking: _Blocking | None = None
        self.prev_usecs = 0
        self.events_done = 0
        self._waiter: asyncio.Future[None] | None = None
        self._line = 0
        self.notes: list[str] = []
        self.last_fd: int | None = None  # the socket under test: that of the latest system call

    # --- entry point ------------------------------------------------------------------------

    def run(self) -> ScriptResult:
        loop = VirtualTimeLoop()
        self.loop = loop
        host = Host(LOCAL_IP, config=self.config, rng=random.Random(self.seed), isn_key=b"drill")
        self.runtime = StackRuntime(host, loop, self._transmit)
        self.stack = Stack(self.runtime)
        failure: Failure | None = None
        unsupported: str | None = None
        try:
            self._check_options()
            loop.run_until_complete(self._main())
        except ScriptUnsupported as e:
            failure, unsupported = e.failure, e.construct
        except ScriptFailed as e:
            failure = e.failure
        except Exception as e:  # a stack bug surfacing through a callback or call
            failure = Failure(self._line, f"the stack raised {type(e).__name__}: {e}{_origin(e)}")
        finally:
            end = loop.time()
            close_loop(loop)
        return ScriptResult(
            self.name, failure is None, failure, self.events_done, end, unsupported, tuple(self.notes)
        )

    def _check_options(self) -> None:
        for key, value in self.script.options.items():
            if key in _INT_OPTIONS:
                if value is None or not value.isdigit():
                    raise ScriptFailed(0, f"option --{key} needs an integer value")
                if key == "tolerance_usecs" and self.tolerance is None:
                    self.tolerance = int(value)
                elif key == "bind_port":
                    self.bind_port = int(value)
                elif key in ("connect_port", "speaker_port"):
                    self.connect_port = int(value)
                elif key == "mtu":  # the local interface's MTU: our MSS option follows it
                    self.runtime.host.config = self.runtime.host.config.with_(mtu=int(value))
            elif key in _OPTION_VALUES and value in _OPTION_VALUES[key]:
                continue
            elif key in _OPTION_VALUES:  # --ip_version=ipv6: the stack is IPv4 only for now
                raise ScriptUnsupported(0, f"--{key}={value}")
            else:
                raise ScriptUnsupported(0, f"script option --{key}")
        if self.tolerance is None:
            self.tolerance = DEFAULT_TOLERANCE_USECS
        if self.script.init_command is not None:
            self._shell(self.script.init_command)

    def _shell(self, ev: ast.ShellEvent) -> None:
        action = shell.interpret(ev.command)
        if action.unsupported is not None:
            raise ScriptUnsupported(ev.line, action.unsupported)
        self.notes += [f"line {ev.line}: {note}" for note in action.notes]
        self.runtime.host.config = shell.apply(self.runtime.host.config, action)

    @property
    def tol(self) -> int:
        return self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE_USECS

    # --- the wire ---------------------------------------------------------------------------

    def _now(self) -> int:
        return round(self.loop.time() * 1e6)

    def _transmit(self, packet: bytes) -> None:
        try:
            ip = parse_ipv4(packet)
            if ip.protocol != PROTO_TCP:
                raise ScriptFailed(self._line, f"the stack sent a non-TCP packet (protocol {ip.protocol})")
            seg = parse_tcp(ip.payload, pack_addr(ip.src), pack_addr(ip.dst))
        except WireParseError as e:
            raise ScriptFailed(self._line, f"the stack sent a malformed packet: {e}") from None
        note_sent(seg, self.flow)
        self.sent.append((self._now(), seg))
        if len(self.sent) > RUNAWAY_PACKETS:  # a stack bug sending without end must not hang a corpus run
            raise ScriptFailed(self._line, f"the stack sent over {RUNAWAY_PACKETS} packets no line expected")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _sleep_until(self, usecs: int) -> None:
        if usecs > self._now():
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

    # --- events -----------------------------------------------------------------------------

    async def _main(self) -> None:
        for ev in self.script.events:
            self._line = ev.line
            if isinstance(ev, ast.UnsupportedEvent):
                raise ScriptUnsupported(ev.line, ev.what)
            if isinstance(ev, ast.ShellEvent):
                assert ev.timing is not None  # only the untimed init command has none
                lo, _ = self._window(ev.timing)
                await self._sleep_until(lo)
                self.prev_usecs = lo
                self._shell(ev)
            elif isinstance(ev, ast.CodeEvent):
                lo, _ = self._window(ev.timing)
                await self._sleep_until(lo)
                self.prev_usecs = lo
                self._code(ev)
            elif isinstance(ev, ast.IcmpEvent):
                await self._inbound(ev)
            elif isinstance(ev, ast.PacketEvent):
                if ev.direction is ast.Direction.OUT:
                    await self._outbound(ev)
                else:
                    await self._inbound(ev)
            else:
                await self._syscall(ev)
            self.events_done += 1
        await self._join_blocking(None)
        cleanup = self.script.cleanup_command
        if cleanup is not None:  # after the test: it can only be noted, never fail the script
            action = shell.interpret(cleanup.command)
            what = action.notes or (f"{action.unsupported} not run",)
            self.notes += [f"line {cleanup.line}: cleanup: {note}" for note in what]

    def _code(self, ev: ast.CodeEvent) -> None:
        """`%{ assert tcpi_state == TCPI_X }%`: the state of the socket under test (as packetdrill,
        the socket of the latest system call); any other code is unsupported."""
        match = _TCPI_STATE.fullmatch(ev.code.strip())
        if match is None:
            raise ScriptUnsupported(ev.line, "%{ }% code block")
        entry = self.fds.get(self.last_fd) if self.last_fd is not None else None
        if entry is None:
            raise ScriptFailed(ev.line, "tcpi_state: no socket under test")
        sock = entry.sock
        state = sock.conn.state.name if sock.conn else "LISTEN" if sock.listener else "CLOSED"
        want = match.group(1)
        if state != want:
            raise ScriptFailed(ev.line, f"tcpi_state is TCPI_{state}", f"TCPI_{want}", f"TCPI_{state}")

    def _window(self, t: ast.Timing) -> tuple[int, int]:
        """The script times [lo, hi] an event is due at (hi is lo but for `*` and ranges)."""
        prev = self.prev_usecs
        if t.kind is ast.TimeKind.ABSOLUTE:
            return t.usecs, t.usecs
        if t.kind is ast.TimeKind.RELATIVE:
            return prev + t.usecs, prev + t.usecs
        if t.kind is ast.TimeKind.ABSOLUTE_RANGE:
            return t.usecs, t.end_usecs if t.end_usecs is not None else t.usecs
        if t.kind is ast.TimeKind.RELATIVE_RANGE:
            end = t.end_usecs if t.end_usecs is not None else t.usecs
            return prev + t.usecs, prev + end
        now = self._now()
        return now, now + ANY_TIME_LIMIT_USECS

    async def _outbound(self, ev: ast.PacketEvent) -> None:
        lo, hi = self._window(ev.timing)
        exact = ev.timing.kind in (ast.TimeKind.ABSOLUTE, ast.TimeKind.RELATIVE)
        if (not exact and ev.timing.kind is not ast.TimeKind.ANY) or exact:
            lo, hi = lo - self.tol, hi + self.tol
        else:
            lo = 0
        expected = describe_expected(ev)
        while not self.sent:
            if self._now() > hi:
                raise ScriptFailed(
                    ev.line, f"expected a packet by t={_usecs_text(hi)}, got nothing",
                    expected, f"nothing sent by t={_usecs_text(self._now())}",
                )  # fmt: skip
            await self._wait_packet(hi)
        at, seg = self.sent.popleft()
        learn(seg, self.flow, ev.seq_start if "S" in ev.flags else 0)
        actual = f"{describe_actual(seg, self.flow)} at t={_usecs_text(at)}"
        if at < lo or at > hi:
            want = _usecs_text(lo + self.tol) if exact else f"{_usecs_text(lo)}~{_usecs_text(hi)}"
            raise ScriptFailed(
                ev.line,
                f"packet at t={_usecs_text(at)}, expected at t={want} (tolerance {self.tol} us)",
                expected, actual,
            )  # fmt: skip
        problem = match_outbound(ev, seg, self.flow)
        if problem is not None:
            raise ScriptFailed(ev.line, f"outbound packet mismatch: {problem}", expected, actual)
        self.prev_usecs = lo + self.tol if exact else at

    async def _inbound(self, ev: ast.PacketEvent | ast.IcmpEvent) -> None:
        lo, _ = self._window(ev.timing)
        await self._sleep_until(lo)
        self.prev_usecs = lo
        try:
            if isinstance(ev, ast.PacketEvent):
                packet = inbound_packet(ev, self.flow)
            else:
                packet = inbound_icmp(ev, self.flow)
        except ValueError as e:
            raise ScriptFailed(ev.line, f"cannot inject the packet: {e}") from None
        self.runtime.deliver([packet])

    async def _syscall(self, ev: ast.SyscallEvent) -> None:
        start, _ = self._window(ev.timing)
        await self._sleep_until(start)
        await self._join_blocking(ev)
        if self._now() > start + self.tol:
            raise ScriptFailed(
                ev.line, f"{ev.name}() could not start at t={_usecs_text(start)}: the blocking call "
                f"before it returned at t={_usecs_text(self._now())}",
            )  # fmt: skip
        self.prev_usecs = start
        self._line = ev.line
        task = self.loop.create_task(self._call(ev))
        if ev.timing.block_end_usecs is not None:
            end = ev.timing.block_end_usecs
            if ev.timing.kind is ast.TimeKind.RELATIVE:
                end += start - ev.timing.usecs
            blocking = _Blocking(ev, task, end)
            task.add_done_callback(lambda _t: setattr(blocking, "done_usecs", self._now()))
            self.blocking = blocking
            await asyncio.sleep(0)
            return
        done, _ = await asyncio.wait({task}, timeout=self.tol / 1e6)
        if not done:
            task.cancel()
            raise ScriptFailed(
                ev.line, f"{ev.name}() blocked; the script expects it to return at once "
                "(write `start...end` for a blocking call)",
            )  # fmt: skip
        self._check_result(ev, task)

    async def _join_blocking(self, next_ev: ast.SyscallEvent | None) -> None:
        b = self.blocking
        if b is None:
            return
        self.blocking = None
        if not b.task.done():
            limit = max(b.end_usecs + self.tol - self._now(), 0)
            await asyncio.wait({b.task}, timeout=limit / 1e6)
        self._line = b.event.line
        if not b.task.done():
            b.task.cancel()
            raise ScriptFailed(
                b.event.line,
                f"{b.event.name}() still blocked at t={_usecs_text(self._now())}, expected it to return "
                f"at t={_usecs_text(b.end_usecs)}",
            )
        done = b.done_usecs if b.done_usecs is not None else self._now()
        if abs(done - b.end_usecs) > self.tol:
            raise ScriptFailed(
                b.event.line,
                f"{b.event.name}() returned at t={_usecs_text(done)}, expected at "
                f"t={_usecs_text(b.end_usecs)} (tolerance {self.tol} us)",
            )
        self._check_result(b.event, b.task)
        if next_ev is not None:
            self._line = next_ev.line

    def _check_result(self, ev: ast.SyscallEvent, task: asyncio.Task[int]) -> None:
        exc = task.exception()
        if isinstance(exc, ScriptFailed):
            raise exc
        want = f"{ev.result}" + (f" {ev.errno}" if ev.errno else "")
        if isinstance(exc, _SysError):
            got = f"-1 {exc.name}"
            if ev.result == -1 and (ev.errno is None or _same_errno(ev.errno, exc.name)):
                return
        elif exc is not None:
            raise ScriptFailed(ev.line, f"{ev.name}() made the stack raise {type(exc).__name__}: {exc}")
        else:
            value = task.result()
            got = str(value)
            if value == ev.result and ev.errno is None:
                return
        raise ScriptFailed(ev.line, f"{ev.name}() returned {got}, expected {want}", f"= {want}", f"= {got}")

    # --- system calls -----------------------------------------------------------------------

    async def _call(self, ev: ast.SyscallEvent) -> int:
        handler = getattr(self, f"_sys_{ev.name}", None)
        if handler is None:
            raise ScriptUnsupported(ev.line, f"system call {ev.name}()")
        if ev.args and isinstance(ev.args[0], ast.IntLit) and ev.args[0].value in self.fds:
            self.last_fd = ev.args[0].value
        try:
            result: int = await handler(ev)
            if ev.name in ("socket", "accept"):
                self.last_fd = result
        except (ScriptFailed, _SysError):
            raise
        except OSError as e:
            raise _SysError(_errno_name(e)) from None
        return result

    def _arg(self, ev: ast.SyscallEvent, i: int) -> ast.Expr:
        if i >= len(ev.args):
            raise ScriptFailed(ev.line, f"{ev.name}() needs at least {i + 1} arguments")
        return ev.args[i]

    def _int_arg(self, ev: ast.SyscallEvent, i: int) -> int:
        arg = self._arg(ev, i)
        if isinstance(arg, ast.IntLit):
            return arg.value
        if isinstance(arg, ast.ListExpr) and len(arg.items) == 1:
            item = arg.items[0]
            if isinstance(item, ast.IntLit):
                return item.value
            # A symbolic errno, as in getsockopt(fd, SOL_SOCKET, SO_ERROR, [ECONNRESET], [4]).
            if isinstance(item, ast.Symbols) and len(item.names) == 1:
                code = getattr(errno, item.names[0], None)
                if item.names[0].startswith("E") and isinstance(code, int):
                    return code
        raise ScriptFailed(ev.line, f"{ev.name}() argument {i + 1}: expected an integer")

    def _fd(self, ev: ast.SyscallEvent) -> _Fd:
        fd = self._int_arg(ev, 0)
        entry = self.fds.get(fd)
        if entry is None:
            raise _SysError("EBADF")
        return entry

    def _sym(self, ev: ast.SyscallEvent, i: int) -> tuple[str, ...]:
        arg = self._arg(ev, i)
        if isinstance(arg, ast.Symbols):
            return arg.names
        raise ScriptFailed(ev.line, f"{ev.name}() argument {i + 1}: expected a symbolic constant")

    async def _sys_socket(self, ev: ast.SyscallEvent) -> int:
        kind = self._arg(ev, 1)
        if not (isinstance(kind, ast.Symbols) and kind.names[0] == "SOCK_STREAM"):
            raise ScriptUnsupported(ev.line, "sockets other than SOCK_STREAM")
        family = self._arg(ev, 0)
        if isinstance(family, ast.Symbols) and family.names != ("AF_INET",):
            raise ScriptUnsupported(ev.line, f"address family {'|'.join(family.names)}")
        fd = 3
        while fd in self.fds:
            fd += 1
        self.fds[fd] = _Fd(self.stack.socket(), nonblocking="SOCK_NONBLOCK" in kind.names)
        return fd

    async def _sys_bind(self, ev: ast.SyscallEvent) -> int:
        entry = self._fd(ev)
        entry.sock.bind(("0.0.0.0", self.bind_port))
        self.flow.local_port = self.bind_port
        self.flow.remote_port = PASSIVE_REMOTE_PORT
        return 0

    async def _sys_listen(self, ev: ast.SyscallEvent) -> int:
        entry = self._fd(ev)
        entry.sock.listen(self._int_arg(ev, 1))
        if self.flow.local_port is None:
            self.flow.local_port = entry.sock.getsockname()[1]
            self.flow.remote_port = PASSIVE_REMOTE_PORT
        return 0

    async def _sys_accept(self, ev: ast.SyscallEvent) -> int:
        entry = self._fd(ev)
        listener = entry.sock.listener
        if listener is None:
            raise _SysError("EINVAL")
        if entry.nonblocking and not listener.accept_queue:
            raise _SysError("EAGAIN")
        child, _ = await entry.sock.aaccept()
        fd = 3
        while fd in self.fds:
            fd += 1
        self.fds[fd] = _Fd(child)
        return fd

    async def _sys_connect(self, ev: ast.SyscallEvent) -> int:
        entry = self._fd(ev)
        sock = entry.sock
        self.flow.remote_port = self.connect_port
        address = (REMOTE_IP, self.connect_port)
        if sock.conn is not None:
            conn = sock.conn
            if conn.connected:
                raise _SysError("EISCONN")
            if conn.error is not None:
                raise _SysError(_errno_name(conn.error))
            raise _SysError("EALREADY")
        if not entry.nonblocking:
            await sock.aconnect(address)
            return 0
        task = self.loop.create_task(sock.aconnect(address))
        task.add_done_callback(_consume)
        await asyncio.sleep(0)
        if task.done() and task.exception() is None:
            return 0
        raise _SysError("EINPROGRESS")

    def _conn_fd(self, ev: ast.SyscallEvent) -> _Fd:
        entry = self._fd(ev)
        if entry.sock.conn is None:
            raise _SysError("ENOTCONN")
        return entry

    async def _sys_write(self, ev: ast.SyscallEvent) -> int:
        entry = self._conn_fd(ev)
        data = self._payload(ev)
        conn = entry.sock.conn
        assert conn is not None
        if entry.nonblocking:
            if conn.is_open_for_send and conn.send_space == 0:
                raise _SysError("EAGAIN")
            return await entry.sock.asend(data)
        sent = 0
        while sent < len(data):
            sent += await entry.sock.asend(data[sent:])
        return sent

    async def _sys_send(self, ev: ast.SyscallEvent) -> int:
        if self._flags(ev, 3) - {"0"}:
            raise ScriptUnsupported(ev.line, f"{ev.name}() flags other than 0")
        return await self._sys_write(ev)

    async def _sys_sendto(self, ev: ast.SyscallEvent) -> int:
        """sendto(fd, buf, len, flags, addr, addrlen) on a connected socket: send()."""
        if len(ev.args) > 4 and not isinstance(ev.args[4], ast.Elided):
            raise ScriptUnsupported(ev.line, "sendto() with an address")
        return await self._sys_send(ev)

    def _flags(self, ev: ast.SyscallEvent, i: int) -> set[str]:
        """A flags argument as a set of names (`0` -> {"0"}), e.g. {"MSG_PEEK"}."""
        arg = self._arg(ev, i) if len(ev.args) > i else ast.IntLit(0)
        if isinstance(arg, ast.IntLit) and arg.value == 0:
            return {"0"}
        if isinstance(arg, ast.Symbols):
            return set(arg.names)
        raise ScriptFailed(ev.line, f"{ev.name}() argument {i + 1}: expected flags")

    def _payload(self, ev: ast.SyscallEvent) -> bytes:
        arg = self._arg(ev, 1)
        if isinstance(arg, ast.StringLit):
            return arg.value.encode("latin-1")
        return bytes(self._int_arg(ev, 2))

    async def _sys_read(self, ev: ast.SyscallEvent, flags: int = 0) -> int:
        entry = self._conn_fd(ev)
        conn = entry.sock.conn
        assert conn is not None
        n = self._int_arg(ev, 2)
        if entry.nonblocking and not (
            conn.readable or conn.at_eof or conn.read_shut or conn.error is not None
            or conn.state is State.CLOSED
        ):
            raise _SysError("EAGAIN")
        data = await entry.sock.arecv(n, flags)
        expect = self._arg(ev, 1)
        if isinstance(expect, ast.StringLit):
            want = expect.value.encode("latin-1")
            if (data[: len(want)] if expect.prefix else data) != want:
                raise ScriptFailed(ev.line, f"read() data {data!r}, expected {want!r}")
        return len(data)

    async def _sys_recv(self, ev: ast.SyscallEvent) -> int:
        flags = self._flags(ev, 3) - {"0"}
        if flags - {MSG_PEEK}:
            raise ScriptUnsupported(ev.line, f"recv() flags {'|'.join(sorted(flags - {MSG_PEEK}))}")
        return await self._sys_read(ev, so.MSG_PEEK if flags else 0)

    async def _sys_close(self, ev: ast.SyscallEvent) -> int:
        entry = self._fd(ev)
        entry.sock.close()
        del self.fds[self._int_arg(ev, 0)]
        return 0

    async def _sys_shutdown(self, ev: ast.SyscallEvent) -> int:
        entry = self._conn_fd(ev)
        names = self._sym(ev, 1)
        if len(names) != 1 or names[0] not in _SHUT:
            raise ScriptFailed(ev.line, f"shutdown(): unknown how {'|'.join(names)}")
        entry.sock.shutdown(_SHUT[names[0]])
        return 0

    async def _sys_fcntl(self, ev: ast.SyscallEvent) -> int:
        entry = self._fd(ev)
        cmd = self._sym(ev, 1)
        if cmd == ("F_GETFL",):
            return O_RDWR | (O_NONBLOCK if entry.nonblocking else 0)
        if cmd == ("F_SETFL",):
            arg = self._arg(ev, 2)
            if isinstance(arg, ast.Symbols):
                unknown = set(arg.names) - {"O_RDWR", "O_NONBLOCK", "O_RDONLY", "O_WRONLY"}
                if unknown:
                    raise ScriptUnsupported(ev.line, f"fcntl flag {', '.join(sorted(unknown))}")
                entry.nonblocking = "O_NONBLOCK" in arg.names
            else:
                entry.nonblocking = bool(self._int_arg(ev, 2) & O_NONBLOCK)
            return 0
        raise ScriptUnsupported(ev.line, f"fcntl command {'|'.join(cmd)}")

    def _sockopt(self, ev: ast.SyscallEvent) -> tuple[str, int, int]:
        level_names, names = self._sym(ev, 1), self._sym(ev, 2)
        level = _LEVELS.get(level_names[0]) if len(level_names) == 1 else None
        name = names[0] if len(names) == 1 else "|".join(names)
        known = _SOCKOPTS.get(name)
        if level is None or known is None or known[0] != level:
            raise ScriptUnsupported(ev.line, f"socket option {'|'.join(level_names)}/{name} in {ev.name}()")
        return name, known[0], known[1]

    async def _sys_setsockopt(self, ev: ast.SyscallEvent) -> int:
        entry = self._fd(ev)
        name, level, option = self._sockopt(ev)
        arg = self._arg(ev, 3)
        value: int | bytes
        if isinstance(arg, ast.RawStruct):
            if name != "SO_LINGER":
                raise ScriptUnsupported(ev.line, f"setsockopt({name}) with a struct")
            fields = _struct_fields(arg.text)
            try:
                value = struct.pack("ii", fields["l_onoff"], fields["l_linger"])
            except KeyError:
                raise ScriptFailed(ev.line, "SO_LINGER needs {l_onoff=..., l_linger=...}") from None
        else:
            value = self._int_arg(ev, 3)
        entry.sock.setsockopt(level, option, value)
        return 0

    async def _sys_getsockopt(self, ev: ast.SyscallEvent) -> int:
        entry = self._fd(ev)
        name, level, option = self._sockopt(ev)
        if name not in _GETTABLE:
            raise ScriptUnsupported(ev.line, f"getsockopt({name})")
        actual = 0 if name == "SO_REUSEADDR" else entry.sock.getsockopt(level, option)
        arg = self._arg(ev, 3)
        if not isinstance(arg, ast.Elided):
            want = self._int_arg(ev, 3)
            if actual != want:
                symbolic = name == "SO_ERROR"  # an errno: shown by name
                w, a = (errno.errorcode.get(v, str(v)) if symbolic else str(v) for v in (want, actual))
                message = f"getsockopt({name}) gave [{a}], expected [{w}]"
                raise ScriptFailed(ev.line, message, f"[{w}]", f"[{a}]")
        return 0


def _same_errno(written: str, got: str) -> bool:
    """EWOULDBLOCK is EAGAIN (and EDEADLOCK is EDEADLK): compare the numbers behind the names."""
    return written == got or getattr(errno, written, None) == getattr(errno, got, 0)


def _origin(exc: BaseException) -> str:
    """ (at file:line)" of the innermost frame of exc's traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed non-blocking connect is reported through SO_ERROR


def _struct_fields(text: str) -> dict[str, int]:
    return {k: int(v, 0) for k, v in re.findall(r"(\w+)\s*=\s*(-?(?:0x[0-9a-fA-F]+|\d+))", text)}


# --- convenience ------------------------------------------------------------------------------


def run_script(
    script: ast.Script, *, name: str = "<script>", profile: str = "linux", tolerance_usecs: int | None = None
) -> ScriptResult:
    return Runner(script, name=name, profile=profile, tolerance_usecs=tolerance_usecs).run()


def run_text(
    text: str,
    *,
    name: str = "<script>",
    profile: str = "linux",
    tolerance_usecs: int | None = None,
    defines: frozenset[str] = frozenset(),
) -> ScriptResult:
    """Parse (`#ifdef NAME` active for NAME in defines) and run; a script that does not parse
    fails at the line of the parse error."""
    try:
        script = parse_script(text, defines)
    except ParseError as e:
        return ScriptResult(name, False, Failure(e.line, f"parse error: {e}"))
    return run_script(script, name=name, profile=profile, tolerance_usecs=tolerance_usecs)


def run_file(
    path: str | Path,
    *,
    profile: str = "linux",
    tolerance_usecs: int | None = None,
    defines: frozenset[str] = frozenset(),
    name: str | None = None,
) -> ScriptResult:
    p = Path(path)
    shown = str(p) if name is None else name
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return ScriptResult(shown, False, Failure(0, f"cannot read the script: {e}"))
    return run_text(text, name=shown, profile=profile, tolerance_usecs=tolerance_usecs, defines=defines)
