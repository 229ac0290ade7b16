"""The packetdrill script front end: realistic scripts parse to the expected AST, every construct
is covered, unsupported syntax becomes an UnsupportedEvent, malformed lines give exact errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drill import ParseError, parse_script
from drill.ast import (
    ELIDED,
    CodeEvent,
    Direction,
    Elided,
    Eol,
    IcmpEvent,
    IntLit,
    ListExpr,
    Mss,
    Nop,
    PacketEvent,
    RawStruct,
    Sack,
    SackOk,
    ShellEvent,
    StringLit,
    Symbols,
    SyscallEvent,
    TcpOption,
    TimeKind,
    Timestamp,
    Timing,
    UnsupportedEvent,
    WScale,
)
from drill.lexer import Kind, tokenize
from drill.parser import seconds_to_usecs

IN, OUT = Direction.IN, Direction.OUT


def rel(secs: float, block: float | None = None) -> Timing:
    return Timing(TimeKind.RELATIVE, round(secs * 1e6), None, None if block is None else round(block * 1e6))


def ab(secs: float) -> Timing:
    return Timing(TimeKind.ABSOLUTE, round(secs * 1e6))


def sym(*names: str) -> Symbols:
    return Symbols(names)


def i(v: int) -> IntLit:
    return IntLit(v)


def call(line: int, timing: Timing, name: str, *args: object, result: int = 0, **kw: str) -> SyscallEvent:
    return SyscallEvent(line=line, timing=timing, name=name, args=tuple(args), result=result, **kw)  # type: ignore[arg-type]


def pkt(
    line: int, timing: Timing, direction: Direction, flags: str, seq: tuple[int, int], **kw: object
) -> PacketEvent:
    start, end = seq
    return PacketEvent(
        line=line, timing=timing, direction=direction, flags=flags, seq_start=start, seq_end=end,
        payload_len=end - start, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


LISTEN_PREAMBLE = """\
0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0  setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0  bind(3, ..., ...) = 0
+0  listen(3, 1) = 0
"""

PREAMBLE_EVENTS = [
    call(1, ab(0), "socket", ELIDED, sym("SOCK_STREAM"), sym("IPPROTO_TCP"), result=3),
    call(2, rel(0), "setsockopt", i(3), sym("SOL_SOCKET"), sym("SO_REUSEADDR"), ListExpr((i(1),)), i(4)),
    call(3, rel(0), "bind", i(3), ELIDED, ELIDED),
    call(4, rel(0), "listen", i(3), i(1)),
]


# --- realistic scripts ------------------------------------------------------------------------


def test_passive_open_and_read() -> None:
    script = parse_script(
        LISTEN_PREAMBLE
        + """\
+0  < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0  > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+.1 < . 1:1(0) ack 1 win 257
+0  accept(3, ..., ...) = 4
+0  < P. 1:1001(1000) ack 1 win 257
+0  > . 1:1(0) ack 1001
+0  read(4, ..., 1000) = 1000
"""
    )
    assert list(script.events) == [
        *PREAMBLE_EVENTS,
        pkt(5, rel(0), IN, "S", (0, 0), win=32792,
            options=(Mss(1000), SackOk(), Nop(), Nop(), Nop(), WScale(7))),
        pkt(6, rel(0), OUT, "S.", (0, 0), ack=1,
            options=(Mss(1460), Nop(), Nop(), SackOk(), Nop(), WScale(8))),
        pkt(7, rel(0.1), IN, ".", (1, 1), ack=1, win=257),
        call(8, rel(0), "accept", i(3), ELIDED, ELIDED, result=4),
        pkt(9, rel(0), IN, "P.", (1, 1001), ack=1, win=257),
        pkt(10, rel(0), OUT, ".", (1, 1), ack=1001),
        call(11, rel(0), "read", i(4), ELIDED, i(1000), result=1000),
    ]  # fmt: skip
    assert script.options == {}
    assert script.init_command is None


def test_active_open_nonblocking() -> None:
    script = parse_script(
        """\
// Nonblocking connect, then check SO_ERROR.
0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 4
+0  fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0  connect(4, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0  > S 0:0(0) <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
+.05 < S. 0:0(0) ack 1 win 5792 <mss 1460,sackOK,TS val 700 ecr 100,nop,wscale 7>
+0  > . 1:1(0) ack 1 <nop,nop,TS val 105 ecr 700>
+0  getsockopt(4, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
+0  write(4, ..., 1000) = 1000
+0  > P. 1:1001(1000) ack 1 <nop,nop,TS val 105 ecr 700>
"""
    )
    ev = script.events
    assert ev[1] == call(3, rel(0), "fcntl", i(4), sym("F_SETFL"), sym("O_RDWR", "O_NONBLOCK"))
    assert ev[2] == call(
        4, rel(0), "connect", i(4), ELIDED, ELIDED, result=-1, errno="EINPROGRESS",
        note="Operation now in progress",
    )  # fmt: skip
    assert ev[3] == pkt(
        5, rel(0), OUT, "S", (0, 0), options=(Mss(1460), SackOk(), Timestamp(100, 0), Nop(), WScale(7))
    )
    assert isinstance(ev[4], PacketEvent) and ev[4].timing == rel(0.05) and ev[4].win == 5792
    assert ev[5] == pkt(7, rel(0), OUT, ".", (1, 1), ack=1, options=(Nop(), Nop(), Timestamp(105, 700)))
    assert ev[6] == call(8, rel(0), "getsockopt", i(4), sym("SOL_SOCKET"), sym("SO_ERROR"),
                         ListExpr((i(0),)), ListExpr((i(4),)))  # fmt: skip
    assert [type(e).__name__ for e in ev] == ["SyscallEvent"] * 3 + ["PacketEvent"] * 3 + [
        "SyscallEvent"
    ] * 2 + ["PacketEvent"]


def test_active_close_fin_wait_and_time_wait() -> None:
    script = parse_script(
        """\
0.000 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
0.000 connect(3, ..., ...) = 0
0.000 close(3) = 0
0.000 > F. 1:1(0) ack 1
0.010 < . 1:1(0) ack 2 win 257
0.020 < F. 1:1(0) ack 2 win 257
0.020 > . 2:2(0) ack 2
/* A retransmitted FIN in TIME_WAIT
   is ACKed again. */
0.500 < F. 1:1(0) ack 2 win 257
0.500 > . 2:2(0) ack 2
"""
    )
    assert [e.line for e in script.events] == [1, 2, 3, 4, 5, 6, 7, 10, 11]
    assert script.events[2] == call(3, ab(0), "close", i(3))
    assert script.events[3] == pkt(4, ab(0), OUT, "F.", (1, 1), ack=1)
    assert script.events[7] == pkt(10, ab(0.5), IN, "F.", (1, 1), ack=2, win=257)


def test_passive_close_close_wait_last_ack() -> None:
    script = parse_script(
        LISTEN_PREAMBLE
        + """\
+0 < S 0:0(0) win 65535 <mss 1460>
+0 > S. 0:0(0) ack 1 <mss 1460>
+0 < . 1:1(0) ack 1 win 65535
+0 accept(3, ..., ...) = 4
+0 < F. 1:1(0) ack 1 win 65535
+0 > . 1:1(0) ack 2
+0 read(4, ..., 100) = 0
+0 close(4) = 0
+0 > F. 1:1(0) ack 2
+0 < . 2:2(0) ack 2 win 65535
"""
    )
    assert script.events[10] == call(11, rel(0), "read", i(4), ELIDED, i(100), result=0)
    assert script.events[12] == pkt(13, rel(0), OUT, "F.", (1, 1), ack=2)
    assert script.events[13] == pkt(14, rel(0), IN, ".", (2, 2), ack=2, win=65535)


def test_half_close_with_shutdown() -> None:
    script = parse_script(
        """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 connect(3, ..., ...) = 0
+0 shutdown(3, SHUT_WR) = 0
+0 > F. 1:1(0) ack 1
+0 < . 1:101(100) ack 2 win 257
+0 > . 2:2(0) ack 101
+0 read(3, ..., 100) = 100
+0 write(3, ..., 10) = -1 EPIPE (Broken pipe)
"""
    )
    assert script.events[2] == call(3, rel(0), "shutdown", i(3), sym("SHUT_WR"))
    assert script.events[4] == pkt(5, rel(0), IN, ".", (1, 101), ack=2, win=257)
    assert script.events[7] == call(
        8, rel(0), "write", i(3), ELIDED, i(10), result=-1, errno="EPIPE", note="Broken pipe"
    )


def test_reset_during_established() -> None:
    script = parse_script(
        """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 connect(3, ..., ...) = 0
+0.1 < R 1:1(0) win 0
+0 read(3, ..., 10) = -1 ECONNRESET (Connection reset by peer)
+0 < R. 1:1(0) ack 1 win 0
+0 write(3, ..., 10) = -1 EPIPE
"""
    )
    assert script.events[2] == pkt(3, rel(0.1), IN, "R", (1, 1), win=0)
    assert script.events[3] == call(
        4, rel(0), "read", i(3), ELIDED, i(10), result=-1, errno="ECONNRESET",
        note="Connection reset by peer",
    )  # fmt: skip
    assert script.events[4] == pkt(5, rel(0), IN, "R.", (1, 1), ack=1, win=0)
    assert script.events[5] == call(6, rel(0), "write", i(3), ELIDED, i(10), result=-1, errno="EPIPE")


def test_out_of_order_receive_sends_sack_blocks() -> None:
    script = parse_script(
        """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4
+0 connect(4, ..., ...) = 0
+0 < . 1001:2001(1000) ack 1 win 257
+0 > . 1:1(0) ack 1 <nop,nop,sack 1001:2001>
+0 < . 3001:4001(1000) ack 1 win 257
+0 > . 1:1(0) ack 1 <nop,nop,sack 3001:4001 1001:2001>
+0 < . 1:1001(1000) ack 1 win 257
+0 > . 1:1(0) ack 2001 <nop,nop,sack 3001:4001>
"""
    )
    assert script.events[3] == pkt(
        4, rel(0), OUT, ".", (1, 1), ack=1, options=(Nop(), Nop(), Sack(((1001, 2001),)))
    )
    assert script.events[5] == pkt(
        6, rel(0), OUT, ".", (1, 1), ack=1, options=(Nop(), Nop(), Sack(((3001, 4001), (1001, 2001))))
    )


def test_zero_window_probe_with_ranges() -> None:
    script = parse_script(
        """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4
+0 connect(4, ..., ...) = 0
+0 < . 1:1(0) ack 1 win 0
+0 write(4, ..., 2000) = 2000
// Probes back off: 200 ms, then 400 ms.
+.2~+.21 > . 0:0(0) ack 1
+.4~+.42 > . 0:0(0) ack 1
0.7~0.8 > . 0:0(0) ack 1
* > . 0:0(0) ack 1 <...>
+0 < . 1:1(0) ack 1 win 257
"""
    )
    probe = script.events[4]
    assert probe == pkt(6, Timing(TimeKind.RELATIVE_RANGE, 200_000, 210_000), OUT, ".", (0, 0), ack=1)
    assert script.events[5].timing == Timing(TimeKind.RELATIVE_RANGE, 400_000, 420_000)
    assert script.events[6].timing == Timing(TimeKind.ABSOLUTE_RANGE, 700_000, 800_000)
    assert script.events[7] == pkt(9, Timing(TimeKind.ANY), OUT, ".", (0, 0), ack=1, options=ELIDED)


def test_retransmission_timeout_with_absolute_times() -> None:
    script = parse_script(
        """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
0 > S 0:0(0) <...>
1 > S 0:0(0) <...>
3 > S 0:0(0) <...>
7 > S 0:0(0) <...>
"""
    )
    assert [e.timing for e in script.events[3:]] == [ab(0), ab(1), ab(3), ab(7)]


def test_blocking_read_and_accept() -> None:
    script = parse_script(
        LISTEN_PREAMBLE
        + """\
+0...0.2 accept(3, ..., ...) = 4
+.2 < S 0:0(0) win 32792 <mss 1000>
+0 > S. 0:0(0) ack 1 <mss 1460>
+0 < . 1:1(0) ack 1 win 257
+0...0.300 read(4, ..., 10) = 10
+.3 < P. 1:11(10) ack 1 win 257
0.600...0.600 close(4) = 0
"""
    )
    assert script.events[4] == call(5, rel(0, block=0.2), "accept", i(3), ELIDED, ELIDED, result=4)
    assert script.events[8].timing == rel(0, block=0.3)
    assert script.events[10].timing == Timing(TimeKind.ABSOLUTE, 600_000, None, 600_000)


def test_linux_style_script_with_header_and_unsupported_parts() -> None:
    script = parse_script(
        """\
// Test of the receive path in the style of the Linux suite.
--tolerance_usecs=10000
--mss=1000
--no_verify

`../common/defaults.sh`

    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=0}, 8) = 0
   +0 setsockopt(3, SOL_TCP, TCP_CONGESTION, "reno", 4) = 0
   +0 `sysctl -q net.ipv4.tcp_sack=0`
   +0 getsockopt(3, SOL_TCP, TCP_INFO, {tcpi_state=TCP_CLOSE}, 232) = 0
   +0 %{
assert tcpi_snd_cwnd == 10
}%
   +0 close(3) = 0
"""
    )
    assert script.options == {"tolerance_usecs": "10000", "mss": "1000", "no_verify": None}
    assert script.init_command == ShellEvent(line=6, timing=None, command="../common/defaults.sh")
    ev = script.events
    assert ev[1] == call(
        9, rel(0), "setsockopt", i(3), sym("SOL_SOCKET"), sym("SO_LINGER"),
        RawStruct("{l_onoff=1, l_linger=0}"), i(8),
    )  # fmt: skip
    assert ev[2] == call(10, rel(0), "setsockopt", i(3), sym("SOL_TCP"), sym("TCP_CONGESTION"),
                         StringLit("reno"), i(4))  # fmt: skip
    assert ev[3] == ShellEvent(line=11, timing=rel(0), command="sysctl -q net.ipv4.tcp_sack=0")
    assert ev[4] == UnsupportedEvent(line=12, timing=rel(0), what="tcpi_ fields in getsockopt()")
    assert ev[5] == CodeEvent(line=13, timing=rel(0), code="\nassert tcpi_snd_cwnd == 10\n")
    assert ev[6] == call(16, rel(0), "close", i(3))


def test_urgent_and_ecn_flags() -> None:
    script = parse_script(
        """\
0 < SEW 0:0(0) win 32792 <mss 1000>
+0 > S.E 0:0(0) ack 1 <mss 1460>
+0 < UP. 1:2(1) ack 1 urg 1 win 257
+0 > . 1:1(0) ack 2 win 65535 urg 0
"""
    )
    assert [e.flags for e in script.events if isinstance(e, PacketEvent)] == ["SEW", "S.E", "UP.", "."]
    assert script.events[2] == pkt(3, rel(0), IN, "UP.", (1, 2), ack=1, urg=1, win=257)
    assert script.events[3] == pkt(4, rel(0), OUT, ".", (1, 1), ack=2, win=65535, urg=0)


# --- individual constructs --------------------------------------------------------------------


def one(line: str) -> object:
    script = parse_script(line)
    assert len(script.events) == 1
    return script.events[0]


@pytest.mark.parametrize(
    ("text", "usecs"),
    [("0", 0), ("1", 1_000_000), (".1", 100_000), ("0.000001", 1), ("2.5", 2_500_000), ("0.0000005", 1)],
)
def test_seconds_to_usecs_is_exact(text: str, usecs: int) -> None:
    assert seconds_to_usecs(text) == usecs


@pytest.mark.parametrize(
    ("prefix", "timing"),
    [
        ("0", ab(0)),
        ("1.25", ab(1.25)),
        ("+0", rel(0)),
        ("+.1", rel(0.1)),
        ("+1", rel(1)),
        ("*", Timing(TimeKind.ANY)),
        ("0.1~0.2", Timing(TimeKind.ABSOLUTE_RANGE, 100_000, 200_000)),
        ("+0.1~+0.2", Timing(TimeKind.RELATIVE_RANGE, 100_000, 200_000)),
        ("+0~+0", Timing(TimeKind.RELATIVE_RANGE, 0, 0)),
    ],
)
def test_timing_forms(prefix: str, timing: Timing) -> None:
    event = one(f"{prefix} > . 1:1(0) ack 1")
    assert isinstance(event, PacketEvent) and event.timing == timing


@pytest.mark.parametrize(
    ("arg", "expr"),
    [
        ("...", ELIDED),
        ("7", i(7)),
        ("0x10", i(16)),
        ("-1", i(-1)),
        ("SOCK_STREAM", sym("SOCK_STREAM")),
        ("O_RDWR|O_NONBLOCK|O_CLOEXEC", sym("O_RDWR", "O_NONBLOCK", "O_CLOEXEC")),
        ("[1]", ListExpr((i(1),))),
        ("[]", ListExpr(())),
        ("[ECONNREFUSED]", ListExpr((sym("ECONNREFUSED"),))),
        ("[{iov_base=..., iov_len=10}]", ListExpr((RawStruct("{iov_base=..., iov_len=10}"),))),
        ('{sa_family=AF_INET, sin_addr=inet_addr("1.2.3.4")}',
         RawStruct('{sa_family=AF_INET, sin_addr=inet_addr("1.2.3.4")}')),
        ('"abc"', StringLit("abc")),
        ('"a\\"b\\n\\x41"', StringLit('a"b\nA')),
        ('"abc"...', StringLit("abc", prefix=True)),
    ],
)  # fmt: skip
def test_syscall_argument_expressions(arg: str, expr: object) -> None:
    event = one(f"0 f(3, {arg}) = 0")
    assert isinstance(event, SyscallEvent) and event.args == (i(3), expr)


def test_syscall_without_arguments_and_hex_result() -> None:
    assert one("0 getpid() = 0x10") == call(1, ab(0), "getpid", result=16)


def test_note_without_errno() -> None:
    event = one("+0 fcntl(3, F_GETFL) = 0x802 (flags O_RDWR|O_NONBLOCK)")
    assert event == call(
        1, rel(0), "fcntl", i(3), sym("F_GETFL"), result=0x802, note="flags O_RDWR|O_NONBLOCK"
    )


def test_struct_may_span_lines_and_keeps_later_line_numbers() -> None:
    script = parse_script(
        "0 sendmsg(4, {msg_name(...)=...,\n"
        "              msg_iov(1)=[{..., 10}], msg_flags=0}, 0) = 10\n"
        "+0 > P. 1:11(10) ack 1\n"
    )
    assert isinstance(script.events[0], SyscallEvent) and script.events[0].line == 1
    assert script.events[0].args[1] == RawStruct(
        "{msg_name(...)=...,\n              msg_iov(1)=[{..., 10}], msg_flags=0}"
    )
    assert script.events[1].line == 3


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("", None),
        (" <...>", ELIDED),
        (" <nop>", (Nop(),)),
        (" <eol>", (Eol(),)),
        (" <nop,nop,eol>", (Nop(), Nop(), Eol())),
        (" <mss 536>", (Mss(536),)),
        (" <sackOK>", (SackOk(),)),
        (" <wscale 14>", (WScale(14),)),
        (" <TS val 4294967295 ecr 0>", (Timestamp(4294967295, 0),)),
        (" <sack 1:2 3:4 5:6>", (Sack(((1, 2), (3, 4), (5, 6))),)),
        (" < mss 1460 , nop , wscale 7 >", (Mss(1460), Nop(), WScale(7))),
    ],
)
def test_tcp_options(text: str, options: object) -> None:
    event = one(f"+0 > S 0:0(0){text}")
    assert isinstance(event, PacketEvent) and event.options == options


def test_absent_and_elided_options_are_distinct() -> None:
    absent, elided = parse_script("0 > S 0:0(0)\n0 > S 0:0(0) <...>\n").events
    assert isinstance(absent, PacketEvent) and isinstance(elided, PacketEvent)
    assert absent.options is None and elided.options is ELIDED


def test_sequence_numbers_may_wrap() -> None:
    event = one("0 < . 4294967000:200(496) ack 1 win 100")
    assert isinstance(event, PacketEvent)
    assert (event.seq_start, event.seq_end, event.payload_len) == (4294967000, 200, 496)


def test_comments_everywhere() -> None:
    script = parse_script(
        "/* header\n comment */ 0 close(3) = 0 // trailing\n"
        "// whole line\n"
        "+0 /* inline */ > F. 1:1(0) ack 1 /* multi\nline */\n"
        "+0 < . 1:1(0) ack 2 win 1\n"
    )
    assert [e.line for e in script.events] == [2, 4, 6]


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("+0 < S 0:0(0) win 1000 <mss 1000>/udp(1 > 9811)", "TCP over UDP encapsulation (/udp)"),
        ("+0 getsockopt(3, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=0}, [8]) = 0",
         "struct argument to getsockopt()"),
        ("+0 getsockopt(3, SOL_TCP, TCP_INFO, [{tcpi_rto=200000}], [232]) = 0",
         "struct argument to getsockopt()"),
        ("+0 setsockopt(3, SOL_TCP, TCP_X, {tcpi_x=1}, 4) = 0", "tcpi_ fields in setsockopt()"),
        ("+0 < udp (1472)", "udp packet"),
        ("+0 > icmp unreachable port [1:1(0)]", "icmp packet"),
        ("+0 < [ect0] . 1:1(0) ack 1 win 257", "IP-level packet field"),
        ("+0 > (mf) . 1:1(0) ack 1", "IP-level packet field mf"),
        ("+0 > (ttl 4, flowlabel 1) . 1:1(0) ack 1", "IP-level packet field flowlabel"),
        ("+0 < S 0:0(0) win 1000 <mss 1000,FO abcd1234,nop,nop>", "TCP option 'FO'"),
        ("+0 < S 0:0(0) win 1000 <md5 000102>", "TCP option 'md5'"),
    ],
)  # fmt: skip
def test_unsupported_syntax_becomes_an_event_naming_the_line(text: str, what: str) -> None:
    script = parse_script(f"0 close(9) = 0\n{text}\n+0 close(3) = 0\n")
    assert script.events[1] == UnsupportedEvent(line=2, timing=rel(0), what=what)
    assert script.events[2] == call(3, rel(0), "close", i(3))


def test_ip_header_fields_and_absolute_sequence_numbers() -> None:
    script = parse_script(
        "0 > (ttl 4) R. 0:0(0)! ack 1 win 0\n+0 < (tos 0x28, ttl 3) S 0:0(0) win 1\n"
        "+0 > (hlim 6) . 1:1(0) ack 1\n+0 > (class 0xe0) . 1:1(0) ack 1\n"
    )
    fields = [(e.ip_fields, e.seq_absolute) for e in script.events if isinstance(e, PacketEvent)]
    assert fields == [
        ((("ttl", 4),), True),
        ((("tos", 0x28), ("ttl", 3)), False),
        ((("hlim", 6),), False),
        ((("class", 0xE0),), False),
    ]
    with pytest.raises(ParseError):
        parse_script("0 > (ttl 256) . 1:1(0) ack 1\n")


def test_shell_commands_and_code_blocks_are_events_for_the_runner() -> None:
    script = parse_script("`sysctl -w a.b=1`\n0 `echo hi`\n+0 %{ x = 1 }%\n")
    assert script.init_command == ShellEvent(line=1, timing=None, command="sysctl -w a.b=1")
    assert script.events == (
        ShellEvent(line=2, timing=Timing(TimeKind.ABSOLUTE, 0), command="echo hi"),
        CodeEvent(line=3, timing=rel(0), code=" x = 1 "),
    )


def test_an_untimed_command_after_the_last_event_is_the_cleanup_command() -> None:
    script = parse_script("0 close(3) = 0\n\n`setkey -F`\n")
    assert script.cleanup_command == ShellEvent(line=3, timing=None, command="setkey -F")
    with pytest.raises(ParseError) as err:
        parse_script("0 close(3) = 0\n`setkey -F`\n+0 close(4) = 0\n")
    assert (err.value.line, "first or last" in err.value.message) == (2, True)


def test_inbound_icmp_lines() -> None:
    script = parse_script(
        "0 close(9) = 0\n+0 < icmp unreachable frag_needed mtu 1200 [1:1461(1460)]\n"
        "+0 < icmp parameter_problem code_1\n+0 < icmp source_quench [0:0(0)]\n"
    )
    assert script.events[1:] == (
        IcmpEvent(line=2, timing=rel(0), icmp_type="unreachable", code="frag_needed", mtu=1200, quoted_seq=1),
        IcmpEvent(line=3, timing=rel(0), icmp_type="parameter_problem", code="code_1"),
        IcmpEvent(line=4, timing=rel(0), icmp_type="source_quench", quoted_seq=0),
    )
    for bad, at in (("< icmp unreachables [0:0(0)]", "unreachables"),
                    ("< icmp unreachable port_unreachble", "port_"), ("< icmp unreachable [0:1(0)]", "0:1")):
        with pytest.raises(ParseError) as err:
            parse_script(f"0 {bad}\n")
        assert (err.value.line, err.value.column) == (1, f"0 {bad}".index(at) + 1), str(err.value)


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("+0 < icmp unreachable port_unreachable [0:0(0)/udp(9 > 1)]", "TCP over UDP encapsulation (/udp)"),
    ],
)
def test_icmp_lines_the_runner_cannot_inject_are_unsupported(line: str, what: str) -> None:
    script = parse_script(f"0 close(9) = 0\n{line}\n")
    assert script.events[1] == UnsupportedEvent(line=2, timing=rel(0), what=what)


def test_elided_sequence_numbers_are_unsupported() -> None:
    script = parse_script("0 close(9) = 0\n+0 > S. ...(0) ack 4 win 65535\n")
    assert script.events[1] == UnsupportedEvent(line=2, timing=rel(0), what="elided sequence numbers")


def test_call_arguments_continue_after_a_comma_or_parenthesis_only() -> None:
    text = "0 setsockopt(\n  3, SOL_SOCKET,\n  SO_RCVBUF, [8192],\n  4) = 0\n+0 close(3) = 0\n"
    script = parse_script(text)
    assert script.events[0] == call(
        1, Timing(TimeKind.ABSOLUTE, 0), "setsockopt", i(3), sym("SOL_SOCKET"), sym("SO_RCVBUF"),
        ListExpr((i(8192),)), i(4),
    )  # fmt: skip
    assert script.events[1] == call(5, rel(0), "close", i(3))


# --- errors -----------------------------------------------------------------------------------

BASE = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"


@pytest.mark.parametrize(
    ("bad", "column", "message"),
    [
        ("close(3) = 0", 1, "expected an event time"),
        ("+0", 3, "expected a packet"),
        ("+0 close(3) = 0 5", 17, "expected end of line, got '5'"),
        ("+0 close(3) = 0 extra", 15, "an errno goes with a result of -1"),
        ("+0 close(3)", 12, "expected '=' and the expected result"),
        ("+0 close(3) =", 14, "expected the expected result"),
        ("+0 write(4, ..., 10 = 10", 21, "expected ',' or ')'"),
        ("+0 write(4, ..., 10", 20, "expected ',' or ')', got end of line"),
        ("+0 write(4, ..., @) = 1", 18, "expected an argument"),
        ("+0 fcntl(3, F_SETFL, O_RDWR|7) = 0", 29, "symbolic constant after '|'"),
        ("+0 close(3) = 0 EAGAIN", 15, "an errno goes with a result of -1"),
        ("+0 read(3, ..., 1) = -1 EAGAIN (Resource", 41, "')' closing the note"),
        ("+0 > SX 0:0(0)", 6, "expected TCP flags"),
        ("+0 > SS 0:0(0)", 6, "expected TCP flags"),
        ("+0 > 0:0(0)", 6, "expected TCP flags"),
        ("+0 < P. 1:1001(100) ack 1", 9, "inconsistent TCP sequence numbers and payload length"),
        ("+0 < . 1:1(0) win 70000", 19, "win value 70000 out of range"),
        ("+0 < . 4294967296:0(0)", 8, "start sequence number 4294967296 out of range"),
        ("+0 < . 1:1(0) ack 1 ack 2", 21, "'ack' given twice"),
        ("+0 < . 1:1 ack 1", 12, "expected '(', got 'ack'"),
        ("+0 < S 0:0(0) <>", 16, "expected a TCP option"),
        ("+0 < S 0:0(0) <msss 1460>", 16, "expected a TCP option"),
        ("+0 < S 0:0(0) <mss 1460 nop>", 25, "expected ',' or '>'"),
        ("+0 < S 0:0(0) <mss 1460", 24, "expected ',' or '>', got end of line"),
        ("+0 < S 0:0(0) <TS val 1>", 24, "expected 'ecr'"),
        ("+0 < S 0:0(0) <sack>", 20, "SACK block left edge"),
        ("+0 < S 0:0(0) <wscale 256>", 23, "wscale value 256 out of range"),
        ("+0 < S 0:0(0) <...", 19, "expected '>'"),
        ("* < S 0:0(0)", 1, "'*' can only be used with outbound packets"),
        ("* close(3) = 0", 1, "'*' can only be used with outbound packets"),
        ("+0~+1 close(3) = 0", 1, "time range can only be used with outbound packets"),
        ("0~1 < . 1:1(0)", 1, "time range can only be used with outbound packets"),
        ("+0.2~+0.1 > . 1:1(0)", 5, "time range is backwards"),
        ("+0.1~0.2 > . 1:1(0)", 6, "expected '+' (a relative range is written +a~+b)"),
        ("+0...0.2 > . 1:1(0)", 10, "expected a system call after '...'"),
        ("0.5...0.2 read(3, ..., 1) = 1", 7, "blocking call ends before it starts"),
        ("0x10 close(3) = 0", 1, "expected a time in seconds"),
        ("+0x1 close(3) = 0", 2, "expected a time in seconds"),
        ("--late_option=1", 1, "options must come before the first event"),
        ("`late untimed command`", 1, "expected an event time"),
    ],
)
def test_malformed_line_reports_line_and_column(bad: str, column: int, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_script(BASE + "\n// comment\n" + bad + "\n+0 close(3) = 0\n")
    assert (err.value.line, err.value.column) == (4, column), str(err.value)
    assert message in err.value.message
    assert str(err.value).startswith(f"line 4, column {column}: ")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('+0 write(3, "abc, 3) = 3', "unterminated string"),
        ("+0 /* never closed", "unterminated /* comment"),
        ("+0 %{ never closed", "unterminated %{ }% block"),
        ("+0 `never closed", "unterminated backquoted command"),
        ("+0 setsockopt(3, {a=1, 4) = 0", "unterminated '{'"),
        ('+0 write(3, "\\q", 1) = 1', "unknown escape"),
    ],
)
def test_unterminated_constructs_report_where_they_start(bad: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_script(BASE + "\n" + bad + "\n+0 close(3) = 0\n")
    assert err.value.line == 3
    assert message in err.value.message


# --- tokenizer --------------------------------------------------------------------------------


def test_tokenizer_splits_ellipsis_times_and_flags() -> None:
    toks = tokenize("+0...0.2 > S. 0x1f:.5\n")
    assert [(t.kind, t.text) for t in toks] == [
        (Kind.PUNCT, "+"),
        (Kind.INT, "0"),
        (Kind.ELLIPSIS, "..."),
        (Kind.FLOAT, "0.2"),
        (Kind.PUNCT, ">"),
        (Kind.WORD, "S"),
        (Kind.PUNCT, "."),
        (Kind.INT, "0x1f"),
        (Kind.PUNCT, ":"),
        (Kind.FLOAT, ".5"),
        (Kind.NEWLINE, "\n"),
        (Kind.EOF, ""),
    ]
    assert [t.column for t in toks[:8]] == [1, 2, 3, 6, 10, 12, 13, 15]


def test_tokenizer_tracks_lines_through_multiline_constructs() -> None:
    toks = tokenize("%{\na\n}% `b\nc` {x,\ny} /*\n*/ z")
    assert [(t.kind, t.line) for t in toks] == [
        (Kind.CODE, 1),
        (Kind.COMMAND, 3),
        (Kind.STRUCT, 4),
        (Kind.WORD, 6),
        (Kind.EOF, 6),
    ]
    assert toks[0].text == "\na\n" and toks[1].text == "b\nc"


def test_option_lines_and_blank_script() -> None:
    assert parse_script("").events == ()
    script = parse_script("\n--ip_version=ipv4 --local_ip=192.168.0.1\n--define=A=B\n\n")
    assert script.options == {"ip_version": "ipv4", "local_ip": "192.168.0.1", "define": "A=B"}


# --- property: formatted packet lines parse back to what was formatted ------------------------

_u32 = st.integers(0, (1 << 32) - 1)
_u16 = st.integers(0, (1 << 16) - 1)
_option = st.one_of(
    st.builds(Mss, _u16),
    st.just(SackOk()),
    st.just(Nop()),
    st.just(Eol()),
    st.builds(WScale, st.integers(0, 255)),
    st.builds(Timestamp, _u32, _u32),
    st.builds(Sack, st.lists(st.tuples(_u32, _u32), min_size=1, max_size=4).map(tuple)),
)


def _format_option(o: TcpOption) -> str:
    match o:
        case Mss(v):
            return f"mss {v}"
        case WScale(v):
            return f"wscale {v}"
        case Timestamp(v, e):
            return f"TS val {v} ecr {e}"
        case Sack(blocks):
            return "sack " + " ".join(f"{a}:{b}" for a, b in blocks)
        case SackOk():
            return "sackOK"
        case Nop():
            return "nop"
    return "eol"


@settings(derandomize=True, max_examples=200)
@given(
    direction=st.sampled_from(Direction),
    flags=st.permutations("FSRP.EWU").flatmap(lambda p: st.integers(1, 8).map(lambda n: "".join(p[:n]))),
    start=_u32,
    length=st.integers(0, 65535),
    ack=st.none() | _u32,
    win=st.none() | _u16,
    options=st.none() | st.just(ELIDED) | st.lists(_option, min_size=1, max_size=6).map(tuple),
)
def test_packet_lines_round_trip(
    direction: Direction,
    flags: str,
    start: int,
    length: int,
    ack: int | None,
    win: int | None,
    options: tuple[TcpOption, ...] | Elided | None,
) -> None:
    end = (start + length) & 0xFFFFFFFF
    text = f"+0 {direction.value} {flags} {start}:{end}({length})"
    text += f" ack {ack}" if ack is not None else ""
    text += f" win {win}" if win is not None else ""
    if isinstance(options, Elided):
        text += " <...>"
    elif options is not None:
        text += " <" + ",".join(_format_option(o) for o in options) + ">"
    event = one(text)
    assert event == PacketEvent(
        line=1, timing=rel(0), direction=direction, flags=flags, seq_start=start, seq_end=end,
        payload_len=length, ack=ack, win=win, options=options,
    )  # fmt: skip
