"""The constructs public packetdrill corpora use: each with a script that passes and a deliberately
wrong twin that must not (failing at the twin's line, or ending unsupported naming the construct).
Plus the freebsd profile's platform choices, the corpus runner and `tcplab drill --corpus`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from drill import run_text
from drill.corpus import corpus_summary, run_corpus
from drill.lexer import ParseError
from drill.preprocess import preprocess
from drill.shell import interpret
from lab.cli.drill import register

PASSIVE = """\
0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0  setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0  bind(3, ..., ...) = 0
+0  listen(3, 1) = 0
+0  < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0  > S. 0:0(0) ack 1 <...>
+.1 < . 1:1(0) ack 1 win 257
+0  accept(3, ..., ...) = 4
"""
ACTIVE = """\
0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0  fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0  connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0  > S 0:0(0) <...>
+.1 < S. 0:0(0) ack 1 win 65535 <mss 1460>
+0  > . 1:1(0) ack 1 <...>
"""
DATA_IN = "+0 < P. 1:101(100) ack 1 win 257\n"


def _line_of(script: str, text: str) -> int:
    return script.splitlines().index(text) + 1


def _fails_at(script: str, line_text: str, **kwargs: object) -> str:
    """The script fails (not unsupported) at the line reading line_text; its failure message."""
    result = run_text(script, **kwargs)  # type: ignore[arg-type]
    assert result.outcome == "fail", result.text()
    assert result.failure is not None and result.failure.line == _line_of(script, line_text), result.text()
    return result.failure.message


# --- shell lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sysctl", ["`sysctl -q net.ipv4.tcp_sack=0`", "`sysctl -w net.inet.tcp.sack.enable=0`"]
)
def test_a_sysctl_with_a_stack_equivalent_changes_the_stack(sysctl: str) -> None:
    head = f"{sysctl}\n" + PASSIVE.replace("+0  > S. 0:0(0) ack 1 <...>\n", "")
    split = head.index("+.1 <")
    good = head[:split] + "+0 > S. 0:0(0) ack 1 <mss 1460,nop,wscale 7>\n" + head[split:]
    assert run_text(good).passed, run_text(good).text()
    wrong_line = "+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 3>"
    _fails_at(head[:split] + wrong_line + "\n" + head[split:], wrong_line)


def test_a_timed_sysctl_applies_to_sockets_created_after_it() -> None:
    script = "0 `sysctl -w net.inet.tcp.recvspace=4096`\n" + PASSIVE.replace("0   socket", "+0  socket")
    good = script + "+0 getsockopt(4, SOL_SOCKET, SO_RCVBUF, [4096], [4]) = 0\n"
    assert run_text(good).passed, run_text(good).text()
    wrong = "+0 getsockopt(4, SOL_SOCKET, SO_RCVBUF, [65536], [4]) = 0"
    _fails_at(script + wrong + "\n", wrong)


def test_unknown_sysctls_and_sockstat_are_noted_not_failed() -> None:
    script = (
        "`sysctl -w net.inet.tcp.no_such_knob=3`\n"
        + PASSIVE
        + "+0 `sockstat -4 -P tcp -s | grep -c ESTABLISHED | grep 1`\n"
        + "+0 `../common/defaults.sh`\n"
    )
    result = run_text(script)
    assert result.passed, result.text()
    notes = "\n".join(result.notes)
    assert "line 1: sysctl net.inet.tcp.no_such_knob=3 skipped" in notes
    assert f"line {PASSIVE.count(chr(10)) + 2}: `sockstat" in notes
    assert "defaults.sh" in notes


def test_the_cleanup_command_is_noted_and_never_fails_the_script() -> None:
    for command in ("setkey -F", "tcpdrop -a"):
        result = run_text(PASSIVE + f"`{command}`\n")
        assert result.passed, result.text()
        assert any(n.startswith(f"line {PASSIVE.count(chr(10)) + 1}: cleanup:") for n in result.notes)
    wrong = "+0 write(4, ..., 10) = 9"
    _fails_at(PASSIVE + wrong + "\n`setkey -F`\n", wrong)


@pytest.mark.parametrize(
    ("command", "construct"),
    [
        ("`sysctl -w net.inet.tcp.syncookies_only=1`", "sysctl net.inet.tcp.syncookies_only=1"),
        ("`sysctl -w net.inet.tcp.fastopen.client_enable=1`", "sysctl net.inet.tcp.fastopen.client_enable=1"),
        ("`tcpdrop -s TIME_WAIT`", "shell command `tcpdrop`"),
    ],
)
def test_a_setting_the_stack_cannot_honour_is_unsupported_naming_it(command: str, construct: str) -> None:
    script = PASSIVE + f"+0 {command}\n"
    result = run_text(script)
    assert result.outcome == "unsupported" and result.unsupported == construct
    assert result.failure is not None and result.failure.line == PASSIVE.count("\n") + 1
    assert run_text(PASSIVE + "+0 `sysctl -w net.inet.tcp.syncookies_only=0`\n").passed


def test_shell_interpretation_of_linux_buffer_triples_and_bad_values() -> None:
    assert interpret('sysctl -q net.ipv4.tcp_rmem="4096 87380 6291456"').changes == {"rcvbuf": 87380}
    assert interpret("sysctl -w net.inet.tcp.rfc1323=3").changes == {
        "window_scaling": False,
        "timestamps": True,
    }
    assert interpret("sysctl -w net.inet.tcp.delacktime=50").changes == {"delack_timeout": 0.05}
    assert interpret("sysctl -w net.inet.tcp.recvspace=lots").unsupported is not None
    # FreeBSD settings the stack has (stack.config.freebsd_profile, README "The profiles").
    assert interpret("sysctl -w net.inet.tcp.insecure_rst=1 net.inet.tcp.insecure_syn=0").changes == {
        "rfc5961_rst": False,
        "rfc5961_syn": True,
    }
    assert interpret("sysctl -w net.inet.tcp.rexmit_drop_options=1").changes == {"syn_drop_options_after": 3}
    assert interpret("sysctl -w net.inet.tcp.rexmit_slop=200").changes == {"rto_slop": 0.2}
    assert interpret("sysctl -w kern.ipc.maxsockbuf=73728").changes == {"wscale_space": 73728}
    assert interpret("sysctl -w net.inet.tcp.icmp_may_rst=0").changes == {"icmp_hard_errors": False}
    assert interpret("sysctl -w net.inet.tcp.drop_synfin=1").changes == {"drop_synfin": True}
    assert interpret("sysctl -w net.inet.tcp.keepinit=15000").changes == {"keepinit": 15.0}


# --- system calls ----------------------------------------------------------------------------------


def test_recv_msg_peek_leaves_the_data_queued() -> None:
    good = (
        PASSIVE + DATA_IN + "+0 recv(4, ..., 1000, MSG_PEEK) = 100\n+0 recv(4, ..., 1000, MSG_PEEK) = 100\n"
        "+0 recv(4, ..., 1000, 0) = 100\n"
    )
    assert run_text(good).passed, run_text(good).text()
    # Had the peek consumed the data, the next read would block.
    wrong = "+0 recv(4, ..., 1000, MSG_PEEK) = 0"
    _fails_at(PASSIVE + DATA_IN + "+0 recv(4, ..., 1000, MSG_PEEK) = 100\n" + wrong + "\n", wrong)


def test_symbolic_errno_in_so_error() -> None:
    reset = ACTIVE + "+.1 < R. 1:1(0) ack 1 win 0\n"
    good = reset + "+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNRESET], [4]) = 0\n"
    assert run_text(good).passed, run_text(good).text()
    wrong = "+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0"
    _fails_at(reset + wrong + "\n", wrong)


def test_system_call_arguments_may_span_lines() -> None:
    good = PASSIVE + "+0 setsockopt(4, SOL_SOCKET,\n     SO_RCVBUF, [8192],\n     4) = 0\n"
    good += "+0 getsockopt(4, SOL_SOCKET, SO_RCVBUF,\n  [8192], [4]) = 0\n"
    assert run_text(good).passed, run_text(good).text()
    wrong_first = "+0 getsockopt(4, SOL_SOCKET, SO_RCVBUF,"
    _fails_at(good.replace("[8192], [4]) = 0", "[8193], [4]) = 0"), wrong_first)


def test_ifdef_blocks_follow_define() -> None:
    wrong = "+0 > P. 1:11(10) ack 1 win 9999 <...>"
    body = PASSIVE + "+0 write(4, ..., 10) = 10\n#ifdef FreeBSD\n" + wrong + "\n#else\n"
    body += "+0 > P. 1:11(10) ack 1 <...>\n#endif\n"
    assert run_text(body).passed, run_text(body).text()
    _fails_at(body, wrong, defines=frozenset({"FreeBSD"}))
    flipped = body.replace("#ifdef FreeBSD", "#ifndef FreeBSD")
    assert run_text(flipped, defines=frozenset({"FreeBSD"})).passed
    _fails_at(flipped, wrong)


def test_preprocess_keeps_line_numbers_and_rejects_unbalanced_blocks() -> None:
    assert preprocess("a\n#ifdef X\nb\n#endif\nc").split("\n") == ["a", "", "", "", "c"]
    for bad in ("#ifdef X\na", "#endif", "#ifdef X\n#else\n#else\n#endif", "#if X\n#endif"):
        with pytest.raises(ParseError):
            preprocess(bad)
    result = run_text(PASSIVE + "#ifdef X\n")
    assert result.outcome == "fail" and result.failure is not None
    assert result.failure.line == PASSIVE.count("\n") + 1


def test_a_script_isn_on_the_outbound_syn_ack_offsets_the_stack_numbers() -> None:
    head = PASSIVE.replace("> S. 0:0(0) ack 1 <...>", "> S. 1000:1000(0) ack 1 <...>")
    head = head.replace("< . 1:1(0) ack 1 win 257", "< . 1:1(0) ack 1001 win 257")
    good = (
        head
        + "+0 write(4, ..., 10) = 10\n+0 > P. 1001:1011(10) ack 1 <...>\n+.1 < . 1:1(0) ack 1011 win 257\n"
    )
    assert run_text(good).passed, run_text(good).text()
    wrong = "+0 > P. 1:11(10) ack 1 <...>"
    _fails_at(head + "+0 write(4, ..., 10) = 10\n" + wrong + "\n", wrong)


def test_the_mtu_option_sets_the_mss_the_stack_offers() -> None:
    synack = "+0  > S. 0:0(0) ack 1 <...>"
    good = "--mtu=1000\n" + PASSIVE.replace(
        synack, "+0 > S. 0:0(0) ack 1 <mss 960,nop,nop,sackOK,nop,wscale 7>"
    )
    assert run_text(good).passed, run_text(good).text()
    wrong = "+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 3>"
    _fails_at("--mtu=1000\n" + PASSIVE.replace(synack, wrong), wrong)


def test_an_inbound_icmp_frag_needed_quoting_a_sent_segment_lowers_the_mss() -> None:
    sent = PASSIVE + "+0 write(4, ..., 1000) = 1000\n+0 > P. 1:1001(1000) ack 1 <...>\n"
    icmp = "+.01 < icmp unreachable frag_needed mtu 600 [1:1001(1000)]\n"
    good = sent + icmp + "+0 > . 1:561(560) ack 1 <...>\n"
    assert run_text(good).passed, run_text(good).text()
    wrong = "+0 > . 1:1001(1000) ack 1 <...>"
    _fails_at(sent + icmp + wrong + "\n", wrong)
    # Another type or code (here port unreachable) is no Fragmentation Needed: nothing is resent.
    other = icmp.replace("frag_needed mtu 600", "port_unreachable")
    _fails_at(sent + other + "+0 > . 1:561(560) ack 1 <...>\n", "+0 > . 1:561(560) ack 1 <...>")


def test_an_unknown_script_option_is_a_clean_unsupported_outcome() -> None:
    result = run_text("--udp_encapsulation=tcp\n" + PASSIVE)
    assert result.outcome == "unsupported" and result.unsupported == "script option --udp_encapsulation"
    assert run_text("--ip_version=ipv4\n" + PASSIVE).passed


# --- the freebsd profile ---------------------------------------------------------------------------

FREEBSD = """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0 getsockopt(3, SOL_SOCKET, SO_RCVBUF, [65536], [4]) = 0
+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>
+.1 < S. 0:0(0) ack 1 win 32767 <mss 1460,sackOK,eol,eol>
+0 > . 1:1(0) ack 1 win 65535
+0 getsockopt(3, SOL_SOCKET, SO_RCVBUF, [65700], [4]) = 0
+.1 < P. 1:101(100) ack 1 win 32767
"""


def test_freebsd_profile_behaves_like_freebsd_and_still_catches_real_mismatches() -> None:
    syn = "+0 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>"
    good = FREEBSD + "+.1 > . 1:1(0) ack 101 win 65535\n"
    # FreeBSD's SYN layout and wscale, its buffer rounded to 45 segments, its free-space window
    # and 100 ms delayed ACK: the script passes as it does on FreeBSD.
    result = run_text(good, profile="freebsd")
    assert result.passed, result.text()
    wrong = "+.1 > . 1:1(0) ack 100 win 65535"
    _fails_at(FREEBSD + wrong + "\n", wrong, profile="freebsd")
    held_edge = "+.1 > . 1:1(0) ack 101 win 65435"  # the default profile's SWS-held right edge
    _fails_at(FREEBSD + held_edge + "\n", held_edge, profile="freebsd")
    # A SYN with different option values, or another layout, fails at the SYN.
    _fails_at(FREEBSD.replace("mss 1460,nop", "mss 1400,nop"), syn.replace("1460", "1400"), profile="freebsd")
    linux_layout = syn.replace("nop,wscale 6,sackOK,TS val 100 ecr 0", "sackOK,TS val 100 ecr 0,nop,wscale 6")
    _fails_at(FREEBSD.replace(syn, linux_layout), linux_layout, profile="freebsd")
    ecn = FREEBSD.replace("> S 0:0(0)", "> SEW 0:0(0)")
    result = run_text(ecn, profile="freebsd")
    assert result.failure is not None and "flags S, expected SEW" in result.failure.message, result.text()
    assert result.failure.line == _line_of(ecn, syn.replace("> S ", "> SEW "))
    # The linux profile stops at the SYN's layout.
    _fails_at(good.replace("+0 getsockopt(3, SOL_SOCKET, SO_RCVBUF, [65536], [4]) = 0\n", ""), syn)


# --- the corpus runner and the command line ---------------------------------------------------------


def _corpus(tmp_path: Path) -> Path:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "good.pkt").write_text(PASSIVE)
    (tmp_path / "a" / "udp.pkt").write_text("--udp_encapsulation=tcp\n" + PASSIVE)
    (tmp_path / "b.pkt").write_text(PASSIVE + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 2 <...>\n")
    return tmp_path


def test_run_corpus_summarises_outcomes_per_directory(tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    for jobs in (1, 2):
        results = run_corpus(root, jobs=jobs)
        assert [(r.name, r.outcome) for r in results] == [
            ("a/good.pkt", "pass"), ("a/udp.pkt", "unsupported"), ("b.pkt", "fail"),
        ]  # fmt: skip
    s = corpus_summary(results)
    assert (s["passed"], s["failed"], s["unsupported"]) == (1, 1, 1)
    assert s["by_directory"] == {
        "a": {"passed": 1, "failed": 0, "unsupported": 1},
        ".": {"passed": 0, "failed": 1, "unsupported": 0},
    }
    assert s["top_unsupported"] == [{"construct": "script option --udp_encapsulation", "scripts": 1}]


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:
        pass

    return app


def test_cli_corpus_json_and_text(tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    runner = CliRunner()
    out = runner.invoke(_app(), ["drill", "--corpus", str(root), "--json", "--jobs", "1"])
    assert out.exit_code == 1
    data = json.loads(out.output)
    assert data["summary"]["scripts"] == 3 and data["summary"]["unsupported"] == 1
    assert {r["outcome"] for r in data["results"]} == {"pass", "fail", "unsupported"}
    out = runner.invoke(_app(), ["drill", "--corpus", str(root), "--jobs", "1"])
    assert "1 passed, 1 failed, 1 unsupported of 3 scripts" in out.output
    assert "script option --udp_encapsulation" in out.output
    assert runner.invoke(_app(), ["drill", "--corpus", str(tmp_path / "none")]).exit_code == 2
    assert runner.invoke(_app(), ["drill"]).exit_code == 2


def test_cli_define(tmp_path: Path) -> None:
    script = tmp_path / "d.pkt"
    script.write_text(PASSIVE + "#ifdef BROKEN\n+0 write(4, ..., 10) = 11\n#endif\n")
    runner = CliRunner()
    assert runner.invoke(_app(), ["drill", str(script)]).exit_code == 0
    assert runner.invoke(_app(), ["drill", "--define", "BROKEN", str(script)]).exit_code == 1


def test_tcpi_state_assertions_check_the_socket_under_test() -> None:
    good = PASSIVE + "+0 %{ assert tcpi_state == TCPI_ESTABLISHED }%\n+0 close(4) = 0\n"
    good += "+0 > F. 1:1(0) ack 1 <...>\n+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0\n"
    good += "+0 %{ assert tcpi_state == TCPI_LISTEN }%\n"
    assert run_text(good).passed, run_text(good).text()
    wrong = "+0 %{ assert tcpi_state == TCPI_CLOSE_WAIT }%"
    _fails_at(PASSIVE + wrong + "\n", wrong)
    result = run_text(PASSIVE + "+0 %{ print(tcpi_rto) }%\n")
    assert result.outcome == "unsupported" and result.unsupported == "%{ }% code block"


def test_tcpi_options_assertions_check_the_options_negotiated() -> None:
    good = PASSIVE + "+0 %{ assert tcpi_options == 6 }%\n"  # SACK (2) and window scale (4)
    assert run_text(good).passed, run_text(good).text()
    wrong = "+0 %{ assert tcpi_options == 0 }%"
    _fails_at(PASSIVE + wrong + "\n", wrong)
    noopt = PASSIVE.replace("+0  bind", "+0  setsockopt(3, IPPROTO_TCP, TCP_NOOPT, [1], 4) = 0\n+0  bind")
    noopt = noopt.replace("> S. 0:0(0) ack 1 <...>", "> S. 0:0(0) ack 1")
    noopt += "+0 getsockopt(4, IPPROTO_TCP, TCP_NOOPT, [1], [4]) = 0\n+0 %{ assert tcpi_options == 0 }%\n"
    assert run_text(noopt).passed, run_text(noopt).text()


def test_ip_header_fields_of_outbound_packets_are_checked() -> None:
    options = "+0  setsockopt(3, IPPROTO_IP, IP_TTL, [4], 4) = 0\n"
    options += "+0  setsockopt(3, IPPROTO_IP, IP_TOS, [IPTOS_DSCP_CS1], 4) = 0\n+0  bind"
    script = PASSIVE.replace("+0  bind", options).replace("> S. 0:0(0)", "> (ttl 4, tos 0x20) S. 0:0(0)")
    script += "+0 getsockopt(4, IPPROTO_IP, IP_TTL, [4], [4]) = 0\n"
    script += "+0 setsockopt(4, IPPROTO_IP, IP_TTL, [6], 4) = 0\n+0 close(4) = 0\n"
    assert run_text(script + "+0 > (ttl 6, tos 0x20) F. 1:1(0) ack 1 <...>\n").passed
    wrong = "+0 > (ttl 64) F. 1:1(0) ack 1 <...>"
    assert "ttl 6, expected 64" in _fails_at(script + wrong + "\n", wrong)
    wrong = "+0 > (tos 0x00) F. 1:1(0) ack 1 <...>"
    assert "tos 0x20, expected 0x00" in _fails_at(script + wrong + "\n", wrong)
    # A RST for a port bound but not listening goes out with the socket's TTL, its sequence
    # number as on the wire (`!`).
    bound = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 setsockopt(3, IPPROTO_IP, IP_TTL, [4], 4) = 0\n"
    bound += "+0 bind(3, ..., ...) = 0\n+0 < S 0:0(0) win 1000\n+0 > (ttl 4) R. 0:0(0)! ack 1 win 0\n"
    assert run_text(bound).passed, run_text(bound).text()


def test_keepalive_settings_read_back_and_ewouldblock_is_eagain() -> None:
    script = "0 `sysctl -w net.inet.tcp.keepidle=15000`\n" + PASSIVE.replace("0   socket", "+0  socket")
    good = script + "+0 getsockopt(4, IPPROTO_TCP, TCP_KEEPIDLE, [15], [4]) = 0\n"
    good += "+0 getsockopt(4, IPPROTO_TCP, TCP_KEEPCNT, [9], [4]) = 0\n"
    good += (
        "+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n+0 read(4, ..., 10) = -1 EWOULDBLOCK (would block)\n"
    )
    assert run_text(good).passed, run_text(good).text()
    wrong = "+0 getsockopt(4, IPPROTO_TCP, TCP_KEEPIDLE, [7200], [4]) = 0"
    _fails_at(script + wrong + "\n", wrong)


def test_a_runner_bug_on_one_script_is_that_script_s_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _corpus(tmp_path)

    def broken(text: str, defines: frozenset[str] = frozenset()) -> None:
        raise RecursionError("deep")

    monkeypatch.setattr("drill.runner.parse_script", broken)
    results = run_corpus(root, jobs=1)
    assert [r.outcome for r in results] == ["fail", "fail", "fail"]
    assert results[0].failure is not None and "RecursionError" in results[0].failure.message
