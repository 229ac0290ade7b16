"""The system calls of a packetdrill script, on the stack's socket API (stack.socket).

`Syscalls.call(ev)` runs one call and gives its result; a call that fails as the kernel's would
raises SysError with the errno name, and `check_result` compares the outcome with the script's
`= RESULT [ERRNO]`. File descriptors are numbered as a kernel numbers them (the lowest free one
from 3). A call, flag, socket option or struct the stack lacks ends the script as unsupported.
"""

from __future__ import annotations

import asyncio
import errno
import re
import struct
from dataclasses import dataclass

from drill import ast
from drill.matcher import PASSIVE_REMOTE_PORT, REMOTE_PORT, Flow
from drill.report import ScriptFailed, ScriptUnsupported
from stack import socket as so
from stack import sockopts
from stack.inet import AF_INET, AF_INET6
from stack.sim.loop import VirtualTimeLoop
from stack.socket import Socket, Stack
from stack.tcp.state import State

MSG_PEEK = "MSG_PEEK"
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
    "TCP_KEEPIDLE": (so.IPPROTO_TCP, sockopts.TCP_KEEPIDLE),
    "TCP_KEEPINTVL": (so.IPPROTO_TCP, sockopts.TCP_KEEPINTVL),
    "TCP_KEEPCNT": (so.IPPROTO_TCP, sockopts.TCP_KEEPCNT),
    "TCP_KEEPINIT": (so.IPPROTO_TCP, sockopts.TCP_KEEPINIT),
    "TCP_NOOPT": (so.IPPROTO_TCP, sockopts.TCP_NOOPT),
    "IP_TTL": (sockopts.IPPROTO_IP, sockopts.IP_TTL),
    "IP_TOS": (sockopts.IPPROTO_IP, sockopts.IP_TOS),
    "IPV6_UNICAST_HOPS": (sockopts.IPPROTO_IPV6, sockopts.IPV6_UNICAST_HOPS),
    "IPV6_TCLASS": (sockopts.IPPROTO_IPV6, sockopts.IPV6_TCLASS),
}
_LEVELS = {"SOL_SOCKET": so.SOL_SOCKET, "IPPROTO_TCP": so.IPPROTO_TCP, "SOL_TCP": so.IPPROTO_TCP,
           "IPPROTO_IP": sockopts.IPPROTO_IP, "SOL_IP": sockopts.IPPROTO_IP,
           "IPPROTO_IPV6": sockopts.IPPROTO_IPV6, "SOL_IPV6": sockopts.IPPROTO_IPV6}
_GETTABLE = {"SO_KEEPALIVE", "SO_RCVBUF", "SO_SNDBUF", "SO_ERROR", "TCP_NODELAY", "SO_REUSEADDR"}
_GETTABLE |= {"TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_KEEPINIT", "TCP_NOOPT"}
_GETTABLE |= {"IP_TTL", "IP_TOS", "IPV6_UNICAST_HOPS", "IPV6_TCLASS"}
# <netinet/ip.h> names of TOS / traffic-class values: the DSCP class selectors (RFC 2474 4.2.2),
# expedited forwarding (RFC 3246) and the RFC 1349 bits.
_IPTOS = {f"IPTOS_DSCP_CS{n}": n << 5 for n in range(8)}
_IPTOS |= {"IPTOS_DSCP_EF": 0xB8, "IPTOS_LOWDELAY": 0x10, "IPTOS_THROUGHPUT": 0x08,
           "IPTOS_RELIABILITY": 0x04, "IPTOS_MINCOST": 0x02}
_SHUT = {"SHUT_RD": so.SHUT_RD, "SHUT_WR": so.SHUT_WR, "SHUT_RDWR": so.SHUT_RDWR}
_FAMILIES = {"AF_INET": AF_INET, "AF_INET6": AF_INET6}


class SysError(Exception):
    """A system call's -1 result with its errno name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def errno_name(exc: BaseException) -> str:
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


@dataclass
class Fd:
    sock: Socket
    nonblocking: bool = False


class Syscalls:
    """The script's sockets and the system calls on them."""

    def __init__(self, stack: Stack, loop: VirtualTimeLoop, flow: Flow) -> None:
        self.stack = stack
        self.loop = loop
        self.flow = flow
        self.bind_port = REMOTE_PORT  # --bind_port
        self.connect_port = REMOTE_PORT  # --connect_port, --speaker_port
        self.fds: dict[int, Fd] = {}
        self.last_fd: int | None = None  # the socket under test: that of the latest system call

    def socket_under_test(self) -> Socket | None:
        """As packetdrill's, the socket of the latest system call."""
        entry = self.fds.get(self.last_fd) if self.last_fd is not None else None
        return entry.sock if entry is not None else None

    async def call(self, ev: ast.SyscallEvent) -> int:
        handler = getattr(self, f"_sys_{ev.name}", None)
        if handler is None:
            raise ScriptUnsupported(ev.line, f"system call {ev.name}()")
        if ev.args and isinstance(ev.args[0], ast.IntLit) and ev.args[0].value in self.fds:
            self.last_fd = ev.args[0].value
        try:
            result: int = await handler(ev)
            if ev.name in ("socket", "accept"):
                self.last_fd = result
        except (ScriptFailed, SysError):
            raise
        except OSError as e:
            raise SysError(errno_name(e)) from None
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
            if isinstance(item, ast.Symbols) and len(item.names) == 1 and item.names[0] in _IPTOS:
                return _IPTOS[item.names[0]]
            if isinstance(item, ast.Symbols) and len(item.names) == 1:
                code = getattr(errno, item.names[0], None)
                if item.names[0].startswith("E") and isinstance(code, int):
                    return code
        raise ScriptFailed(ev.line, f"{ev.name}() argument {i + 1}: expected an integer")

    def _fd(self, ev: ast.SyscallEvent) -> Fd:
        fd = self._int_arg(ev, 0)
        entry = self.fds.get(fd)
        if entry is None:
            raise SysError("EBADF")
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
        arg = self._arg(ev, 0)
        family = self.flow.addrs.socket_family  # `...`: the script's IP version's (drill.addresses)
        if isinstance(arg, ast.Symbols):
            if len(arg.names) != 1 or arg.names[0] not in _FAMILIES:
                raise ScriptUnsupported(ev.line, f"address family {'|'.join(arg.names)}")
            family = _FAMILIES[arg.names[0]]
        fd = 3
        while fd in self.fds:
            fd += 1
        self.fds[fd] = Fd(self.stack.socket(family), nonblocking="SOCK_NONBLOCK" in kind.names)
        return fd

    async def _sys_bind(self, ev: ast.SyscallEvent) -> int:
        entry = self._fd(ev)
        entry.sock.bind(("::" if entry.sock.family == AF_INET6 else "0.0.0.0", self.bind_port))
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
            raise SysError("EINVAL")
        if entry.nonblocking and not listener.accept_queue:
            raise SysError("EAGAIN")
        child, _ = await entry.sock.aaccept()
        fd = 3
        while fd in self.fds:
            fd += 1
        self.fds[fd] = Fd(child)
        return fd

    async def _sys_connect(self, ev: ast.SyscallEvent) -> int:
        entry = self._fd(ev)
        sock = entry.sock
        self.flow.remote_port = self.connect_port
        address = (self.flow.addrs.connect_ip(sock.family), self.connect_port)
        if sock.conn is not None:
            conn = sock.conn
            if conn.connected:
                raise SysError("EISCONN")
            if conn.error is not None:
                raise SysError(errno_name(conn.error))
            raise SysError("EALREADY")
        if not entry.nonblocking:
            await sock.aconnect(address)
            return 0
        task = self.loop.create_task(sock.aconnect(address))
        task.add_done_callback(_consume)
        await asyncio.sleep(0)
        if task.done() and task.exception() is None:
            return 0
        raise SysError("EINPROGRESS")

    def _conn_fd(self, ev: ast.SyscallEvent) -> Fd:
        entry = self._fd(ev)
        if entry.sock.conn is None:
            raise SysError("ENOTCONN")
        return entry

    async def _sys_write(self, ev: ast.SyscallEvent) -> int:
        entry = self._conn_fd(ev)
        data = self._payload(ev)
        conn = entry.sock.conn
        assert conn is not None
        if entry.nonblocking:
            if conn.is_open_for_send and conn.send_space == 0:
                raise SysError("EAGAIN")
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
            raise SysError("EAGAIN")
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


def check_result(ev: ast.SyscallEvent, task: asyncio.Task[int]) -> None:
    """The call's outcome against the script's `= RESULT [ERRNO]`: a mismatch fails the script."""
    exc = task.exception()
    if isinstance(exc, ScriptFailed):
        raise exc
    want = f"{ev.result}" + (f" {ev.errno}" if ev.errno else "")
    if isinstance(exc, SysError):
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


def _same_errno(written: str, got: str) -> bool:
    """EWOULDBLOCK is EAGAIN (and EDEADLOCK is EDEADLK): compare the numbers behind the names."""
    return written == got or getattr(errno, written, None) == getattr(errno, got, 0)


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed non-blocking connect is reported through SO_ERROR


def _struct_fields(text: str) -> dict[str, int]:
    return {k: int(v, 0) for k, v in re.findall(r"(\w+)\s*=\s*(-?(?:0x[0-9a-fA-F]+|\d+))", text)}
