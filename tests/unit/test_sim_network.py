"""Network: routing between hosts and routers, seeded links, PMTU errors, determinism.

Hosts here are `FakeHost`s with the Host interface: they send what tests queue (immediately or at a
virtual time, through the deadline/on_timer path) and answer b"ping..." payloads with b"pong...".
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest

from stack.config import TcpConfig
from stack.sim.link import LinkProfile
from stack.sim.loop import SimulationStalled
from stack.sim.network import Network, SimNode, decrement_ttl
from stack.trace import Trace
from stack.wire.icmp import DEST_UNREACH, FRAG_NEEDED, next_hop_mtu, parse_icmp, quoted_packet
from stack.wire.ipv4 import PROTO_ICMP, IPv4Packet, build_ipv4, parse_ipv4

PROTO_TEST = 253  # RFC 3692 experimental protocol number


class FakeHost:
    def __init__(
        self,
        address: str,
        *,
        config: TcpConfig | None = None,
        trace: Trace | None = None,
        rng: random.Random | None = None,
        isn_key: bytes = b"",
    ) -> None:
        self.address = address
        self.config = config
        self.trace = trace
        self.rng = rng
        self.isn_key = isn_key
        self.received: list[tuple[float, IPv4Packet]] = []
        self.outbox: list[bytes] = []
        self.later: list[tuple[float, bytes]] = []
        self.events: list[object] = []

    def packet(self, dst: str, payload: bytes, *, ttl: int = 64, df: bool = True) -> bytes:
        return build_ipv4(
            IPv4Packet(
                src=self.address, dst=dst, protocol=PROTO_TEST, payload=payload, ttl=ttl, dont_fragment=df
            )
        )

    def send_at(self, when: float, packet: bytes) -> None:
        self.later.append((when, packet))
        self.later.sort(key=lambda x: x[0])

    # --- the Host interface ---
    def receive(self, packet: bytes, now: float, *, loopback: bool = False) -> None:
        ip = parse_ipv4(packet)
        self.received.append((now, ip))
        self.events.append(self)
        if ip.payload.startswith(b"ping"):
            self.outbox.append(self.packet(ip.src, b"pong" + ip.payload[4:]))

    def take_packets(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def deadline(self) -> float | None:
        return self.later[0][0] if self.later else None

    def on_timer(self, now: float) -> None:
        while self.later and self.later[0][0] <= now:
            self.outbox.append(self.later.pop(0)[1])

    def take_app_events(self) -> list[object]:
        out, self.events = self.events, []
        return out


def fake(node: SimNode) -> FakeHost:
    host: Any = node.host
    assert isinstance(host, FakeHost)
    return host


@pytest.fixture
def net() -> Iterator[Network]:
    with Network(seed=1) as n:
        yield n


FAKE_FACTORY: Any = FakeHost  # stands in for stack.host.Host


def add(net: Network, name: str, address: str, **kw: Any) -> FakeHost:
    return fake(net.add_host(name, address, host_factory=FAKE_FACTORY, **kw))


def send(net: Network, name: str, packet: bytes) -> None:
    """Queue a packet on host `name` now, as an application call would, and pump."""
    node = net.node(name)
    fake(node).outbox.append(packet)
    node.runtime.pump()


def test_host_gets_seeded_rng_isn_key_config_and_trace(net: Network) -> None:
    cfg, tr = TcpConfig(mtu=1400), Trace()
    a = add(net, "a", "10.0.0.1", config=cfg, trace=tr)
    b = add(net, "b", "10.0.0.2")
    assert a.address == "10.0.0.1" and a.config is cfg and a.trace is tr
    assert a.isn_key and a.isn_key != b.isn_key
    assert a.rng is not None and b.rng is not None
    assert a.rng.random() == random.Random("1:a:rng").random()
    with Network(seed=1) as again:
        assert add(again, "a", "10.0.0.1").isn_key == a.isn_key
    with Network(seed=2) as other:
        assert add(other, "a", "10.0.0.1").isn_key != a.isn_key


def test_ping_pong_over_a_delayed_link(net: Network) -> None:
    a = add(net, "a", "10.0.0.1")
    b = add(net, "b", "10.0.0.2")
    net.connect("a", "b", LinkProfile(delay=0.01), reverse=LinkProfile(delay=0.03))
    send(net, "a", a.packet("10.0.0.2", b"ping1"))
    net.run_for(1.0)
    assert [(t, p.payload) for t, p in b.received] == [(0.01, b"ping1")]
    assert [(t, p.payload, p.src) for t, p in a.received] == [(0.01 + 0.03, b"pong1", "10.0.0.2")]
    assert net.now == 1.0


def test_timer_path_sends_at_the_hosts_deadline(net: Network) -> None:
    a = add(net, "a", "10.0.0.1")
    b = add(net, "b", "10.0.0.2")
    net.connect("a", "b", LinkProfile(delay=0.5))
    a.send_at(2.0, a.packet("10.0.0.2", b"x"))
    a.send_at(7.0, a.packet("10.0.0.2", b"y"))
    net.node("a").runtime.pump()  # arms the timer for the first deadline
    net.run_for(10.0)
    assert [(t, p.payload) for t, p in b.received] == [(2.5, b"x"), (7.5, b"y")]


def test_run_with_a_coroutine_waiting_for_the_host(net: Network) -> None:
    a = add(net, "a", "10.0.0.1")
    b = add(net, "b", "10.0.0.2")
    net.connect("a", "b", LinkProfile(delay=0.2))
    node_b = net.node("b")

    async def wait_for_arrival() -> float:
        send(net, "a", a.packet("10.0.0.2", b"hello"))
        await node_b.runtime.wait_for_change(b)
        return net.now

    assert net.run(wait_for_arrival(), timeout=5.0) == 0.2


def test_run_timeout_is_virtual(net: Network) -> None:
    add(net, "a", "10.0.0.1")
    with pytest.raises(TimeoutError):
        net.run(asyncio.Event().wait(), timeout=3.0)
    assert net.now == 3.0


def test_waiting_for_a_packet_that_never_comes_stalls(net: Network) -> None:
    b = add(net, "b", "10.0.0.2")
    with pytest.raises(SimulationStalled):
        net.run(net.node("b").runtime.wait_for_change(b))


def test_unroutable_packets_are_counted(net: Network) -> None:
    a = add(net, "a", "10.0.0.1")
    add(net, "b", "10.0.0.2")
    send(net, "a", a.packet("10.0.0.2", b"not connected"))
    send(net, "a", a.packet("10.9.9.9", b"nobody"))
    net.run_for(1.0)
    assert net.stats["no_route"] == 2


def test_chain_through_a_router_decrements_ttl(net: Network) -> None:
    a = add(net, "a", "10.0.1.1")
    net.add_router("r", "10.0.1.254", "10.0.2.254")
    c = add(net, "c", "10.0.2.1")
    net.connect("a", "r", LinkProfile(delay=0.001))
    net.connect("r", "c", LinkProfile(delay=0.002))
    net.route("a", via="r")
    net.route("c", via="r")
    send(net, "a", a.packet("10.0.2.1", b"ping", ttl=5))
    net.run_for(1.0)
    ((t, got),) = c.received
    assert t == pytest.approx(0.003, abs=1e-15) and got.ttl == 4  # parse_ipv4 checked the checksum
    ((t, back),) = a.received
    assert back.payload == b"pong" and back.ttl == 63
    assert net.stats["forwarded"] == 2


def test_router_drops_at_ttl_one_and_keeps_packets_for_itself(net: Network) -> None:
    a = add(net, "a", "10.0.1.1")
    net.add_router("r", "10.0.1.254")
    c = add(net, "c", "10.0.2.1")
    net.connect("a", "r")
    net.connect("r", "c")
    net.route("a", via="r")
    send(net, "a", a.packet("10.0.2.1", b"dies", ttl=1))
    send(net, "a", a.packet("10.0.1.254", b"for the router"))
    net.run_for(1.0)
    assert c.received == []
    assert net.stats["ttl_expired"] == 1 and net.stats["to_router"] == 1


def test_specific_route_wins_over_default(net: Network) -> None:
    a = add(net, "a", "10.0.0.1")
    net.add_router("r1")
    net.add_router("r2")
    b = add(net, "b", "10.0.0.2")
    for r in ("r1", "r2"):
        net.connect("a", r)
        net.connect(r, "b")
    net.route("a", via="r1")
    net.route("a", via="r2", to="10.0.0.2")
    send(net, "a", a.packet("10.0.0.2", b"x"))
    net.run_for(1.0)
    assert len(b.received) == 1
    assert net.duplex("a", "r2").forward.stats.delivered == 1
    assert net.duplex("a", "r1").forward.stats.sent == 0


def test_route_needs_a_neighbour(net: Network) -> None:
    add(net, "a", "10.0.0.1")
    net.add_router("r")
    with pytest.raises(ValueError, match="not a neighbour"):
        net.route("a", via="r")


def test_small_mtu_link_answers_frag_needed_to_the_sender(net: Network) -> None:
    a = add(net, "a", "10.0.1.1")
    net.add_router("r", "10.0.1.254")
    c = add(net, "c", "10.0.2.1")
    net.connect("a", "r", LinkProfile(delay=0.01))
    net.connect("r", "c", LinkProfile(mtu=576))
    net.route("a", via="r")
    big = a.packet("10.0.2.1", bytes(1000))
    send(net, "a", big)
    send(net, "a", a.packet("10.0.2.1", bytes(1000), df=False))  # no DF: dropped, no answer
    net.run_for(1.0)
    assert c.received == []
    ((t, err),) = a.received
    assert t == 0.02
    assert (err.protocol, err.src, err.dst) == (PROTO_ICMP, "10.0.1.254", "10.0.1.1")
    icmp = parse_icmp(err.payload)
    assert (icmp.type, icmp.code, next_hop_mtu(icmp)) == (DEST_UNREACH, FRAG_NEEDED, 576)
    assert quoted_packet(icmp) == decrement_ttl(big)[:28]
    assert net.stats["frag_needed"] == 1 and net.stats["too_big_dropped"] == 1


def test_frag_needed_from_the_senders_own_link(net: Network) -> None:
    a = add(net, "a", "10.0.0.1")
    add(net, "b", "10.0.0.2")
    net.connect("a", "b", LinkProfile(mtu=1280))
    send(net, "a", a.packet("10.0.0.2", bytes(1400)))
    net.run_for(1.0)
    ((t, err),) = a.received
    assert t == 0.0 and err.src == "10.0.0.1"
    assert next_hop_mtu(parse_icmp(err.payload)) == 1280


def test_links_are_lossy_per_direction_and_counted(net: Network) -> None:
    a = add(net, "a", "10.0.0.1")
    b = add(net, "b", "10.0.0.2")
    d = net.connect("a", "b", LinkProfile(loss=1.0), reverse=LinkProfile())
    send(net, "a", a.packet("10.0.0.2", b"lost"))
    send(net, "b", b.packet("10.0.0.1", b"arrives"))
    net.run_for(1.0)
    assert b.received == [] and len(a.received) == 1
    assert d.forward.stats.lost == 1 and d.backward.stats.delivered == 1
    d.set_profile(LinkProfile())
    send(net, "a", a.packet("10.0.0.2", b"now it arrives"))
    net.run_for(1.0)
    assert len(b.received) == 1


def test_taps_see_every_delivery(net: Network) -> None:
    a = add(net, "a", "10.0.0.1")
    add(net, "b", "10.0.0.2")
    net.connect("a", "b", LinkProfile(delay=0.1))
    seen: list[tuple[float, str, str]] = []
    net.taps.append(lambda t, src, dst, pkt: seen.append((t, src, dst)))
    send(net, "a", a.packet("10.0.0.2", b"ping"))
    net.run_for(1.0)
    assert seen == [(0.1, "a", "b"), (0.2, "b", "a")]


def test_building_errors(net: Network) -> None:
    add(net, "a", "10.0.0.1")
    add(net, "b", "10.0.0.2")
    with pytest.raises(ValueError, match="already exists"):
        add(net, "a", "10.0.0.3")
    with pytest.raises(ValueError, match="already belongs"):
        add(net, "c", "10.0.0.1")
    net.connect("a", "b")
    with pytest.raises(ValueError, match="already connected"):
        net.connect("b", "a")
    with pytest.raises(KeyError, match="no node named"):
        net.connect("a", "zz")
    net.add_router("r")
    with pytest.raises(TypeError, match="router"):
        net.node("r")


def timeline(seed: int, build_order: tuple[str, ...] = ("ab", "bc")) -> list[tuple[float, str, str, bytes]]:
    """A busy 3-node run with every impairment on; returns every delivery."""
    with Network(seed=seed) as net:
        hosts = {"a": add(net, "a", "10.0.0.1"), "c": add(net, "c", "10.0.0.3")}
        net.add_router("b")
        profile = LinkProfile(
            delay=0.01,
            jitter=0.005,
            loss=0.1,
            duplicate=0.05,
            reorder=0.1,
            corrupt=0.0,
            rate=10_000_000,
            queue_limit=20,
        )
        for pair in build_order:
            net.connect(pair[0], pair[1], profile)
        net.route("a", via="b")
        net.route("c", via="b")
        out: list[tuple[float, str, str, bytes]] = []
        net.taps.append(lambda t, s, d, p: out.append((t, s, d, p)))
        for i in range(200):
            src, dst = ("a", "10.0.0.3") if i % 2 else ("c", "10.0.0.1")
            h = hosts[src]
            h.send_at(i * 0.001, h.packet(dst, b"ping" + i.to_bytes(2, "big") + bytes(500)))
        for name in "ac":
            net.node(name).runtime.pump()
        net.run_for(5.0)
        # Pings crossed the router and were answered: the run exercised both directions.
        assert {(s, d) for _, s, d, _ in out} == {("a", "b"), ("b", "c"), ("c", "b"), ("b", "a")}
        return out


def test_same_seed_same_timeline() -> None:
    first = timeline(7)
    assert first and first == timeline(7)
    assert first != timeline(8)


def test_link_creation_order_does_not_change_the_timeline() -> None:
    assert timeline(7, ("ab", "bc")) == timeline(7, ("bc", "ab"))


def test_decrement_ttl_keeps_a_valid_checksum() -> None:
    pkt = build_ipv4(IPv4Packet(src="1.2.3.4", dst="5.6.7.8", protocol=6, payload=b"abc", ttl=200))
    out = parse_ipv4(decrement_ttl(pkt))
    assert out.ttl == 199 and out.payload == b"abc"


def test_inject_speaks_for_a_node(net: Network) -> None:
    a = add(net, "a", "10.0.0.1")
    net.add_router("r", "10.0.0.254")
    net.connect("r", "a", LinkProfile(delay=0.25))
    net.inject("r", build_ipv4(IPv4Packet("10.0.0.254", "10.0.0.1", PROTO_TEST, b"crafted")))
    net.run_for(1.0)
    assert [(t, p.payload) for t, p in a.received] == [(0.25, b"crafted")]


# --- with the real Host (skipped while stack.host cannot be imported) ---------------------------


def echo_request(src: str, dst: str, payload: bytes, *, df: bool = True) -> bytes:
    from stack.wire.icmp import ECHO_REQUEST, IcmpMessage, build_icmp

    icmp = build_icmp(IcmpMessage(ECHO_REQUEST, 0, (0x1234 << 16) | 1, payload))
    return build_ipv4(IPv4Packet(src, dst, PROTO_ICMP, icmp, dont_fragment=df))


def test_real_hosts_answer_a_ping_across_a_router() -> None:
    pytest.importorskip("stack.host")
    from stack.trace import MemorySink, PacketEvent
    from stack.wire.icmp import ECHO_REPLY

    sink = MemorySink()
    with Network(seed=3) as net:
        net.add_host("a", "10.0.1.1", trace=Trace([sink]))
        net.add_router("r", "10.0.1.254", "10.0.2.254")
        net.add_host("b", "10.0.2.1")
        net.connect("a", "r", LinkProfile(delay=0.001))
        net.connect("r", "b", LinkProfile(delay=0.004))
        net.route("a", via="r")
        net.route("b", via="r")
        net.inject("a", echo_request("10.0.1.1", "10.0.2.1", b"hello"))
        net.run_for(1.0)
        ((reply,),) = [[e for e in sink.of(PacketEvent) if e.direction == "in"]]
        assert reply.time == pytest.approx(0.010, abs=1e-12)
        ip = parse_ipv4(reply.data)
        msg = parse_icmp(ip.payload)
        assert (ip.src, msg.type, msg.rest, msg.payload) == (
            "10.0.2.1",
            ECHO_REPLY,
            (0x1234 << 16) | 1,
            b"hello",
        )


def test_real_hosts_complete_a_tcp_handshake_over_a_lossy_link() -> None:
    pytest.importorskip("stack.host")
    from stack.tcp.state import State

    with Network(seed=5) as net:
        a = net.add_host("a", "10.0.0.1")
        b = net.add_host("b", "10.0.0.2")
        # The first SYN is lost; its retransmission after the 1 s initial RTO gets through.
        d = net.connect("a", "b", LinkProfile(delay=0.05, loss=1.0), reverse=LinkProfile(delay=0.05))
        b.host.listen(80)
        conn = a.host.connect("10.0.0.2", 80, net.now)
        a.runtime.pump()
        net.run_for(0.5)
        assert conn.state is State.SYN_SENT and d.forward.stats.lost == 1
        conn_after: Any = conn  # mypy would keep the narrowed state across run_for
        d.set_profile(LinkProfile(delay=0.05))
        net.run_for(2.0)
        assert conn_after.state is State.ESTABLISHED
        assert d.forward.stats.delivered >= 2  # the retransmitted SYN and the ACK


def test_real_hosts_discover_the_path_mtu_through_a_router() -> None:
    pytest.importorskip("stack.host")

    with Network(seed=1) as net:
        a = net.add_host("a", "10.0.1.1")
        net.add_router("r", "10.0.1.254", "10.0.2.254")
        b = net.add_host("b", "10.0.2.1")
        net.connect("a", "r", LinkProfile(delay=0.005))
        net.connect("r", "b", LinkProfile(delay=0.005, mtu=576))
        net.route("a", via="r")
        net.route("b", via="r")
        listener = b.host.listen(80)
        conn = a.host.connect("10.0.2.1", 80, net.now)
        a.runtime.pump()
        net.run_for(0.1)
        data = bytes(range(256)) * 80
        assert conn.send(data, net.now) == len(data)
        a.host.app_call(conn)
        a.runtime.pump()
        net.run_for(5.0)
        assert net.stats["frag_needed"] >= 1
        assert conn.mss <= 576 - 40
        (server,) = listener.accept_queue
        assert server.recv(1 << 20, net.now) == data
