"""An application API shaped like Python's `socket`, on the stack.

`Stack` wraps a running host (a `StackRuntime`): `stack.socket()` gives a `Socket` with the
familiar blocking methods, `stack.open_connection`/`stack.start_server` give asyncio streams.
Every blocking method has an `async` twin (`aconnect`, `arecv`, ...) that the blocking one runs:

- on the simulated network (loop not running, same thread) with `loop.run_until_complete`, so a
  plain script drives virtual time by blocking;
- on a lab node (the loop runs in its own thread) with `run_coroutine_threadsafe`.

Errors are the familiar ones: ConnectionRefusedError (RST to our SYN), ConnectionResetError,
TimeoutError (settimeout, retransmission or keepalive limits), BrokenPipeError.

Urgent data: `send(data, MSG_OOB)` queues `data` in the stream as usual and marks all of it
urgent: the segments that carry it (and any sent before it) have URG set, and the urgent pointer
points to the octet just after the last urgent octet (RFC 6093; SEG.SEQ + pointer). The receiver
gets urgent data inline, in order, with the rest of the stream, as Linux does with SO_OOBINLINE:
no octet is taken out of band, and the `flags` of `recv` other than MSG_PEEK are ignored (MSG_OOB
included); MSG_PEEK returns the data without consuming it. The only
trace of urgency on the receiving side is `sock.conn.urgent_mark`: how many octets the
application still has to read before the last urgent one (None when no urgent data is pending).

IPv6: `stack.socket(AF_INET6)` makes an IPv6 socket; its addresses are Python's 4-tuples
(host, port, flowinfo, scope_id). A listening socket of either family accepts clients of both
families (one listener per port serves the host), the way a Linux socket bound to `::` with
IPV6_V6ONLY off does; an AF_INET6 socket names an IPv4 peer as "::ffff:10.0.0.1" (RFC 4291
2.5.5.2) and may connect to such a mapped address (or a name of an IPv4 address), which goes over
IPv4. An address literal whose family is not the socket's is refused with EAFNOSUPPORT.
"""

from __future__ import annotations

import asyncio
import errno
import socket as _pysocket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from stack import sockopts
from stack.config import TcpConfig
from stack.driver import StackRuntime
from stack.inet import AF_INET, AF_INET6, canonical, is_ipv6, mapped
from stack.streams import ClientConnected, StackServer, open_connection, start_server, wait_connected
from stack.tcp import congestion
from stack.tcp.connection import TcpConnection
from stack.tcp.listener import Listener
from stack.tcp.state import State

_T = TypeVar("_T")

# The option names applications know, from Python's socket module.
SOL_SOCKET = _pysocket.SOL_SOCKET
IPPROTO_TCP = _pysocket.IPPROTO_TCP
SO_KEEPALIVE = _pysocket.SO_KEEPALIVE
SO_LINGER = _pysocket.SO_LINGER
SO_SNDBUF = _pysocket.SO_SNDBUF
SO_RCVBUF = _pysocket.SO_RCVBUF
SO_REUSEADDR = _pysocket.SO_REUSEADDR
SO_ERROR = _pysocket.SO_ERROR
TCP_NODELAY = _pysocket.TCP_NODELAY
TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = sockopts.TCP_KEEPIDLE, sockopts.TCP_KEEPINTVL, sockopts.TCP_KEEPCNT
TCP_KEEPINIT, TCP_NOOPT = sockopts.TCP_KEEPINIT, sockopts.TCP_NOOPT  # FreeBSD's (stack.sockopts)
TCP_CONGESTION = getattr(_pysocket, "TCP_CONGESTION", 13)
MSG_OOB = _pysocket.MSG_OOB
MSG_PEEK = _pysocket.MSG_PEEK
SHUT_RD = _pysocket.SHUT_RD
SHUT_WR = _pysocket.SHUT_WR
SHUT_RDWR = _pysocket.SHUT_RDWR
Address = tuple[str, int] | tuple[str, int, int, int]  # AF_INET, AF_INET6


class Stack:
    """The application's view of one host of the stack."""

    def __init__(
        self, runtime: StackRuntime, names: dict[str, str] | None = None,
        names6: dict[str, str] | None = None,
    ) -> None:
        self.runtime = runtime
        self.names = dict(names or {})  # node name -> address, so apps can say "server"
        self.names6 = dict(names6 or {})  # node name -> IPv6 address

    @property
    def address(self) -> str:
        return self.runtime.host.address

    @property
    def address6(self) -> str | None:
        return self.runtime.host.address6

    def resolve(self, host: str, family: int = 0) -> str:
        """A node name or an address literal ("10.0.0.2", "fd00::2", "[fd00::2]") to the
        canonical address; ValueError (one line) for anything else. A name with addresses of
        both families gives the IPv4 one, or the IPv6 one when family is AF_INET6."""
        if family == AF_INET6:
            return canonical(self.names6.get(host) or self.names.get(host, host))
        return canonical(self.names.get(host) or self.names6.get(host, host))

    def socket(self, family: int = AF_INET) -> Socket:
        return Socket(self, family)

    async def open_connection(
        self, host: str, port: int, *, limit: int = 2**16
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await open_connection(self.runtime, self.resolve(host), port, limit=limit)

    async def start_server(
        self, client_connected_cb: ClientConnected, host: str | None = None, port: int = 0,
        *, backlog: int = 128, limit: int = 2**16,
    ) -> StackServer:
        if host not in (None, "", "0.0.0.0", "::"):
            if self.resolve(host) not in (self.address, self.address6):
                raise OSError(errno.EADDRNOTAVAIL, f"Cannot assign requested address {host}")
        if port == 0:
            port = self.runtime.host.ephemeral_port("0.0.0.0", 0)
        return await start_server(self.runtime, client_connected_cb, port, backlog=backlog, limit=limit)

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run a coroutine on the stack's loop from blocking code (see the module docstring)."""
        loop = self.runtime.loop
        if loop.is_running():
            if getattr(loop, "_thread_id", None) == threading.get_ident():
                coro.close()
                raise RuntimeError("blocking socket call inside the stack's event loop: use the a* methods")
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
        return loop.run_until_complete(coro)


class Socket:
    """A TCP socket of the stack with the methods of Python's socket.socket."""

    def __init__(self, stack: Stack, family: int = AF_INET) -> None:
        if family not in (AF_INET, AF_INET6):
            raise OSError(errno.EAFNOSUPPORT, f"address family {family} not supported (AF_INET, AF_INET6)")
        if family == AF_INET6 and stack.address6 is None:
            raise OSError(errno.EAFNOSUPPORT, "this host has no IPv6 address")
        self.family = family
        self.stack = stack
        self.runtime = stack.runtime
        self.host = stack.runtime.host
        self._config: TcpConfig = self.host.config
        self._timeout: float | None = None
        self._port: int | None = None
        self.conn: TcpConnection | None = None
        self.listener: Listener | None = None
        self._keepalive = False
        self._linger_zero = False
        self._nodelay = not self._config.nagle
        self._closed = False

    # -- options

    def settimeout(self, value: float | None) -> None:
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        now = self.runtime.now()
        conn = self.conn
        if level == SOL_SOCKET and option == SO_REUSEADDR:
            return
        if level == SOL_SOCKET and option == SO_KEEPALIVE:
            self._keepalive = bool(value)
            if conn is not None:
                conn.set_keepalive(bool(value), now)
                self._after()  # the keepalive timer moved: the runtime must re-arm
            if self.listener is not None:
                self.listener.keepalive = bool(value)
        elif level == SOL_SOCKET and option == SO_LINGER:
            onoff, linger = struct.unpack("ii", value) if isinstance(value, bytes) else (int(value), 0)
            self._linger_zero = bool(onoff) and linger == 0
            if conn is not None:
                conn.linger_zero = self._linger_zero
        elif level == SOL_SOCKET and option in (SO_SNDBUF, SO_RCVBUF):
            size = value if isinstance(value, int) else int.from_bytes(value, 'little')
            name = "sndbuf" if option == SO_SNDBUF else "rcvbuf"
            self._config = self._config.with_(**{name: size, f"{name}_locked": True})
            if conn is not None:
                setattr(conn, name, size)
                setattr(conn, f"{name}_max", None)  # fixed from now on: autotuning stops
        elif level == IPPROTO_TCP and option == TCP_NODELAY:
            self._nodelay = bool(value)
            if conn is not None:
                conn.nodelay = bool(value)
                conn.output(now)
                self._after()
            if self.listener is not None:
                self.listener.nodelay = bool(value)
        elif (level, option) in sockopts.CONFIG_OPTIONS:
            self._config = sockopts.set_option(self._config, level, option, value)
            if self.listener is not None:  # for the connections it accepts from now on
                self.listener.config = sockopts.set_option(self.listener.config, level, option, value)
            if conn is not None:
                conn.config = sockopts.set_option(conn.config, level, option, value)
                conn.set_keepalive(conn.keepalive, now)  # re-armed, should the option be one of its
                self._after()
        elif level == IPPROTO_TCP and option == TCP_CONGESTION:
            name = value.decode() if isinstance(value, bytes) else str(value)
            if name not in congestion.available():  # as Linux: ENOENT for an unknown name
                raise OSError(errno.ENOENT, f"unknown congestion control {name!r}")
            self._config = self._config.with_(congestion_control=name)
            if conn is not None and conn.cc.name != name:
                # A connected socket switches at once (as Linux); the window carries over.
                conn.set_congestion_control(name, now)
        else:
            raise OSError(92, f"option ({level}, {option}) not supported by the stack")

    def getsockopt(self, level: int, option: int) -> int:
        conn = self.conn
        if level == SOL_SOCKET and option == SO_KEEPALIVE:
            return int(self._keepalive)
        if level == SOL_SOCKET and option == SO_SNDBUF:
            return conn.sndbuf if conn else self._config.sndbuf
        if level == SOL_SOCKET and option == SO_RCVBUF:
            return conn.rcvbuf if conn else self._config.rcvbuf
        if level == SOL_SOCKET and option == SO_ERROR:
            if conn is not None and conn.error is not None:
                err = conn.error
                return int(getattr(err, "errno", 0) or _errno_of(err))
            return 0
        if level == IPPROTO_TCP and option == TCP_NODELAY:
            return int(self._nodelay)
        if (level, option) in sockopts.CONFIG_OPTIONS:
            return sockopts.get_option(conn.config if conn is not None else self._config, level, option)
        if level == SOL_SOCKET and option == SO_LINGER:
            return int(self._linger_zero)
        raise OSError(92, f"option ({level}, {option}) not supported by the stack")

    # -- addresses

    def bind(self, address: Address) -> None:
        ip, port = address[0], address[1]
        if self.family == AF_INET:
            ours: tuple[str | None, ...] = ("", "0.0.0.0", self.host.address)
        else:
            ours = ("", "::", self.host.address6)
        if ip not in ours and (not ip or canonical(ip) not in ours):
            raise OSError(99, f"Cannot assign requested address {ip}")
        self._port = port or None
        if self._port is not None:  # a RST for the port carries our IP options (stack.closed_port)
            self.host.bind_port(self._port, self._own_config)

    def _own_config(self) -> TcpConfig:
        return self._config

    def _name(self, ip: str, port: int) -> Address:
        """An address as this socket's family spells it (see the module docstring)."""
        return (mapped(ip), port, 0, 0) if self.family == AF_INET6 else (ip, port)

    def getsockname(self) -> Address:
        if self.conn is not None:
            return self._name(self.conn.local_ip, self.conn.local_port)
        port = self.listener.port if self.listener is not None else self._port or 0
        return ("::", port, 0, 0) if self.family == AF_INET6 else (self.host.address, port)

    def getpeername(self) -> Address:
        if self.conn is None:
            raise OSError(107, "Transport endpoint is not connected")
        return self._name(self.conn.remote_ip, self.conn.remote_port)

    def _remote(self, name: str) -> str:
        """The address to connect to: of the socket's family, or on AF_INET6 an IPv4 address
        given mapped ("::ffff:10.0.0.2") or by name (as getaddrinfo's AI_V4MAPPED does)."""
        ip = self.stack.resolve(name, self.family)
        v4_mapped = self.family == AF_INET6 and not is_ipv6(ip) and name != ip
        if is_ipv6(ip) != (self.family == AF_INET6) and not v4_mapped:
            want = "AF_INET6" if is_ipv6(ip) else "AF_INET (or ::ffff:" + ip + " on AF_INET6)"
            raise OSError(errno.EAFNOSUPPORT, f"Address family not supported: {name} needs {want}")
        return ip

    def info(self) -> dict[str, object]:
        """The connection's ss-style information (state, queues, srtt, cwnd, ...)."""
        if self.conn is None:
            return {"state": "LISTEN" if self.listener else "CLOSED"}
        return self.conn.info()

    # -- the calls

    def listen(self, backlog: int = 128) -> None:
        port = self._port or self.host.ephemeral_port("0.0.0.0", 0)
        self.host.unbind_port(port, self._own_config)
        self.listener = self.host.listen(port, backlog, self._config)
        self.listener.keepalive = self._keepalive
        self.listener.nodelay = self._nodelay

    def _setup(self, conn: TcpConnection) -> None:
        conn.nodelay = self._nodelay
        conn.linger_zero = self._linger_zero
        conn.keepalive = self._keepalive

    async def aconnect(self, address: Address) -> None:
        ip, port = self._remote(address[0]), address[1]
        conn = self.host.connect(ip, port, self.runtime.now(),
                                 local_port=self._port, config=self._config, setup=self._setup)
        self.conn = conn
        self.host.unbind_port(conn.local_port, self._own_config)
        self.runtime.pump()
        await self._with_timeout(wait_connected(self.runtime, conn))

    def connect(self, address: Address) -> None:
        self.stack.run(self.aconnect(address))

    async def aaccept(self) -> tuple[Socket, Address]:
        listener = self.listener
        if listener is None:
            raise OSError(22, "Invalid argument: socket is not listening")

        async def wait() -> TcpConnection:
            while True:
                conn = listener.accept()
                if conn is not None:
                    return conn
                if listener.closed:
                    raise OSError(22, "listener closed")
                await self.runtime.wait_for_change(listener)

        conn = await self._with_timeout(wait())
        child = Socket(self.stack, self.family)
        child.conn = conn
        child._config = conn.config
        child._nodelay = conn.nodelay
        child._keepalive = conn.keepalive
        child._linger_zero = self._linger_zero
        conn.linger_zero = self._linger_zero
        if conn.keepalive:
            conn.set_keepalive(True, self.runtime.now())
            self._after(conn)
        return child, self._name(conn.remote_ip, conn.remote_port)

    def accept(self) -> tuple[Socket, Address]:
        return self.stack.run(self.aaccept())

    async def asend(self, data: bytes | bytearray | memoryview, flags: int = 0) -> int:
        conn = self._require_conn()
        view = memoryview(bytes(data)) if not isinstance(data, bytes) else memoryview(data)

        async def wait() -> int:
            while True:
                n = conn.send(view, self.runtime.now(), urgent=bool(flags & MSG_OOB))
                self._after()
                if n or not view:
                    return n
                await self.runtime.wait_for_change(conn)

        return await self._with_timeout(wait())

    def send(self, data: bytes | bytearray | memoryview, flags: int = 0) -> int:
        return self.stack.run(self.asend(data, flags))

    async def asendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        view = memoryview(bytes(data))
        while view:
            n = await self.asend(view, flags)
            view = view[n:]

    def sendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        self.stack.run(self.asendall(data, flags))

    async def arecv(self, bufsize: int, flags: int = 0) -> bytes:
        conn = self._require_conn()

        async def wait() -> bytes:
            while True:
                if conn.readable and flags & MSG_PEEK:
                    return conn.rcvq.read(0, bufsize)  # left queued: no window update either
                if conn.readable:
                    data = conn.recv(bufsize, self.runtime.now())
                    self._after()
                    return data
                if conn.at_eof or conn.read_shut:
                    return b""  # after shutdown(SHUT_RD): 0 at once, as Linux and the BSDs
                if conn.error is not None:
                    raise type(conn.error)(*conn.error.args)
                if conn.state is State.CLOSED:
                    return b""
                await self.runtime.wait_for_change(conn)

        return await self._with_timeout(wait())

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self.stack.run(self.arecv(bufsize, flags))

    def shutdown(self, how: int) -> None:
        conn = self._require_conn()
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise OSError(22, f"Invalid argument: shutdown how={how}")
        if how in (SHUT_RD, SHUT_RDWR):
            conn.shutdown_read(self.runtime.now())
        if how in (SHUT_WR, SHUT_RDWR):
            conn.shutdown(self.runtime.now())
        self._after()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        now = self.runtime.now()
        if self._port is not None:
            self.host.unbind_port(self._port, self._own_config)
        if self.listener is not None:
            self.host.close_listener(self.listener, now)
            self.runtime.pump()
        if self.conn is not None:
            self.conn.close(now)
            self._after()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers

    def _require_conn(self) -> TcpConnection:
        if self.conn is None:
            raise OSError(107, "Transport endpoint is not connected")
        return self.conn

    def _after(self, conn: TcpConnection | None = None) -> None:
        c = conn or self.conn
        if c is not None:
            self.host.app_call(c)
        self.runtime.pump()

    async def _with_timeout(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._timeout is None:
            return await coro
        try:
            return await asyncio.wait_for(coro, self._timeout)
        except TimeoutError:
            raise TimeoutError("timed out") from None


def _errno_of(err: BaseException) -> int:
    codes: dict[type[BaseException], int] = {
        ConnectionRefusedError: errno.ECONNREFUSED,
        ConnectionResetError: errno.ECONNRESET,
        TimeoutError: errno.ETIMEDOUT,
        ConnectionAbortedError: errno.ECONNABORTED,
    }
    return codes.get(type(err), errno.EIO)
