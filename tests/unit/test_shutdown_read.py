"""shutdown(SHUT_RD) in the streams API and the socket API, on the simulated network.

After it, a read returns what was queued and then EOF at once instead of waiting; data that
arrives later stays unread in the connection, as on Linux.
"""

from __future__ import annotations

import asyncio
import socket

from stack.config import TcpConfig
from stack.sim.network import Network
from stack.socket import SHUT_RD, Stack


def _pair(net: Network) -> tuple[Stack, Stack]:
    a = net.add_host("a", "10.0.0.1", config=TcpConfig())
    b = net.add_host("b", "10.0.0.2", config=TcpConfig())
    net.connect("a", "b")
    return Stack(a.runtime), Stack(b.runtime)


def test_streams_shutdown_read_gives_eof_at_once_and_later_data_stays_unread() -> None:
    with Network(1) as net:
        sa, sb = _pair(net)
        got: list[bytes] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"first")
            await writer.drain()
            await asyncio.sleep(1.0)
            writer.write(b"later")
            await writer.drain()
            await asyncio.sleep(1.0)
            writer.close()

        async def main() -> None:
            server = await sb.start_server(serve, port=9)
            reader, writer = await sa.open_connection("10.0.0.2", 9)
            got.append(await reader.readexactly(5))
            writer.transport.shutdown(socket.SHUT_RD)  # type: ignore[attr-defined]
            got.append(await asyncio.wait_for(reader.read(100), 0.001))  # EOF now, not later
            await asyncio.sleep(1.5)
            conn = writer.get_extra_info("tcp_connection")
            got.append(bytes([conn.readable]))  # "later" arrived and waits in the connection
            writer.close()
            server.close()

        net.run(main(), timeout=60)
    assert got == [b"first", b"", bytes([5])]


def test_socket_shutdown_read_returns_queued_data_then_zero_without_blocking() -> None:
    with Network(2) as net:
        sa, sb = _pair(net)
        got: list[bytes] = []

        async def main() -> None:
            lsock = sb.socket()
            lsock.bind(("10.0.0.2", 9))
            lsock.listen(1)
            client = sa.socket()
            await client.aconnect(("10.0.0.2", 9))
            server, _ = await lsock.aaccept()
            await server.asendall(b"queued")
            await asyncio.sleep(0.5)
            client.shutdown(SHUT_RD)
            got.append(await client.arecv(100))
            got.append(await asyncio.wait_for(client.arecv(100), 0.001))
            client.close()
            server.close()
            lsock.close()

        net.run(main(), timeout=60)
    assert got == [b"queued", b""]
