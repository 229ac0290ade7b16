"""Echo: a server that returns every byte until the peer half-closes, and a verifying client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lab.node.apps import payload
from lab.node.apps.net import AppServer, Net, close_writer

READ_SIZE = 65536
_PEER_GONE = (ConnectionError, BrokenPipeError, asyncio.IncompleteReadError)


class EchoServerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "0.0.0.0"
    port: int = Field(default=7, ge=0, le=65535)


class EchoClientOptions(BaseModel):
    """What to send: exactly one of message, size (deterministic payload) or file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str
    port: int = Field(default=7, ge=1, le=65535)
    message: str | None = None
    size: int | None = Field(default=None, ge=0)
    file: Path | None = None
    seed: int = 0
    chunk_size: int = Field(default=16384, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> EchoClientOptions:
        given = [n for n in ("message", "size", "file") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of message, size, file (got {', '.join(given)})")
        return self


@dataclasses.dataclass(frozen=True)
class EchoResult:
    bytes_sent: int
    bytes_received: int
    ok: bool
    connect_time: float
    rtt: float
    """Seconds from the first byte written to the last byte read back (loop time)."""
    first_mismatch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class EchoServer(AppServer):
    """A running echo server; `connections` counts accepted connections."""

    async def start(self, net: Net, host: str, port: int) -> EchoServer:
        await self.listen(net, host, port)
        return self

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Echo until the peer half-closes; the base then closes our side.
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()


async def run_server(net: Net, options: EchoServerOptions) -> None:
    """Serve until cancelled."""
    server = await EchoServer().start(net, options.host, options.port)
    await server.serve_forever()


def _message(options: EchoClientOptions) -> bytes:
    if options.message is not None:
        return options.message.encode()
    if options.file is not None:
        return options.file.read_bytes()
    return payload.payload(options.size if options.size is not None else 0, options.seed)


async def run_client(net: Net, options: EchoClientOptions) -> EchoResult:
    """Send the message, half-close, read everything back and compare."""
    data = _message(options)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reader, writer = await net.open_connection(options.host, options.port)
    t_connected = loop.time()

    async def send() -> None:
        # Send while receiving: a large message would otherwise fill both windows and deadlock.
        view = memoryview(data)
        for pos in range(0, len(data), options.chunk_size):
            writer.write(view[pos : pos + options.chunk_size])
            await writer.drain()
        writer.write_eof()

    received = bytearray()
    t_done = t_connected
    sender = asyncio.create_task(send())
    try:
        while chunk := await reader.read(READ_SIZE):
            received += chunk
        t_done = loop.time()
        await sender
    except _PEER_GONE:
        pass
    finally:
        if not sender.done():
            sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, *_PEER_GONE):
            await sender
        await close_writer(writer)

    mismatch: int | None = None
    if bytes(received) != data:
        common = min(len(received), len(data))
        mismatch = next((i for i in range(common) if received[i] != data[i]), common)
    return EchoResult(
        bytes_sent=len(data),
        bytes_received=len(received),
        ok=mismatch is None,
        connect_time=t_connected - t0,
        rtt=t_done - t_connected,
        first_mismatch=mismatch,
    )
