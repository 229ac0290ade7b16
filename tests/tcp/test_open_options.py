"""TCP_KEEPINIT (TcpConfig.keepinit) and TCP_NOOPT (TcpConfig.noopt), FreeBSD's socket options
for the opening handshake: on the wire (segment-level harness) and through the socket API
(setsockopt/getsockopt on the simulated network), with the default config and the freebsd profile.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack import seq
from stack.config import TcpConfig, freebsd_profile
from stack.sim import LinkProfile
from stack.sockopts import IPPROTO_TCP, TCP_KEEPINIT, TCP_NOOPT
from stack.tcp.state import State
from stack.wire.tcp import Mss, SackPermitted, Timestamps, WindowScale
from tests.two_hosts import TwoHosts, two_hosts

from .harness import (
    LOCAL_PORT,
    PEER_MSS,
    PLAIN,
    REMOTE_PORT,
    Peer,
    listening,
    make_host,
    remote_ip,
    syn_opts,
)

pytestmark = pytest.mark.usefixtures("family")  # each harness test over IPv4 and IPv6

RICH = PLAIN.with_(window_scaling=True, sack=True, timestamps=True)  # every option on offer
PEER_OPTIONS = (Mss(1000), WindowScale(7), SackPermitted(), Timestamps(4242, 0))


def _connect(config: TcpConfig) -> Peer:
    host, sink = make_host(config)
    peer = Peer(host, sink, iss=1_000, irs=500_000)
    peer.conn = host.connect(remote_ip(), REMOTE_PORT, peer.now, local_port=LOCAL_PORT)
    return peer


def _syn_times(peer: Peer, until: float) -> list[float]:
    """Fire the host's timers up to `until`; the times of the SYNs it sends on the way."""
    times = [peer.now] if peer.segments() else []
    while peer.deadline() is not None and peer.deadline() <= until:  # type: ignore[operator]
        t = peer.fire()
        times += [t for s in peer.segments() if s.flags == 0x02]
    return times


# ---------------------------------------------------------------------- TCP_KEEPINIT


def test_keepinit_ends_an_unanswered_open_with_etimedout_at_its_time() -> None:
    peer = _connect(PLAIN.with_(keepinit=5.0))
    assert _syn_times(peer, 100.0) == pytest.approx([0.0, 1.0, 3.0])  # 7.0 would be past 5 s
    assert peer.now == pytest.approx(5.0)
    assert peer.state is State.CLOSED
    assert isinstance(peer.c().error, TimeoutError)
    assert peer.transitions() == ["CLOSED", "SYN_SENT", "CLOSED"]


def test_without_keepinit_syn_retries_alone_bound_the_open() -> None:
    peer = _connect(PLAIN)  # keepinit None: six retransmissions, 1+2+...+64 s
    assert len(_syn_times(peer, 1000.0)) == 7
    assert peer.now == pytest.approx(127.0)
    assert isinstance(peer.c().error, TimeoutError)


def test_keepinit_does_not_limit_a_passive_open() -> None:
    peer = listening(config=PLAIN.with_(keepinit=2.0, synack_retries=2))
    peer.send("S", options=(Mss(PEER_MSS),))
    peer.conn = peer.host.find(LOCAL_PORT, peer.ip, peer.port)
    peer.expect("S.", seq=peer.iss, options=syn_opts())
    peer.fire()
    peer.fire()
    assert [s.flags for s in peer.segments()] == [0x12, 0x12]  # at 1 s, and at 3 s: past 2 s
    assert peer.now == pytest.approx(3.0) and peer.state is State.SYN_RECEIVED


def test_freebsd_profile_gives_up_an_open_after_75_seconds() -> None:
    peer = _connect(freebsd_profile())
    times = _syn_times(peer, 1000.0)
    assert peer.now == pytest.approx(75.0)
    assert times[-1] < 75.0 and len(times) < 1 + freebsd_profile().syn_retries
    assert isinstance(peer.c().error, TimeoutError)


# ---------------------------------------------------------------------- TCP_NOOPT


def test_noopt_syn_carries_no_option_and_takes_only_the_peers_mss() -> None:
    peer = _connect(RICH.with_(noopt=True))
    peer.expect("S", seq=peer.iss, options=())  # not even the MSS (FreeBSD's TF_NOOPT)
    peer.send("S.", ack=seq.add(peer.iss, 1), options=PEER_OPTIONS)
    peer.expect(".", seq=seq.add(peer.iss, 1), options=())  # no timestamps
    assert peer.state is State.ESTABLISHED
    assert peer.c().info()["options"] == ""  # no window scale, SACK or timestamps
    peer.app_send(bytes(2000))
    assert [len(s.payload) for s in peer.segments()] == [1000, 1000]  # its MSS holds
    peer.send(".", seq=seq.add(peer.seq, 10), payload=b"x")  # out of order: a SACK block if on
    peer.expect(".", seq=seq.add(peer.iss, 2001), options=())


def test_default_syn_offers_what_the_config_enables() -> None:
    peer = _connect(RICH)
    options = peer.segments()[0].options
    assert options and isinstance(options[0], Mss)


def test_noopt_listener_answers_with_a_bare_syn_ack() -> None:
    peer = listening(config=RICH.with_(noopt=True))
    peer.send("S", options=PEER_OPTIONS)
    peer.conn = peer.host.find(LOCAL_PORT, peer.ip, peer.port)
    peer.expect("S.", seq=peer.iss, options=())
    peer.send(".")
    peer.expect_none()
    assert peer.state is State.ESTABLISHED and peer.c().info()["options"] == ""
    assert peer.c().info()["mss"] == 1000


def test_noopt_listener_answers_with_a_bare_syn_cookie_too() -> None:
    peer = listening(config=RICH.with_(noopt=True, syncookies=2))  # always a cookie
    peer.send("S", options=(Mss(1440), *PEER_OPTIONS[1:]))  # 1440: in both families' cookie MSS tables
    synack = peer.segments()[0]
    assert synack.options == () and not peer.host.connections
    peer.send(".", ack=seq.add(synack.seq, 1))
    peer.conn = peer.host.find(LOCAL_PORT, peer.ip, peer.port)
    assert peer.conn is not None and peer.state is State.ESTABLISHED
    assert peer.c().info()["options"] == "" and peer.c().info()["mss"] == 1440


def test_freebsd_profile_noopt_syn_is_bare() -> None:
    assert _connect(freebsd_profile()).segments()[0].options  # its BSD option layout
    peer = _connect(freebsd_profile(noopt=True))
    assert [s.options for s in peer.segments()] == [()]


# ---------------------------------------------------------------------- the socket API


@pytest.fixture
def net() -> Iterator[TwoHosts]:
    hosts = two_hosts(1, LinkProfile(delay=0.005), ipv6=False)
    yield hosts
    hosts.net.close()


@pytest.mark.parametrize("config", [TcpConfig(), freebsd_profile()], ids=["default", "freebsd"])
def test_setsockopt_keepinit_times_out_connect(config: TcpConfig) -> None:
    hosts = two_hosts(1, LinkProfile(delay=0.005, loss=1.0), ipv6=False, config=config)

    async def main() -> float:
        sock = hosts.stack_a.socket()
        sock.setsockopt(IPPROTO_TCP, TCP_KEEPINIT, 5)
        assert sock.getsockopt(IPPROTO_TCP, TCP_KEEPINIT) == 5
        with pytest.raises(TimeoutError):
            await sock.aconnect(("10.0.0.2", 80))
        return hosts.a.runtime.now()

    try:
        assert hosts.run(main()) == pytest.approx(5.0)
    finally:
        hosts.net.close()


def test_getsockopt_keepinit_gives_the_config_in_seconds(net: TwoHosts) -> None:
    assert net.stack_a.socket().getsockopt(IPPROTO_TCP, TCP_KEEPINIT) == 0  # none by default
    net.a.host.config = net.a.host.config.with_(keepinit=15.0)
    sock = net.stack_a.socket()
    assert sock.getsockopt(IPPROTO_TCP, TCP_KEEPINIT) == 15
    sock.setsockopt(IPPROTO_TCP, TCP_KEEPINIT, 0)  # 0 clears it
    assert sock.getsockopt(IPPROTO_TCP, TCP_KEEPINIT) == 0
    with pytest.raises(OSError):
        sock.setsockopt(IPPROTO_TCP, TCP_KEEPINIT, -1)


def test_setsockopt_noopt_on_both_ends_opens_without_options(net: TwoHosts) -> None:
    async def main() -> tuple[object, object]:
        srv = net.stack_b.socket()
        srv.setsockopt(IPPROTO_TCP, TCP_NOOPT, 1)
        assert srv.getsockopt(IPPROTO_TCP, TCP_NOOPT) == 1
        srv.bind(("", 80))
        srv.listen(4)
        cli = net.stack_a.socket()
        assert cli.getsockopt(IPPROTO_TCP, TCP_NOOPT) == 0
        await cli.aconnect(("10.0.0.2", 80))
        child, _ = await srv.aaccept()
        return cli.info(), child.info()

    cli, child = net.run(main())
    syn, synack = net.sink_a.segments("out")[0], net.sink_b.segments("out")[0]
    assert syn.options and synack.options == ""  # the client offered; the NOOPT server: none
    assert cli["options"] == child["options"] == ""  # type: ignore[index]
    assert cli["mss"] == 536  # type: ignore[index]  # no MSS option came: RFC 9293 3.7.1's default
