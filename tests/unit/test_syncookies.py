"""The SYN cookie encoding (stack.tcp.syncookies): round trips, expiry, and strict refusal."""

from __future__ import annotations

import random

import pytest

from stack import seq
from stack.config import TcpConfig, linux_profile
from stack.tcp import syncookies as sc
from stack.wire.tcp import ACK, SYN, Mss, Nop, SackPermitted, TcpSegment, Timestamps, WindowScale

TUPLE = bytes([10, 0, 0, 2, 10, 0, 0, 1]) + (40000).to_bytes(2, "big") + (80).to_bytes(2, "big")


@pytest.mark.parametrize(("peer_mss", "encoded"), [
    (1460, 1460), (9000, 1460), (1459, 1440), (1440, 1440), (1400, 1300), (1300, 1300),
    (1299, 536), (536, 536), (100, 536),
])
def test_the_cookie_carries_the_largest_table_mss_not_above_the_peers(peer_mss: int, encoded: int) -> None:
    cookies = sc.SynCookies(b"key")
    cookie = cookies.make(10.0, TUPLE, 123456, peer_mss)
    assert cookies.check(10.0, TUPLE, 123456, cookie) == encoded


@pytest.mark.parametrize("peer_isn", [0, 1, 2**32 - 1, 2**31])
def test_round_trip_across_the_sequence_wrap(peer_isn: int) -> None:
    cookies = sc.SynCookies(b"key")
    assert cookies.check(5.0, TUPLE, peer_isn, cookies.make(5.0, TUPLE, peer_isn, 1460)) == 1460


def test_a_cookie_lives_one_to_two_minutes() -> None:
    cookies = sc.SynCookies(b"key")
    cookie = cookies.make(59.0, TUPLE, 7, 1460)  # minute 0
    assert cookies.check(60.0, TUPLE, 7, cookie) == 1460  # minute 1: still valid
    assert cookies.check(119.9, TUPLE, 7, cookie) == 1460
    assert cookies.check(120.0, TUPLE, 7, cookie) is None  # minute 2: MAX_AGE reached


def test_another_tuple_isn_key_or_cookie_is_refused() -> None:
    cookies = sc.SynCookies(b"key")
    cookie = cookies.make(1.0, TUPLE, 7, 1460)
    other_port = TUPLE[:8] + (40001).to_bytes(2, "big") + TUPLE[10:]
    assert cookies.check(1.0, other_port, 7, cookie) is None
    for isn in (6, 8, 9, 10):  # the peer's ISN is hashed too, not only added
        assert cookies.check(1.0, TUPLE, isn, cookie) is None
    assert cookies.check(1.0, TUPLE, 7, seq.add(cookie, 1)) is None
    assert sc.SynCookies(b"other key").check(1.0, TUPLE, 7, cookie) is None


def test_random_guesses_are_refused() -> None:
    """About 2**-29 of random cookies pass: none of 200,000."""
    cookies = sc.SynCookies(b"key")
    rng = random.Random(5)
    passed = sum(cookies.check(30.0, TUPLE, 7, rng.randrange(1 << 32)) is not None for _ in range(200_000))
    assert passed == 0


@pytest.mark.parametrize(("wscale", "sack"), [(None, False), (None, True), (0, False), (7, True), (14, True)])
@pytest.mark.parametrize("tsval", [0, 63, 64, 1_000_000, 2**32 - 1])
def test_timestamp_bits_carry_window_scale_and_sack(wscale: int | None, sack: bool, tsval: int) -> None:
    ts = sc.encode_ts(tsval, wscale, sack)
    assert seq.le(ts, tsval) and seq.sub(tsval, ts) < 64  # never ahead of the clock
    assert sc.decode_ts(ts) == (wscale, sack)


def test_timestamp_bits_decode() -> None:
    assert sc.decode_ts(0b001111) == (None, False)  # 15: no window scale
    assert sc.decode_ts(0b000101) == (5, False)
    assert sc.decode_ts(0b011110) == (14, True)
    assert sc.decode_ts(0b100000) is None  # ECN: never sent by the stack


def test_synack_option_layout_follows_the_syn() -> None:
    cfg = TcpConfig()
    syn = TcpSegment(40000, 80, 99, 0, SYN, 64240,
                     options=(Mss(1460), SackPermitted(), Timestamps(555, 0), Nop(), WindowScale(7)))
    out = sc.synack(cfg, syn, 1234, 100_000)
    assert (out.flags, out.seq, out.ack, out.window) == (SYN | ACK, 1234, 100, 65535)
    assert out.options[0] == Mss(cfg.mss) and out.options[1] == SackPermitted()
    ts = out.options[2]
    assert isinstance(ts, Timestamps) and ts.tsecr == 555 and sc.decode_ts(ts.tsval) == (7, True)
    assert out.options[3:] == (Nop(), WindowScale(sc.wscale_for(cfg)))


def test_without_timestamps_the_synack_offers_neither_sack_nor_window_scale() -> None:
    syn = TcpSegment(40000, 80, 99, 0, SYN, 64240, options=(Mss(1460), SackPermitted(), WindowScale(7)))
    assert sc.synack(TcpConfig(), syn, 1, 0).options == (Mss(1460),)


def test_wscale_for_matches_what_a_connection_announces() -> None:
    sizes = (65535, 65536, 256 * 1024, 1 << 30)
    assert [sc.wscale_for(TcpConfig(rcvbuf=n)) for n in sizes] == [0, 1, 3, 14]
    linux = linux_profile()  # scales for tcp_rmem[2] (6 MB) unless SO_RCVBUF fixed the buffer
    assert sc.wscale_for(linux) == 7
    assert sc.wscale_for(linux.with_(rcvbuf_locked=True)) == 3
