"""ESTABLISHED (RFC 9293 3.10.7.4 and 3.8): data in and out, acceptability, the window, MSS
segmentation, PSH, bounded buffers, and the closes (orderly, abortive, with unread data)."""

from __future__ import annotations

import pytest

from stack import seq
from stack.inet import is_ipv6
from stack.tcp.state import State
from stack.wire.tcp import Mss

from .harness import PEER_WIN, PLAIN, RCVBUF, established, established_passive, isns, remote_ip, send_mss

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


def nodelay(peer_mss: int | None = 1460, sndbuf: int | None = None, **kw: object):  # type: ignore[no-untyped-def]
    config = PLAIN.with_(nagle=False) if sndbuf is None else PLAIN.with_(nagle=False, sndbuf=sndbuf)
    opts = (Mss(peer_mss),) if peer_mss else ()
    return established_passive(config=config, syn_options=opts, **kw)


# ---------------------------------------------------------------------- receiving


@isns
@pytest.mark.parametrize("active", [False, True], ids=["passive", "active"])
def test_in_order_data_is_acked_and_delivered(isn: tuple[int, int], active: bool) -> None:
    peer = established(isn, active)
    peer.send("P.", payload=b"x" * 1000)
    peer.expect(".", ack=seq.add(peer.irs, 1001), win=RCVBUF - 1000)
    assert peer.app_recv() == b"x" * 1000


@isns
def test_cumulative_ack_over_two_segments(isn: tuple[int, int]) -> None:
    peer = established(isn)
    peer.send(".", payload=b"a" * 100)
    peer.expect(".", win=RCVBUF - 100)
    peer.send("P.", payload=b"b" * 100)
    peer.expect(".", ack=seq.add(peer.irs, 201), win=RCVBUF - 200)
    assert peer.app_recv() == b"a" * 100 + b"b" * 100


@isns
def test_out_of_order_gets_duplicate_ack_then_hole_filled(isn: tuple[int, int]) -> None:
    peer = established(isn)
    start = peer.seq
    peer.send("P.", seq=seq.add(start, 100), payload=b"B" * 100)
    peer.expect(".", ack=start)  # duplicate ACK at once (RFC 5681 4.2)
    assert peer.app_recv() == b""
    peer.send(".", seq=start, payload=b"A" * 100)
    peer.expect(".", ack=seq.add(start, 200), win=RCVBUF - 200)
    peer.seq = seq.add(start, 200)
    assert peer.app_recv() == b"A" * 100 + b"B" * 100


def test_retransmitted_old_data_is_acked_not_delivered_twice() -> None:
    peer = established()
    start = peer.seq
    peer.send("P.", payload=b"hello")
    peer.expect(".", win=RCVBUF - 5)
    peer.send("P.", seq=start, payload=b"hello")
    peer.expect(".", ack=start + 5, win=RCVBUF - 5)
    assert peer.drops("unacceptable_segment") == 1
    assert peer.app_recv() == b"hello"


def test_partly_old_segment_delivers_only_the_new_part() -> None:
    peer = established()
    start = peer.seq
    peer.send("P.", payload=b"hello")
    peer.expect(".", win=RCVBUF - 5)
    peer.send("P.", seq=start, payload=b"hello world")
    peer.expect(".", ack=start + 11, win=RCVBUF - 11)
    peer.seq = start + 11
    assert peer.app_recv() == b"hello world"


@isns
def test_segment_beyond_window_gets_ack_and_is_dropped(isn: tuple[int, int]) -> None:
    peer = established(isn)
    peer.send("P.", seq=seq.add(peer.seq, RCVBUF), payload=b"far")
    peer.expect(".", ack=peer.seq)
    assert peer.drops("unacceptable_segment") == 1
    assert peer.app_recv() == b""


def test_data_overrunning_the_window_is_trimmed() -> None:
    peer = established()
    start = peer.seq
    peer.send(".", payload=b"z" * (RCVBUF + 500))
    peer.expect(".", ack=start + RCVBUF, win=0)
    peer.seq = start + RCVBUF
    assert len(peer.app_recv()) == RCVBUF


def test_zero_window_rejects_data_and_reopens_on_read() -> None:
    peer = established()
    peer.send(".", payload=b"q" * 4096)
    peer.expect(".", win=4096)
    peer.send(".", payload=b"q" * 4096)
    peer.expect(".", win=0)
    peer.send("P.", seq=peer.seq, payload=b"!")  # no room
    peer.expect(".", ack=peer.seq, win=0)
    assert peer.app_recv(1000) == b"q" * 1000
    peer.expect_none()  # 1000 octets free: less than one MSS, no update yet (SWS avoidance)
    assert len(peer.app_recv(1000)) == 1000
    peer.expect(".", ack=peer.seq, win=2000)  # window update


def test_zero_window_accepts_a_bare_ack_at_rcv_nxt() -> None:
    peer = established()
    peer.send(".", payload=b"q" * RCVBUF)
    peer.expect(".", win=0)
    peer.send(".")
    peer.expect_none()
    assert peer.state is State.ESTABLISHED


def test_window_shrinks_with_unread_data_and_opens_on_read() -> None:
    peer = established()
    peer.send(".", payload=b"d" * 3000)
    peer.expect(".", win=RCVBUF - 3000)
    assert len(peer.app_recv()) == 3000
    peer.expect(".", win=RCVBUF)


def test_segment_without_ack_is_dropped() -> None:
    peer = established()
    peer.send("P", payload=b"nope")
    peer.expect_none()
    assert peer.drops("no_ack") == 1
    assert peer.app_recv() == b""


@isns
def test_ack_of_unsent_data_is_dropped_with_an_ack(isn: tuple[int, int]) -> None:
    # RFC 5961 5.2 / RFC 9293 3.10.7.4 fifth check: SEG.ACK > SND.NXT.
    peer = established(isn)
    peer.send("P.", ack=seq.add(peer.ack, 1), payload=b"data")
    peer.expect(".", ack=seq.add(peer.seq, -4))  # the data was discarded too
    peer.seq = seq.add(peer.seq, -4)
    assert peer.drops("ack_of_unsent_data") == 1
    assert peer.app_recv() == b""
    assert peer.state is State.ESTABLISHED


@isns
def test_too_old_ack_is_dropped_with_an_ack(isn: tuple[int, int]) -> None:
    # RFC 5961 5.2: SEG.ACK < SND.UNA - MAX.SND.WND is discarded and answered with an ACK.
    peer = established(isn)
    peer.send("P.", ack=seq.add(peer.ack, -70_000), payload=b"old")
    peer.expect(".", ack=seq.add(peer.seq, -3))
    assert peer.drops("ack_too_old") == 1
    assert peer.app_recv() == b""


def test_duplicate_ack_within_the_window_is_ignored() -> None:
    peer = established()
    peer.send(".", ack=peer.ack - 10)
    peer.expect_none()
    assert peer.state is State.ESTABLISHED


def test_old_duplicate_ack_with_data_delivers_the_data() -> None:
    peer = established()
    peer.send("P.", ack=peer.ack - 10, payload=b"ok")
    peer.expect(".", win=RCVBUF - 2)
    assert peer.app_recv() == b"ok"


# ---------------------------------------------------------------------- sending


@isns
def test_small_write_goes_at_once_with_psh(isn: tuple[int, int]) -> None:
    peer = established(isn)
    assert peer.app_send(b"hello") == 5
    peer.expect("P.", seq=seq.add(peer.iss, 1), payload=b"hello")
    peer.send(".")
    peer.expect_none()
    assert peer.c().info()["send_q"] == 0


@isns
def test_write_is_segmented_to_mss_with_psh_on_the_last(isn: tuple[int, int]) -> None:
    peer = established_passive(isn, config=PLAIN.with_(nagle=False))
    data = bytes(range(256)) * 12  # 3072 octets
    peer.app_send(data)
    segs = peer.expect_many(3)
    m = send_mss()  # 1460 over IPv4, 1440 over IPv6
    assert [len(s.payload) for s in segs] == [m, m, 3072 - 2 * m]
    assert [s.flags for s in segs] == [0x10, 0x10, 0x18]
    assert b"".join(s.payload for s in segs) == data
    assert [s.seq for s in segs] == [seq.add(peer.iss, n) for n in (1, 1 + m, 1 + 2 * m)]


def test_a_train_of_full_segments_shares_one_window_and_ends_with_psh() -> None:
    # The rest of a train leaves through Sender._send_full_segments: what one segment at a time gave.
    peer = nodelay()
    m = send_mss()
    data = bytes(range(251)) * (5 * m // 251 + 1)
    peer.app_send(data[: 5 * m])
    segs = peer.expect_many(5)
    assert [s.seq for s in segs] == [seq.add(peer.iss, 1 + i * m) for i in range(5)]
    assert [s.flags for s in segs] == [0x10] * 4 + [0x18]
    assert len({(s.ack, s.window, s.options) for s in segs}) == 1
    assert b"".join(s.payload for s in segs) == data[: 5 * m]
    peer.expect_none()


def test_fin_rides_on_the_last_full_segment_of_a_train() -> None:
    peer = nodelay()
    peer.send(".", win=0)  # the window is closed: the data and the FIN wait
    m = send_mss()
    peer.app_send(b"f" * (3 * m))
    peer.app_shutdown()
    peer.expect_none()
    peer.send(".", win=PEER_WIN)
    segs = peer.expect_many(3)
    assert [s.flags for s in segs] == [0x10, 0x10, 0x19]  # FIN, PSH and ACK on the last
    assert [len(s.payload) for s in segs] == [m, m, m]
    assert peer.state is State.FIN_WAIT_1


def test_segmentation_to_a_smaller_peer_mss() -> None:
    peer = nodelay(peer_mss=1000)
    peer.app_send(b"m" * 2500)
    assert [len(s.payload) for s in peer.expect_many(3)] == [1000, 1000, 500]


def test_segmentation_to_the_default_mss_when_the_peer_sends_no_mss() -> None:
    """RFC 9293 3.7.1 (MUST-15): without an MSS option, 536 over IPv4 and 1220 over IPv6."""
    mss = 1220 if is_ipv6(remote_ip()) else 536
    peer = nodelay(peer_mss=None)
    peer.app_send(b"m" * (2 * mss + 128))
    segs = peer.expect_many(3)
    assert [len(s.payload) for s in segs] == [mss, mss, 128]
    assert segs[-1].flags & 0x08


def test_nagle_holds_a_small_segment_until_the_ack() -> None:
    peer = established()
    peer.app_send(b"first")
    peer.expect("P.", payload=b"first")
    peer.app_send(b"second")
    peer.expect_none()
    peer.send(".")
    peer.expect("P.", payload=b"second")


def test_each_write_gets_its_own_psh() -> None:
    peer = nodelay()
    peer.app_send(b"one")
    peer.expect("P.", payload=b"one")
    peer.app_send(b"two")
    peer.expect("P.", payload=b"two")


def test_peer_window_limits_what_is_sent() -> None:
    peer = established_passive(config=PLAIN.with_(nagle=False), syn_win=1000)
    peer.app_send(b"w" * 3000)
    segs = peer.expect_many(1)
    assert (len(segs[0].payload), segs[0].flags) == (1000, 0x10)
    peer.send(".", win=3000)
    segs = peer.expect_many(2)
    assert [len(s.payload) for s in segs] == [send_mss(), 2000 - send_mss()]
    assert segs[-1].flags == 0x18


def test_window_shrunk_below_sws_threshold_is_used_after_override_timeout() -> None:
    peer = nodelay()
    peer.send(".", win=1000)
    peer.app_send(b"w" * 3000)
    peer.expect_none()  # sender SWS avoidance waits...
    assert peer.deadline() is not None  # ...but only until the override timeout
    peer.fire()
    assert len(peer.expect_many(1)[0].payload) == 1000


def test_send_buffer_is_bounded() -> None:
    peer = nodelay(sndbuf=4000)
    peer.send(".", win=0)  # the peer's window is closed: everything stays queued
    assert peer.app_send(b"s" * 10_000) == 4000
    assert peer.app_send(b"more") == 0
    peer.expect_none()


def test_acked_data_frees_send_buffer() -> None:
    peer = nodelay(sndbuf=2000)
    assert peer.app_send(b"s" * 2000) == 2000
    assert len(peer.expect_many(2)) == 2
    assert peer.app_send(b"t") == 0
    peer.send(".")
    assert peer.app_send(b"t" * 5000) == 2000


def test_retransmission_timeout_resends_the_first_segment() -> None:
    peer = established()
    peer.app_send(b"lost")
    peer.expect("P.", payload=b"lost")
    assert peer.fire() == pytest.approx(1.0)  # handshake RTT 0 s: the RTO is rto_min (RFC 6298 2.4)
    peer.expect("P.", seq=peer.iss + 1, payload=b"lost")
    assert peer.deadline() == pytest.approx(3.0)  # backed off: 1 + 2 * 1


def test_zero_window_probe_after_persist_timer() -> None:
    peer = nodelay()
    peer.send(".", win=0)
    peer.app_send(b"probe")
    peer.expect_none()
    peer.fire()
    peer.expect(".", seq=peer.iss + 1, payload=b"p")  # one octet beyond the window


# ---------------------------------------------------------------------- FIN and closes


@isns
def test_fin_goes_to_close_wait(isn: tuple[int, int]) -> None:
    peer = established(isn)
    peer.send("F.")
    peer.expect(".", ack=seq.add(peer.irs, 2), win=RCVBUF - 1)
    assert peer.state is State.CLOSE_WAIT
    assert peer.c().at_eof
    assert peer.app_recv() == b""


def test_fin_with_data_delivers_then_eof() -> None:
    peer = established()
    peer.send("FP.", payload=b"last words")
    peer.expect(".", win=RCVBUF - 11)
    assert peer.state is State.CLOSE_WAIT
    assert peer.app_recv() == b"last words"
    assert peer.c().at_eof


def test_out_of_order_fin_waits_for_the_hole() -> None:
    peer = established()
    start = peer.seq
    peer.send("F.", seq=start + 5)
    peer.expect(".", ack=start)
    assert peer.state is State.ESTABLISHED
    peer.send(".", seq=start, payload=b"12345")
    peer.expect(".", ack=start + 6, win=RCVBUF - 6)
    peer.seq = start + 6
    assert peer.state is State.CLOSE_WAIT
    assert peer.app_recv() == b"12345"


@isns
def test_close_sends_fin(isn: tuple[int, int]) -> None:
    peer = established(isn)
    peer.app_close()
    peer.expect("F.", seq=seq.add(peer.iss, 1))
    assert peer.state is State.FIN_WAIT_1


def test_fin_follows_queued_data() -> None:
    peer = established()
    peer.app_send(b"data")
    peer.expect("P.", payload=b"data")
    peer.app_send(b"tail")  # held by Nagle...
    peer.app_close()  # ...and sent with the FIN
    peer.expect("FP.", seq=peer.iss + 5, payload=b"tail")


@isns
def test_close_with_unread_data_sends_rst(isn: tuple[int, int]) -> None:
    peer = established(isn)
    peer.send("P.", payload=b"unread")
    peer.expect(".", win=RCVBUF - 6)
    peer.app_close()
    peer.expect("R.", seq=seq.add(peer.iss, 1), ack=peer.seq, win=RCVBUF - 6)
    assert peer.state is State.CLOSED
    assert not peer.host.connections


@isns
def test_linger_zero_close_sends_rst(isn: tuple[int, int]) -> None:
    peer = established(isn)
    peer.c().linger_zero = True
    peer.app_close()
    peer.expect("R.", seq=seq.add(peer.iss, 1))
    assert peer.state is State.CLOSED
    assert peer.transitions()[-2:] == ["ESTABLISHED", "CLOSED"]


def test_abort_sends_rst_and_errors_the_application() -> None:
    peer = established()
    peer.app_abort()
    peer.expect("R.")
    with pytest.raises(ConnectionAbortedError):
        peer.c().send(b"x", peer.now)
    assert peer.host.deadline() is None


def test_rst_after_abort_data_is_at_snd_nxt() -> None:
    peer = nodelay()
    peer.app_send(b"in flight")
    peer.expect("P.", payload=b"in flight")
    peer.c().linger_zero = True
    peer.app_close()
    peer.expect("R.", seq=peer.iss + 10)
