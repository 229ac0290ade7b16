"""IPv6 end to end on the simulated network: Path MTU discovery through a router's Packet Too Big
(RFC 8201), hop limits, and both families between the same two hosts at once."""

from __future__ import annotations

import asyncio
import errno

import pytest

from stack.config import TcpConfig
from stack.inet import AF_INET, AF_INET6
from stack.sim import LinkProfile, Network
from stack.socket import Stack
from stack.trace import MemorySink, PacketEvent, StateChange, TimerEvent, Trace

from . import helpers
from .helpers import A_ADDR, A_ADDR6, B_ADDR, B_ADDR6, Pair, run_transfer


def routed_pair(seed: int, mtu: int) -> Pair:
    """a - r - b, the r-b link carrying at most `mtu` octets; both hosts dual-stack."""
    net = Network(seed)
    sink_a, sink_b = MemorySink(), MemorySink()
    a = net.add_host("a", A_ADDR, address6=A_ADDR6, config=TcpConfig(msl=0.5), trace=Trace([sink_a]))
    b = net.add_host("b", B_ADDR, address6=B_ADDR6, config=TcpConfig(msl=0.5), trace=Trace([sink_b]))
    net.add_router("r", "10.0.1.254", "fd00:1::fe")
    net.connect("a", "r", LinkProfile(delay=0.005))
    net.connect("r", "b", LinkProfile(delay=0.005, mtu=mtu))
    net.route("a", via="r")
    net.route("b", via="r")
    return Pair(net, a, b, sink_a, sink_b, Stack(a.runtime), Stack(b.runtime))


@pytest.mark.parametrize("family", ["ipv6"], indirect=True)
def test_packet_too_big_lowers_the_mss_and_the_data_arrives(family: str) -> None:
    pair = routed_pair(23, mtu=1280)
    res = run_transfer(pair, 300_000, 200_000, seed=23)
    assert res.got_ab == res.sent_ab and res.got_ba == res.sent_ba
    pmtu = [e for e in pair.sink_a.of(TimerEvent) if e.timer == "pmtu"]
    assert [e.action for e in pmtu] == ["mtu 1280 mss 1208"]  # 1280 - 40 - 20 - 12 (timestamps)
    assert pair.net.stats["packet_too_big"] >= 1 and pair.net.stats["frag_needed"] == 0
    assert pair.a.host.counters["icmp6_packet_too_big"] >= 1
    big = [s for s in pair.sink_a.segments("out") if s.time > pmtu[0].time and s.len > 1208]
    assert big == []
    after = [e for e in pair.sink_a.of(PacketEvent) if e.direction == "out" and e.time > pmtu[0].time]
    sizes = [len(e.data) for e in after]
    assert max(sizes) == 1280  # full-sized packets fill the IPv6 minimum MTU exactly


@pytest.mark.parametrize("family", ["ipv6"], indirect=True)
def test_packet_too_big_below_1280_is_ignored(family: str) -> None:
    """RFC 8201 section 4: a Packet Too Big reporting less than 1280 is discarded; the link then
    simply drops the big packets (a black hole), which the drop counter shows."""
    pair = routed_pair(5, mtu=1000)

    async def main() -> None:
        await pair.stack_b.start_server(lambda r, w: None, port=9)
        _reader, writer = await pair.stack_a.open_connection(B_ADDR6, 9)
        writer.write(b"x" * 5000)
        await asyncio.sleep(3.0)

    pair.net.run(main(), timeout=60)
    assert pair.a.host.counters["icmp6_packet_too_big"] == 0
    assert len(pair.sink_a.drops("icmp6_ptb_below_min")) >= 1
    assert [e for e in pair.sink_a.of(TimerEvent) if e.timer == "pmtu"] == []


def test_router_forwards_ipv6_with_the_hop_limit_one_lower() -> None:
    pair = routed_pair(1, mtu=1500)
    seen: list[int] = []
    pair.net.taps.append(lambda t, src, dst, p: seen.append(p[7]) if (src, dst) == ("r", "b") else None)

    async def main() -> bytes:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read())
            writer.close()

        await pair.stack_b.start_server(echo, port=7)
        reader, writer = await pair.stack_a.open_connection(B_ADDR6, 7)
        writer.write(b"ping")
        writer.write_eof()
        return await reader.read()

    assert pair.net.run(main(), timeout=60) == b"ping"
    assert seen and set(seen) == {63}  # sent with 64, one router on the way


def test_both_families_between_the_same_hosts_at_once() -> None:
    """One listener serves an IPv4 and an IPv6 client; each connection is its own family."""
    pair = helpers.make_pair(3, LinkProfile(delay=0.01))

    async def main() -> list[bytes]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read())
            writer.close()

        await pair.stack_b.start_server(echo, host="::", port=7)

        async def one(address: str, data: bytes) -> bytes:
            reader, writer = await pair.stack_a.open_connection(address, 7)
            writer.write(data)
            writer.write_eof()
            return await reader.read()

        return list(await asyncio.gather(one(B_ADDR, b"four" * 1000), one(B_ADDR6, b"six" * 1000)))

    assert pair.net.run(main(), timeout=60) == [b"four" * 1000, b"six" * 1000]
    conns = {e.conn.split(">")[1].rsplit(":", 1)[0] for e in pair.sink_a.of(StateChange)}
    assert conns == {B_ADDR, f"[{B_ADDR6}]"}


# ---------------------------------------------------------------- the socket API over IPv6


def test_af_inet6_listener_accepts_both_families_and_names_them_like_linux() -> None:
    pair = helpers.make_pair(8, LinkProfile(delay=0.01))

    async def main() -> list[tuple[object, ...]]:
        listener = pair.stack_b.socket(AF_INET6)
        listener.bind(("::", 5001))
        listener.listen()
        names: list[tuple[object, ...]] = [listener.getsockname()]
        for family, address in ((AF_INET6, B_ADDR6), (AF_INET, B_ADDR)):
            client = pair.stack_a.socket(family)
            await client.aconnect((address, 5001))
            server, peer = await listener.aaccept()
            names += [client.getsockname(), client.getpeername(), peer, server.getsockname()]
            names.append((client.info()["local"], client.info()["remote"]))  # what `tcplab ss` shows
            await client.asendall(b"hi")
            assert await server.arecv(10) == b"hi"
            client.close()
            server.close()
        return names

    names = pair.net.run(main(), timeout=60)
    listening, c6, p6, peer6, s6, ss6, c4, p4, peer4, s4, ss4 = names
    assert listening == ("::", 5001, 0, 0)
    assert (c6[0], p6, s6) == (A_ADDR6, (B_ADDR6, 5001, 0, 0), (B_ADDR6, 5001, 0, 0))
    assert peer6 == (A_ADDR6, c6[1], 0, 0)
    assert ss6 == (f"[{A_ADDR6}]:{c6[1]}", f"[{B_ADDR6}]:5001")
    assert ss4 == (f"{A_ADDR}:{c4[1]}", f"{B_ADDR}:5001")
    assert (c4[0], p4) == (A_ADDR, (B_ADDR, 5001))  # the AF_INET client: 2-tuples
    assert peer4 == (f"::ffff:{A_ADDR}", c4[1], 0, 0)  # an IPv4 peer on an AF_INET6 socket
    assert s4 == (f"::ffff:{B_ADDR}", 5001, 0, 0)


def test_address_family_mismatches_are_refused_with_one_line() -> None:
    pair = helpers.make_pair(9, LinkProfile(delay=0.01))

    async def main() -> list[int]:
        codes = []
        for family, address in ((AF_INET, B_ADDR6), (AF_INET6, B_ADDR)):
            with pytest.raises(OSError) as info:
                await pair.stack_a.socket(family).aconnect((address, 5001))
            assert "\n" not in str(info.value)
            codes.append(info.value.errno)
        with pytest.raises(OSError) as bad_bind:
            pair.stack_a.socket(AF_INET6).bind(("fd00::99", 0))
        codes.append(bad_bind.value.errno)
        with pytest.raises(OSError) as bad_server:
            await pair.stack_b.start_server(lambda r, w: None, host="fd00::99", port=1)
        codes.append(bad_server.value.errno)
        return codes

    assert pair.net.run(main(), timeout=60) == [errno.EAFNOSUPPORT] * 2 + [errno.EADDRNOTAVAIL] * 2
    with Network(1) as net:
        v4_only = Stack(net.add_host("v4", "10.9.0.1").runtime)
        with pytest.raises(OSError) as info:
            v4_only.socket(AF_INET6)
        assert info.value.errno == errno.EAFNOSUPPORT


def test_mapped_address_and_names_on_an_af_inet6_socket_go_over_ipv4() -> None:
    pair = helpers.make_pair(10, LinkProfile(delay=0.01))
    a = Stack(pair.a.runtime, names={"b": B_ADDR, "both": B_ADDR}, names6={"both": B_ADDR6})

    async def main() -> list[tuple[object, ...]]:
        await pair.stack_b.start_server(lambda r, w: None, port=5001)
        out = []
        for name in (f"::ffff:{B_ADDR}", "b", "both", f"[{B_ADDR6}]"):
            s = a.socket(AF_INET6)
            await s.aconnect((name, 5001))
            out.append(s.getpeername())
            s.close()
        _reader, writer = await a.open_connection("both", 5001)  # the stream API: IPv4 first
        out.append(writer.get_extra_info("peername"))
        writer.close()
        return out

    got = pair.net.run(main(), timeout=60)
    mapped = (f"::ffff:{B_ADDR}", 5001, 0, 0)
    assert got == [mapped, mapped, (B_ADDR6, 5001, 0, 0), (B_ADDR6, 5001, 0, 0), (B_ADDR, 5001)]
