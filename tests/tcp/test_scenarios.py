"""Scenarios on the simulated network: two stack hosts exchange real segments, and both ends'
traces must show the transitions of the RFC 9293 state diagram (figure 5) for each exchange."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator

import pytest

from stack.config import TcpConfig
from stack.sim import LinkProfile
from stack.socket import SHUT_WR, SO_LINGER, SOL_SOCKET, Socket
from stack.tcp.connection import TcpConnection
from stack.tcp.state import State
from stack.trace import MemorySink, StateChange, conn_id
from stack.wire.segment import tcp_packet
from stack.wire.tcp import Flags, TcpSegment
from tests.two_hosts import A_ADDR, B_ADDR, TwoHosts, two_hosts

A, B = A_ADDR, B_ADDR  # a: client, b: server
PORT = 80
CLIENT_PORT = 40000
MSL_WAIT = 2 * TcpConfig().msl  # 60 s

ACTIVE_CLOSE = ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
PASSIVE_CLOSE = ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]


def client_id(port: int = CLIENT_PORT) -> str:
    return conn_id(A, port, B, PORT)


def server_id(port: int = CLIENT_PORT) -> str:
    return conn_id(B, PORT, A, port)


def change_times(sink: MemorySink, cid: str) -> dict[str, float]:
    return {e.new: e.time for e in sink.of(StateChange) if e.conn == cid}


@pytest.fixture
def net() -> Iterator[TwoHosts]:
    hosts = two_hosts(1, LinkProfile(delay=0.005), ipv6=False)
    yield hosts
    hosts.net.close()


async def server_socket(n: TwoHosts, backlog: int = 8) -> Socket:
    s = n.stack_b.socket()
    s.bind(("", PORT))
    s.listen(backlog)
    return s


async def client_socket(n: TwoHosts, port: int = CLIENT_PORT) -> Socket:
    c = n.stack_a.socket()
    c.bind(("", port))
    await c.aconnect((B, PORT))
    return c


async def recv_all(sock: Socket) -> bytes:
    out = bytearray()
    while True:
        data = await sock.arecv(65536)
        if not data:
            return bytes(out)
        out += data


def test_open_and_client_closes_first(net: TwoHosts) -> None:
    async def main() -> bytes:
        srv = await server_socket(net)
        cli = await client_socket(net)
        conn, _ = await srv.aaccept()
        await cli.asendall(b"GET / HTTP/1.0\r\n\r\n")
        request = await conn.arecv(100)
        await conn.asendall(b"HTTP/1.0 200 OK\r\n\r\nhi")
        reply = await cli.arecv(100)
        cli.close()
        assert await conn.arecv(10) == b""  # EOF
        conn.close()
        await asyncio.sleep(MSL_WAIT + 1)
        return request + reply

    assert net.run(main()).endswith(b"hi")
    assert net.sink_a.transitions(client_id()) == ACTIVE_CLOSE
    assert net.sink_b.transitions(server_id()) == PASSIVE_CLOSE
    times = change_times(net.sink_a, client_id())
    assert times["CLOSED"] - times["TIME_WAIT"] == pytest.approx(MSL_WAIT)  # 2*MSL, in virtual time
    assert not net.a.host.connections and not net.b.host.connections


def test_open_and_server_closes_first(net: TwoHosts) -> None:
    async def main() -> None:
        srv = await server_socket(net)
        cli = await client_socket(net)
        conn, _ = await srv.aaccept()
        await conn.asendall(b"bye")
        conn.close()
        assert await recv_all(cli) == b"bye"
        cli.close()
        await asyncio.sleep(MSL_WAIT + 1)

    net.run(main())
    assert net.sink_a.transitions(client_id()) == [
        "CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert net.sink_b.transitions(server_id()) == [
        "LISTEN", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]


def test_simultaneous_open(net: TwoHosts) -> None:
    now = net.net.now
    ca = net.a.host.connect(B, 6000, now, local_port=5000)
    cb = net.b.host.connect(A, 5000, now, local_port=6000)
    net.a.runtime.pump()
    net.b.runtime.pump()  # both SYNs are on the wire before either arrives
    net.net.run_for(2.0)
    assert ca.state is State.ESTABLISHED and cb.state is State.ESTABLISHED
    simultaneous = ["CLOSED", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED"]
    assert net.sink_a.transitions(conn_id(A, 5000, B, 6000)) == simultaneous
    assert net.sink_b.transitions(conn_id(B, 6000, A, 5000)) == simultaneous
    # And data flows both ways.
    ca.send(b"from a", net.net.now)
    net.a.host.app_call(ca)
    cb.send(b"from b", net.net.now)
    net.b.host.app_call(cb)
    net.a.runtime.pump()
    net.b.runtime.pump()
    net.net.run_for(1.0)
    assert cb.recv(100, net.net.now) == b"from a"
    assert ca.recv(100, net.net.now) == b"from b"


def test_simultaneous_close(net: TwoHosts) -> None:
    async def main() -> tuple[TcpConnection, TcpConnection]:
        srv = await server_socket(net)
        cli = await client_socket(net)
        conn, _ = await srv.aaccept()
        assert cli.conn is not None and conn.conn is not None
        now = net.net.now
        cli.conn.close(now)
        conn.conn.close(now)  # both FINs leave before either arrives
        net.a.host.app_call(cli.conn)
        net.b.host.app_call(conn.conn)
        net.a.runtime.pump()
        net.b.runtime.pump()
        await asyncio.sleep(1.0)
        assert cli.conn.state is State.TIME_WAIT and conn.conn.state is State.TIME_WAIT
        await asyncio.sleep(MSL_WAIT)
        return cli.conn, conn.conn

    net.run(main())
    both = ["ESTABLISHED", "FIN_WAIT_1", "CLOSING", "TIME_WAIT", "CLOSED"]
    assert net.sink_a.transitions(client_id())[2:] == both
    assert net.sink_b.transitions(server_id())[2:] == both
    assert not net.a.host.connections and not net.b.host.connections


def test_half_close_with_data_flowing_back(net: TwoHosts) -> None:
    body = bytes(range(256)) * 400  # 100 KiB

    async def main() -> bytes:
        srv = await server_socket(net)
        cli = await client_socket(net)
        conn, _ = await srv.aaccept()
        await cli.asendall(b"send me everything")
        cli.shutdown(SHUT_WR)
        assert await recv_all(conn) == b"send me everything"  # EOF after the request
        await asyncio.sleep(0.1)  # the ACK of the client's FIN arrives
        assert conn.conn is not None and conn.conn.state is State.CLOSE_WAIT
        assert cli.conn is not None and cli.conn.state is State.FIN_WAIT_2

        async def serve() -> None:
            await conn.asendall(body)
            conn.close()

        task = asyncio.ensure_future(serve())
        got = await recv_all(cli)
        await task
        cli.close()
        await asyncio.sleep(MSL_WAIT + 1)
        return got

    assert net.run(main()) == body
    assert net.sink_a.transitions(client_id()) == ACTIVE_CLOSE
    assert net.sink_b.transitions(server_id()) == PASSIVE_CLOSE


def test_old_duplicate_syn_is_reset_and_the_listener_carries_on(net: TwoHosts) -> None:
    async def main() -> None:
        srv = await server_socket(net)
        # An old SYN "from" a: a has no such connection, so it answers the SYN-ACK with RST.
        old = TcpSegment(33333, PORT, 123_456, 0, Flags.SYN, 65535)
        net.net.inject("a", tcp_packet(A, B, old))
        await asyncio.sleep(1.0)
        assert srv.listener is not None and srv.listener.accept() is None
        assert not net.b.host.connections
        # The listener still works for a real client.
        cli = await client_socket(net)
        conn, _ = await srv.aaccept()
        await cli.asendall(b"ok")
        assert await conn.arecv(10) == b"ok"

    net.run(main())
    old_id = conn_id(B, PORT, A, 33333)
    assert net.sink_b.transitions(old_id) == ["LISTEN", "SYN_RECEIVED", "LISTEN"]
    rsts = [s for s in net.sink_a.segments("out", conn_id(A, 33333, B, PORT)) if "R" in s.flags]
    assert len(rsts) == 1
    assert net.a.host.counters["closed_port"] == 1
    assert list(net.b.host.connections) == [(A, CLIENT_PORT, PORT)]  # only the real one


def test_connection_refused(net: TwoHosts) -> None:
    async def main() -> None:
        cli = net.stack_a.socket()
        cli.bind(("", CLIENT_PORT))
        with pytest.raises(ConnectionRefusedError):
            await cli.aconnect((B, 9))

    net.run(main())
    assert net.sink_a.transitions(conn_id(A, CLIENT_PORT, B, 9)) == ["CLOSED", "SYN_SENT", "CLOSED"]
    assert net.b.host.counters["closed_port"] == 1
    assert not net.a.host.connections


def test_backlog_overflow_with_many_clients(net: TwoHosts) -> None:
    clients = 10

    async def main() -> int:
        srv = await server_socket(net, backlog=2)
        socks = [net.stack_a.socket() for _ in range(clients)]
        first = [asyncio.ensure_future(s.aconnect((B, PORT))) for s in socks[:2]]
        await asyncio.gather(*first)  # nobody accepts: the accept queue is full...
        rest = [asyncio.ensure_future(s.aconnect((B, PORT))) for s in socks[2:]]
        await asyncio.sleep(0.5)  # ...so the other SYNs are dropped and counted
        assert srv.listener is not None and len(srv.listener.accept_queue) == 2
        assert net.b.host.counters["listen_overflow"] == clients - 2
        assert len(net.b.host.connections) == 2
        accepted = []
        while len(accepted) < clients:  # the dropped clients retry their SYNs and get in
            conn, _ = await srv.aaccept()
            accepted.append(conn)
        await asyncio.gather(*rest)
        return len(accepted)

    assert net.run(main()) == clients
    assert len(net.b.host.connections) == clients


def test_burst_beyond_the_accept_queue_drops_final_acks_until_accepted(net: TwoHosts) -> None:
    clients = 6

    async def main() -> None:
        srv = await server_socket(net, backlog=2)
        socks = [net.stack_a.socket() for _ in range(clients)]
        connects = [asyncio.ensure_future(s.aconnect((B, PORT))) for s in socks]
        await asyncio.sleep(0.5)
        assert srv.listener is not None and len(srv.listener.accept_queue) == 2
        assert srv.listener.overflows >= clients - 2  # final ACKs dropped: queue full
        for _ in range(clients):
            await srv.aaccept()
        await asyncio.gather(*connects)

    net.run(main())
    assert net.sink_b.drops("accept_queue_full")
    assert len(net.b.host.connections) == clients


def test_rst_with_inexact_sequence_gets_challenge_ack_and_the_connection_survives(net: TwoHosts) -> None:
    async def main() -> None:
        srv = await server_socket(net)
        cli = await client_socket(net)
        conn, _ = await srv.aaccept()
        assert cli.conn is not None
        # A blind RST "from" b, in the window but not at RCV.NXT (RFC 5961 3.2).
        forged = TcpSegment(PORT, CLIENT_PORT, (cli.conn.rcv_nxt + 1000) & 0xFFFFFFFF, 0, Flags.RST, 0)
        net.net.inject("b", tcp_packet(B, A, forged))
        await asyncio.sleep(0.1)
        assert cli.conn.state is State.ESTABLISHED
        await cli.asendall(b"still here")
        assert await conn.arecv(100) == b"still here"

    net.run(main())
    assert net.a.host.challenge.per_second == TcpConfig().challenge_ack_limit
    assert any(e.kind == "TimerEvent" and e.timer == "challenge_ack" for e in net.sink_a.events)


def test_abortive_close_resets_the_peer(net: TwoHosts) -> None:
    async def main() -> None:
        srv = await server_socket(net)
        cli = await client_socket(net)
        conn, _ = await srv.aaccept()
        cli.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))  # linger on, 0 s
        cli.close()
        with pytest.raises(ConnectionResetError):
            await conn.arecv(10)

    net.run(main())
    assert net.sink_a.transitions(client_id())[-2:] == ["ESTABLISHED", "CLOSED"]
    assert net.sink_b.transitions(server_id())[-2:] == ["ESTABLISHED", "CLOSED"]


def test_close_with_unread_data_resets_the_peer(net: TwoHosts) -> None:
    async def main() -> None:
        srv = await server_socket(net)
        cli = await client_socket(net)
        conn, _ = await srv.aaccept()
        await cli.asendall(b"never read")
        await asyncio.sleep(0.1)
        conn.close()  # unread data: RST, not FIN (RFC 9293 3.10.4, RFC 2525 2.17)
        with pytest.raises(ConnectionResetError):
            await cli.arecv(10)

    net.run(main())
    assert "CLOSE_WAIT" not in net.sink_a.transitions(client_id())
