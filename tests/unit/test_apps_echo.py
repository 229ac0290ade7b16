"""Echo server and client over the kernel's TCP on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lab.node.apps.echo import EchoClientOptions, EchoResult, EchoServer, run_client
from lab.node.apps.net import KernelNet, Net, ServerHandle

HOST = "127.0.0.1"


async def _with_server(clients: list[EchoClientOptions]) -> tuple[list[EchoResult], EchoServer]:
    net = KernelNet()
    server = await EchoServer().start(net, HOST, 0)
    try:
        opts = [o.model_copy(update={"port": server.port}) for o in clients]
        results = await asyncio.gather(*(run_client(net, o) for o in opts))
    finally:
        server.close()
        await server.wait_closed()
    return list(results), server


def test_kernel_net_satisfies_the_protocols() -> None:
    async def main() -> None:
        net = KernelNet()
        assert isinstance(net, Net)
        server = await EchoServer().start(net, HOST, 0)
        assert isinstance(server._handle, ServerHandle) and server.port > 0
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_echo_one_byte() -> None:
    (result,), server = asyncio.run(_with_server([EchoClientOptions(host=HOST, message="x")]))
    assert result.ok and result.bytes_sent == result.bytes_received == 1
    assert result.rtt >= 0 and result.connect_time >= 0
    assert server.connections == 1 and server.active == 0


def test_echo_one_megabyte() -> None:
    (result,), _ = asyncio.run(_with_server([EchoClientOptions(host=HOST, size=1_000_000, seed=9)]))
    assert result.ok and result.bytes_received == 1_000_000 and result.first_mismatch is None
    assert result.to_dict()["bytes_sent"] == 1_000_000


def test_echo_file(tmp_path: Path) -> None:
    f = tmp_path / "msg.bin"
    f.write_bytes(bytes(range(256)) * 100)
    (result,), _ = asyncio.run(_with_server([EchoClientOptions(host=HOST, file=f)]))
    assert result.ok and result.bytes_received == 25_600


def test_fifty_concurrent_clients() -> None:
    clients = [EchoClientOptions(host=HOST, size=20_000 + i, seed=i) for i in range(50)]
    results, server = asyncio.run(_with_server(clients))
    assert all(r.ok for r in results)
    assert [r.bytes_received for r in results] == [20_000 + i for i in range(50)]
    assert server.connections == 50


def test_close_ends_open_connections() -> None:
    async def main() -> None:
        net = KernelNet()
        server = await EchoServer().start(net, HOST, 0)
        reader, writer = await net.open_connection(HOST, server.port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        server.close()
        await server.wait_closed()  # returns although the client never half-closed
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()

    asyncio.run(main())
