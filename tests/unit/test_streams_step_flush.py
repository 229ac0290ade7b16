"""The writes of one loop step on the stack's asyncio streams: every transport's writes of the step
are sent together at its end, in the order the transports wrote, on the simulated network."""

from __future__ import annotations

import asyncio
import gc
import weakref

from stack.driver import StackRuntime
from stack.sim import LinkProfile
from tests.two_hosts import two_hosts


def test_writes_of_one_step_on_several_connections_leave_together_in_order() -> None:
    hosts = two_hosts(3, LinkProfile(), ipv6=False)
    with hosts.net as net:
        sa, sb = hosts.stack_a, hosts.stack_b
        writers: list[asyncio.StreamWriter] = []
        got: list[bytes] = []
        order: list[int] = []  # the client ports, in the order the server wrote to them

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await reader.read()

        async def main() -> None:
            server = await sb.start_server(serve, port=9)
            clients = [await sa.open_connection("10.0.0.2", 9) for _ in range(3)]
            while len(writers) < 3:
                await asyncio.sleep(0.01)
            hosts.sink_b.clear()
            for i, writer in enumerate(reversed(writers)):  # one step: no await in between
                order.append(writer.get_extra_info("peername")[1])
                writer.write(b"head %d," % i)
                writer.write(b"body %d" % i)
            for reader, _ in reversed(clients):
                got.append(await reader.readexactly(13))
            for _, writer in clients:
                writer.close()
            server.close()

        net.run(main(), timeout=60)
    assert got == [b"head %d,body %d" % (i, i) for i in range(3)]
    # One segment a connection (the two writes of each together), in the order of the writes.
    data = [s for s in hosts.sink_b.segments("out") if s.len]
    assert [s.len for s in data] == [13, 13, 13]
    assert [int(s.conn.rsplit(":", 1)[1]) for s in data] == order


def _echo_once_on_a_network_then_drop_it() -> weakref.ref[StackRuntime]:
    hosts = two_hosts(4, LinkProfile(), ipv6=False)
    sa, sb = hosts.stack_a, hosts.stack_b
    with hosts.net as net:

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(5))
            await writer.drain()
            writer.close()

        async def main() -> bytes:
            server = await sb.start_server(serve, port=9)
            reader, writer = await sa.open_connection("10.0.0.2", 9)
            writer.write(b"hello")
            reply = await reader.read()
            writer.close()
            server.close()
            return reply

        assert net.run(main(), timeout=60) == b"hello"
    return weakref.ref(sb.runtime)


def test_the_step_flush_does_not_keep_a_runtime_alive() -> None:
    runtime = _echo_once_on_a_network_then_drop_it()
    gc.collect()
    assert runtime() is None
