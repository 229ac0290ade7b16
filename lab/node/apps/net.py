"""The network interface applications are written against, and its kernel implementation.

`Net` is deliberately the shape of `asyncio.open_connection` / `asyncio.start_server`: the
stack offers the same two methods returning genuine `asyncio.StreamReader`/`StreamWriter`
objects, so an app never knows which TCP it runs on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

ClientConnectedCb = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@runtime_checkable
class ServerHandle(Protocol):
    """A listening server: the port it is bound to, and how to stop it."""

    @property
    def port(self) -> int: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


@runtime_checkable
class Net(Protocol):
    """Open connections and listen, asyncio-streams style."""

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...

    async def start_server(
        self, client_connected_cb: ClientConnectedCb, host: str, port: int
    ) -> ServerHandle: ...


class KernelServer:
    """Adapts `asyncio.Server` to `ServerHandle`."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        # Port 0 asks the kernel for an ephemeral port: report the one it chose.
        self._port: int = server.sockets[0].getsockname()[1] if server.sockets else 0

    @property
    def port(self) -> int:
        return self._port

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()


class KernelNet:
    """`Net` over the host kernel's TCP (plain asyncio), for tests and for comparison."""

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    async def start_server(
        self, client_connected_cb: ClientConnectedCb, host: str, port: int
    ) -> KernelServer:
        server = await asyncio.start_server(client_connected_cb, host, port)
        return KernelServer(server)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a stream and wait for it, ignoring a peer that already went away."""
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


class AppServer:
    """Base for the apps' servers: listens on a Net, counts connections, and on close() stops
    listening and closes every open connection, so wait_closed() returns promptly."""

    def __init__(self) -> None:
        self.connections = 0
        """Connections accepted so far."""
        self._handle: ServerHandle | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection (the base closes the writer afterwards)."""
        raise NotImplementedError

    async def listen(self, net: Net, host: str, port: int) -> None:
        self._handle = await net.start_server(self._on_connection, host, port)

    @property
    def port(self) -> int:
        assert self._handle is not None, "server not started"
        return self._handle.port

    @property
    def active(self) -> int:
        return len(self._writers)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        for writer in self._writers:
            writer.close()  # the handler then sees EOF or a reset and finishes on its own

    async def wait_closed(self) -> None:
        if self._handle is not None:
            await self._handle.wait_closed()
        await self._idle.wait()

    async def serve_forever(self) -> None:
        """Run until cancelled, then close everything."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self.close()
            await self.wait_closed()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        self._idle.clear()
        try:
            await self.handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the peer went away: nothing to answer
        finally:
            self._writers.discard(writer)
            await close_writer(writer)
            if not self._writers:
                self._idle.set()
