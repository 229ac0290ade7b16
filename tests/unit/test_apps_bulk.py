"""Bulk transfer over the kernel's TCP on loopback: both directions, parallel streams, digests."""

from __future__ import annotations

import asyncio

import pytest

from lab.node.apps import payload
from lab.node.apps.bulk import (
    BulkClientOptions,
    BulkError,
    BulkResult,
    BulkServer,
    BulkServerOptions,
    Plan,
    run_client,
)
from lab.node.apps.net import KernelNet

HOST = "127.0.0.1"


def test_both_directions_at_once_with_parallel_streams() -> None:
    async def main() -> tuple[BulkResult, BulkResult, BulkServer]:
        net = KernelNet()
        server = await BulkServer(BulkServerOptions(host=HOST, port=0)).start(net)
        try:
            up = BulkClientOptions(host=HOST, port=server.port, direction="send", bytes=3_000_001, streams=3)
            down = BulkClientOptions(host=HOST, port=server.port, direction="recv", bytes=2_000_000, seed=10)
            sent, received = await asyncio.wait_for(
                asyncio.gather(run_client(net, up), run_client(net, down)), 30
            )
        finally:
            server.close()
            await server.wait_closed()
        return sent, received, server

    sent, received, server = asyncio.run(main())
    assert sent.verified and sent.bytes == 3_000_001 and len(sent.streams) == 3
    assert [s.bytes for s in sent.streams] == [1_000_001, 1_000_000, 1_000_000]
    assert all(s.role == "sender" and s.goodput_bps > 0 for s in sent.streams)
    assert sent.streams[1].sha256 == payload.sha256(1_000_000, seed=1)
    assert received.verified and received.bytes == 2_000_000
    assert received.streams[0].role == "receiver"
    assert received.streams[0].sha256 == payload.sha256(2_000_000, seed=10)
    # The server's own view: three verified receptions, one send.
    assert server.connections == 4
    assert sorted(r.role for r in server.results) == ["receiver", "receiver", "receiver", "sender"]
    assert all(r.verified for r in server.results)
    assert received.to_dict()["streams"][0]["stats"] is None


def test_without_digests_the_byte_check_alone_verifies_both_directions() -> None:
    async def main() -> tuple[BulkResult, BulkResult, BulkResult, BulkServer]:
        net = KernelNet()
        server = await BulkServer(BulkServerOptions(host=HOST, port=0, digest=False)).start(net)
        try:
            up = BulkClientOptions(host=HOST, port=server.port, bytes=1_000_003, digest=False)
            down = BulkClientOptions(host=HOST, port=server.port, direction="recv", bytes=700_000,
                                     digest=False)
            # A client that wants a digest from a server that took none still gets a verdict.
            wants = BulkClientOptions(host=HOST, port=server.port, bytes=300_000)
            return (*await asyncio.wait_for(asyncio.gather(
                run_client(net, up), run_client(net, down), run_client(net, wants)), 30), server)
        finally:
            server.close()
            await server.wait_closed()

    up, down, wants, server = asyncio.run(main())
    assert up.verified and up.bytes == 1_000_003 and up.streams[0].sha256 == "-"
    assert down.verified and down.bytes == 700_000 and down.streams[0].sha256 == "-"
    assert wants.verified and wants.streams[0].sha256 == "-"
    assert all(r.verified and r.sha256 == "-" for r in server.results) and len(server.results) == 3


def test_timed_transfer_and_stats_callback() -> None:
    seen: list[object] = []

    def conn_stats(writer: asyncio.StreamWriter) -> dict[str, object] | None:
        seen.append(writer)
        return {"peer": writer.get_extra_info("peername")[0]}

    async def main() -> BulkResult:
        net = KernelNet()
        server = await BulkServer(BulkServerOptions(host=HOST, port=0)).start(net)
        try:
            opts = BulkClientOptions(host=HOST, port=server.port, direction="recv", seconds=0.05, streams=2)
            return await asyncio.wait_for(run_client(net, opts, conn_stats=conn_stats), 30)
        finally:
            server.close()
            await server.wait_closed()

    result = asyncio.run(main())
    assert result.verified and result.bytes > 0 and len(seen) == 2
    assert all(s.stats == {"peer": HOST} for s in result.streams)


def test_server_refuses_a_bad_opening_line() -> None:
    async def main() -> bytes:
        net = KernelNet()
        server = await BulkServer(BulkServerOptions(host=HOST, port=0)).start(net)
        try:
            reader, writer = await net.open_connection(HOST, server.port)
            writer.write(b"GET / HTTP/1.1\r\n")
            reply = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            await writer.wait_closed()
            return reply
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()).startswith(b"ERR ")


def test_plan_line_round_trips_and_rejects_nonsense() -> None:
    plan = Plan("recv", None, 2.5, 7)
    assert Plan.parse(plan.line()) == plan
    for bad in (
        b"TCPLAB-BULK/1 send 10 1.0 0\n",
        b"TCPLAB-BULK/1 both 10 - 0\n",
        b"TCPLAB-BULK/1 send x - 0\n",
    ):
        with pytest.raises(BulkError):
            Plan.parse(bad)
