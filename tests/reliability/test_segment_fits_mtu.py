"""A full-sized data segment that also carries SACK blocks still fits the path MTU: the blocks
come out of the payload (RFC 6691: the MSS counts no options), never past the link's 1500 bytes."""

from __future__ import annotations

import asyncio

import pytest

from stack.config import TcpConfig
from stack.sim.link import LinkProfile
from stack.sim.network import Network
from stack.socket import Stack
from stack.trace import MemorySink, PacketEvent, SegmentEvent, Trace

from . import helpers

pytestmark = pytest.mark.usefixtures("family")  # over IPv4 and over IPv6


@pytest.mark.parametrize("timestamps", [True, False])
def test_echo_over_a_lossy_link_never_sends_an_oversized_packet(timestamps: bool) -> None:
    config = TcpConfig(timestamps=timestamps)
    sinks = {"a": MemorySink(), "b": MemorySink()}
    with Network(seed=11) as net:
        a = net.add_host("a", "10.0.0.1", config=config, trace=Trace([sinks["a"]]), address6="fd00::1")
        b = net.add_host("b", "10.0.0.2", config=config, trace=Trace([sinks["b"]]), address6="fd00::2")
        # The link itself refuses anything over 1500 bytes, as a real one with DF would.
        net.connect("a", "b", LinkProfile(delay=0.005, loss=0.05, reorder=0.05, mtu=1500))
        payload = bytes(range(256)) * 4000

        async def main() -> bytes:
            async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                writer.close()

            await Stack(b.runtime).start_server(echo, port=7)
            reader, writer = await Stack(a.runtime).open_connection(helpers.peer_addr(), 7)
            writer.write(payload)
            writer.write_eof()
            back = await reader.read()
            writer.close()
            return back

        assert net.run(main(), timeout=600) == payload
    for name, sink in sinks.items():
        sizes = [len(e.data) for e in sink.of(PacketEvent) if e.direction == "out"]
        assert max(sizes) <= 1500, f"{name} sent {max(sizes)}-byte packets"
        assert max(sizes) > 1400, f"{name} never sent a full-sized packet"
        sacked_full = [e for e in sink.of(SegmentEvent)
                       if e.direction == "out" and "sack" in e.options and e.len > 1000]
        assert sacked_full, f"{name}: the run never put SACK blocks on a data segment"
