"""Bulk transfer in the spirit of iperf: N bytes or T seconds, several streams, either way.

Wire protocol, per connection. The client opens with one line:

    TCPLAB-BULK/1 <send|recv> <bytes|-> <seconds|-> <seed>\\n

`send`: the client sends the payload and half-closes; the server verifies it and answers
`OK <bytes> <sha256> <first-mismatch|->\\n`. `recv`: the server sends the payload and half-closes;
the client verifies it. The payload is `lab.node.apps.payload` stream `seed`, so the receiver checks
every byte at its offset and its digest. Time is the loop's (virtual on the simulated network).

`digest: false` (an option of either app, for the side that receives) leaves the SHA-256 out: the
receiver still compares every byte with the pattern at its offset, which alone proves the stream
right, and answers `-` for the digest. The benchmarks use it: hashing gigabytes cost a third of
the receiving daemon's CPU (measured with perf), a figure of hashlib's, not of TCP's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lab.node.apps import payload
from lab.node.apps.net import AppServer, Net, close_writer

MAGIC = "TCPLAB-BULK/1"
READ_SIZE = 65536
DEFAULT_BYTES = 10_000_000
ConnStats = Callable[[asyncio.StreamWriter], dict[str, object] | None]
Direction = Literal["send", "recv"]


class BulkError(Exception):
    """The peer refused the transfer or broke the protocol."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one connection carries, as announced in the opening line."""

    direction: Direction
    nbytes: int | None
    seconds: float | None
    seed: int

    def line(self) -> bytes:
        n = "-" if self.nbytes is None else str(self.nbytes)
        t = "-" if self.seconds is None else repr(self.seconds)
        return f"{MAGIC} {self.direction} {n} {t} {self.seed}\n".encode()

    @classmethod
    def parse(cls, line: bytes) -> Plan:
        parts = line.decode("ascii", "replace").split()
        if len(parts) != 5 or parts[0] != MAGIC or parts[1] not in ("send", "recv"):
            raise BulkError(f"bad opening line {line[:80]!r}")
        try:
            nbytes = None if parts[2] == "-" else int(parts[2])
            seconds = None if parts[3] == "-" else float(parts[3])
            seed = int(parts[4])
        except ValueError:
            raise BulkError(f"bad number in {line[:80]!r}") from None
        if (nbytes is None) == (seconds is None) or (nbytes or 0) < 0 or (seconds or 0) < 0:
            raise BulkError("give exactly one of bytes and seconds, not negative")
        return cls(parts[1], nbytes, seconds, seed)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class BulkStreamResult:
    """One connection, seen from the side that reports it."""

    stream: int
    role: Literal["sender", "receiver"]
    bytes: int
    duration: float
    goodput_bps: float
    """Payload bits per second over duration."""
    sha256: str
    """Of the stream; "-" when the receiving side took none (`digest: false`)."""
    verified: bool
    detail: str = ""
    """Why verification failed, empty when it passed."""
    stats: dict[str, object] | None = None
    """Transport statistics from the caller's conn_stats callback (retransmissions, srtt, cwnd)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BulkResult:
    direction: Direction
    streams: list[BulkStreamResult]
    bytes: int
    duration: float
    goodput_bps: float
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _goodput(nbytes: int, duration: float) -> float:
    return nbytes * 8 / duration if duration > 0 else 0.0


async def _send_payload(writer: asyncio.StreamWriter, plan: Plan, chunk_size: int) -> int:
    """Write the plan's payload (N bytes, or for T seconds) and half-close; return the bytes sent.
    Their digest is `payload.sha256(sent, seed)`: the sender takes it once the transfer is over,
    not on the way (hashing as it sends was a tenth of an offload sender's CPU)."""
    loop = asyncio.get_running_loop()
    size = max(1, min(chunk_size, payload.PERIOD))
    sent = 0
    deadline = None if plan.seconds is None else loop.time() + plan.seconds
    while True:
        if deadline is not None:
            if loop.time() >= deadline:
                break
            length = size
        else:
            assert plan.nbytes is not None
            length = min(size, plan.nbytes - sent)
            if length <= 0:
                break
        writer.write(payload.window(sent, length, plan.seed))
        sent += length
        await writer.drain()
    writer.write_eof()
    return sent


async def _receive_payload(reader: asyncio.StreamReader, seed: int, digest: bool
                           ) -> tuple[payload.PayloadVerifier, float]:
    """Read and verify (and hash, with digest) until EOF; return the verifier and the loop time
    of the first byte."""
    loop = asyncio.get_running_loop()
    verifier = payload.PayloadVerifier(seed, digest)
    t_first: float | None = None
    while data := await reader.read(READ_SIZE):
        if t_first is None:
            t_first = loop.time()
        verifier.feed(data)
    return verifier, loop.time() if t_first is None else t_first


def _mismatch_detail(verifier: payload.PayloadVerifier, expected_bytes: int | None) -> str:
    if verifier.first_mismatch is not None:
        return f"wrong byte at offset {verifier.first_mismatch}"
    if expected_bytes is not None and verifier.offset != expected_bytes:
        return f"received {verifier.offset} bytes, expected {expected_bytes}"
    digest = verifier.hexdigest()
    if expected_bytes is None or digest == payload.NO_DIGEST:  # (no digest to check: the byte check stands)
        return ""
    if digest != payload.sha256(expected_bytes, verifier.seed):
        return "digest mismatch"
    return ""


class BulkServerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "0.0.0.0"
    port: int = Field(default=5201, ge=0, le=65535)
    chunk_size: int = Field(default=65536, ge=1, le=payload.PERIOD)
    digest: bool = True
    """Hash what is received (SHA-256, in the OK line); false: the byte check alone (module docstring)."""


class BulkServer(AppServer):
    """Serves any number of bulk connections; `results` holds the server's view of each."""

    def __init__(self, options: BulkServerOptions, conn_stats: ConnStats | None = None) -> None:
        super().__init__()
        self.options = options
        self.conn_stats = conn_stats
        self.results: list[BulkStreamResult] = []

    async def start(self, net: Net) -> BulkServer:
        await self.listen(net, self.options.host, self.options.port)
        return self

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        stream = self.connections - 1
        try:
            plan = Plan.parse(await reader.readline())
        except (BulkError, ValueError) as exc:  # ValueError: line over the reader's limit
            writer.write(f"ERR {exc}\n".encode())
            await writer.drain()
            return
        if plan.direction == "send":
            verifier, t_first = await _receive_payload(reader, plan.seed, self.options.digest)
            t_end = loop.time()
            first = "-" if verifier.first_mismatch is None else str(verifier.first_mismatch)
            writer.write(f"OK {verifier.offset} {verifier.hexdigest()} {first}\n".encode())
            await writer.drain()
            detail = _mismatch_detail(verifier, plan.nbytes)
            nbytes, digest, duration = verifier.offset, verifier.hexdigest(), t_end - t_first
            role: Literal["sender", "receiver"] = "receiver"
        else:
            t_start = loop.time()
            nbytes = await _send_payload(writer, plan, self.options.chunk_size)
            await reader.read()  # the client closes once it has everything
            duration, detail, role = loop.time() - t_start, "", "sender"
            digest = payload.sha256(nbytes, plan.seed) if self.options.digest else payload.NO_DIGEST
        stats = self.conn_stats(writer) if self.conn_stats is not None else None
        self.results.append(
            BulkStreamResult(
                stream,
                role,
                nbytes,
                duration,
                _goodput(nbytes, duration),
                digest,
                detail == "",
                detail,
                stats,
            )
        )


async def run_server(net: Net, options: BulkServerOptions) -> None:
    """Serve until cancelled."""
    server = await BulkServer(options).start(net)
    await server.serve_forever()


class BulkClientOptions(BaseModel):
    """Total bytes (split over the streams) or a duration per stream; bytes by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str
    port: int = Field(default=5201, ge=1, le=65535)
    direction: Direction = "send"
    """send: the client sends to the server; recv: the server sends to the client."""
    bytes: int | None = Field(default=None, ge=0)
    seconds: float | None = Field(default=None, gt=0)
    streams: int = Field(default=1, ge=1, le=256)
    seed: int = Field(default=0, ge=0)
    chunk_size: int = Field(default=65536, ge=1, le=payload.PERIOD)
    digest: bool = True
    """Hash what is received (recv) or compare digests with the server (send); false: the byte
    check alone (module docstring)."""

    @model_validator(mode="after")
    def _bytes_or_seconds(self) -> BulkClientOptions:
        if self.bytes is not None and self.seconds is not None:
            raise ValueError("give bytes or seconds, not both")
        return self


async def _client_stream(
    net: Net, options: BulkClientOptions, index: int, plan: Plan, conn_stats: ConnStats | None
) -> BulkStreamResult:
    loop = asyncio.get_running_loop()
    reader, writer = await net.open_connection(options.host, options.port)
    try:
        t_start = loop.time()
        writer.write(plan.line())
        if plan.direction == "send":
            nbytes = await _send_payload(writer, plan, options.chunk_size)
            reply = (await reader.readline()).decode("ascii", "replace").split()
            duration = loop.time() - t_start
            if len(reply) != 4 or reply[0] != "OK":
                raise BulkError(f"server answered {' '.join(reply)!r}")
            # A digest is compared only when both ends take one; the server's byte check stands alone.
            took = options.digest and reply[2] != payload.NO_DIGEST
            digest = payload.sha256(nbytes, plan.seed) if took else payload.NO_DIGEST
            detail = ""
            if reply[3] != "-":
                detail = f"server saw a wrong byte at offset {reply[3]}"
            elif int(reply[1]) != nbytes or (took and reply[2] != digest):
                detail = f"server received {reply[1]} bytes digest {reply[2]}, sent {nbytes} {digest}"
            role: Literal["sender", "receiver"] = "sender"
        else:
            await writer.drain()
            verifier, _ = await _receive_payload(reader, plan.seed, options.digest)
            duration = loop.time() - t_start
            if verifier.offset == 0 and plan.nbytes != 0:
                raise BulkError("server sent nothing (refused?)")
            nbytes, digest = verifier.offset, verifier.hexdigest()
            detail, role = _mismatch_detail(verifier, plan.nbytes), "receiver"
        stats = conn_stats(writer) if conn_stats is not None else None
    finally:
        await close_writer(writer)
    return BulkStreamResult(
        index, role, nbytes, duration, _goodput(nbytes, duration), digest, detail == "", detail, stats
    )


async def run_client(net: Net, options: BulkClientOptions, conn_stats: ConnStats | None = None) -> BulkResult:
    """Run options.streams parallel connections; conn_stats(writer), if given, fills `stats`."""
    total = options.bytes
    if total is None and options.seconds is None:
        total = DEFAULT_BYTES
    plans = []
    for i in range(options.streams):
        share = None if total is None else total // options.streams + (i < total % options.streams)
        plans.append(Plan(options.direction, share, options.seconds, options.seed + i))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tasks = [asyncio.create_task(_client_stream(net, options, i, p, conn_stats)) for i, p in enumerate(plans)]
    try:
        streams = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
    duration = loop.time() - t0
    nbytes = sum(s.bytes for s in streams)
    return BulkResult(
        options.direction,
        list(streams),
        nbytes,
        duration,
        _goodput(nbytes, duration),
        all(s.verified for s in streams),
    )
