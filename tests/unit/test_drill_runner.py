"""The drill runner must fail wrong expectations: for each construct a script that passes and a
deliberately wrong twin that fails at the line of the wrong expectation. Plus: unsupported syntax
fails naming its line, and the command line reports text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from drill import run_text
from lab.cli.drill import register

PASSIVE = """\
0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0  setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0  bind(3, ..., ...) = 0
+0  listen(3, 1) = 0
+0  < S 0:0(0) win 65535 <mss 1000,sackOK,TS val 500 ecr 0,nop,wscale 7>
+0  > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 1 ecr 500,nop,wscale 7>
+.1 < . 1:1(0) ack 1 win 257 <nop,nop,TS val 600 ecr 1>
+0  accept(3, ..., ...) = 4
"""
BASE_LINES = PASSIVE.count("\n")

# (construct, lines that pass, the wrong twin of the last line); the twin fails at its line.
W = "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <...>\n"
PAIRS: list[tuple[str, str, str]] = [
    ("flags", "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <...>",
     "+0 write(4, ..., 10) = 10\n+0 > . 1:11(10) ack 1 <...>"),
    ("seq", "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <...>",
     "+0 write(4, ..., 10) = 10\n+0 > P. 2:12(10) ack 1 <...>"),
    ("payload length", "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <...>",
     "+0 write(4, ..., 10) = 10\n+0 > P. 1:10(9) ack 1 <...>"),
    ("ack", "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <...>",
     "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 2 <...>"),
    ("win", "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 win 2048 <...>",
     "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 win 2047 <...>"),
    ("options", "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <nop,nop,TS val 9 ecr 600>",
     "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1"),
    ("option order", "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <nop,nop,TS val 9 ecr 600>",
     "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <TS val 9 ecr 600,nop,nop>"),
    ("TS ecr", "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <nop,nop,TS val 9 ecr 600>",
     "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <nop,nop,TS val 9 ecr 601>"),
    ("SACK block", "+0 < P. 1001:2001(1000) ack 1 win 257 <nop,nop,TS val 700 ecr 1>\n"
     "+0 > . 1:1(0) ack 1 <nop,nop,TS val 9 ecr 600,nop,nop,sack 1001:2001>",
     "+0 < P. 1001:2001(1000) ack 1 win 257 <nop,nop,TS val 700 ecr 1>\n"
     "+0 > . 1:1(0) ack 1 <nop,nop,TS val 9 ecr 600,nop,nop,sack 1001:2002>"),
    # The retransmission of a lone segment comes one RTO (300 ms after a 100 ms handshake) later.
    ("timing (late expectation)", W + "+.3 > P. 1:11(10) ack 1 <...>", W + "+.29 > P. 1:11(10) ack 1 <...>"),
    ("timing (early expectation)", W + "+.3 > P. 1:11(10) ack 1 <...>", W + "+.31 > P. 1:11(10) ack 1 <...>"),
    ("timing range", W + "+.28~+.32 > P. 1:11(10) ack 1 <...>", W + "+.33~+.35 > P. 1:11(10) ack 1 <...>"),
    ("no packet expected", "+0 < P. 1:101(100) ack 1 win 257 <nop,nop,TS val 700 ecr 1>\n"
     "+0 > . 1:1(0) ack 101 <...>",
     "+0 write(4, ..., 10) = 10\n+1 > P. 1:11(10) ack 1 <...>\n+.1 > P. 1:11(10) ack 1 <...>"),
    ("syscall result", "+0 write(4, ..., 10) = 10", "+0 write(4, ..., 10) = 11"),
    ("errno", "+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n+0 read(4, ..., 10) = -1 EAGAIN (none)",
     "+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n+0 read(4, ..., 10) = -1 ECONNRESET (no)"),
    ("errno expected, success got", "+0 write(4, ..., 10) = 10",
     "+0 write(4, ..., 10) = -1 EPIPE (Broken pipe)"),
    ("getsockopt value", "+0 getsockopt(4, IPPROTO_TCP, TCP_NODELAY, [0], [4]) = 0",
     "+0 getsockopt(4, IPPROTO_TCP, TCP_NODELAY, [1], [4]) = 0"),
    ("blocking duration", "+0...0.2 read(4, ..., 1000) = 100\n"
     "+.2 < P. 1:101(100) ack 1 win 257 <nop,nop,TS val 700 ecr 1>",
     "+0...0.1 read(4, ..., 1000) = 100\n+.2 < P. 1:101(100) ack 1 win 257 <nop,nop,TS val 700 ecr 1>"),
    ("blocking result", "+0...0.2 read(4, ..., 1000) = 100\n"
     "+.2 < P. 1:101(100) ack 1 win 257 <nop,nop,TS val 700 ecr 1>",
     "+0...0.2 read(4, ..., 1000) = 99\n+.2 < P. 1:101(100) ack 1 win 257 <nop,nop,TS val 700 ecr 1>"),
    ("a call that blocks without ...", "+0 fcntl(4, F_GETFL) = 0x2 (flags O_RDWR)",
     "+0 read(4, ..., 1000) = 0"),
]  # fmt: skip


def _script(lines: str) -> str:
    return PASSIVE + lines + "\n"


@pytest.mark.parametrize(("construct", "good", "bad"), PAIRS, ids=[p[0] for p in PAIRS])
def test_right_passes_wrong_fails(construct: str, good: str, bad: str) -> None:
    ok = run_text(_script(good))
    assert ok.passed, ok.text()
    wrong = run_text(_script(bad))
    assert not wrong.passed, f"{construct}: the wrong twin passed"
    assert wrong.failure is not None
    bad_lines = bad.count("\n") + 1
    # The failure names a line of the twin's own part (not the shared preamble).
    assert BASE_LINES < wrong.failure.line <= BASE_LINES + bad_lines, wrong.text()


def test_an_unexpected_packet_fails_the_next_expectation() -> None:
    script = _script("+0 write(4, ..., 10) = 10\n+0 write(4, ..., 10) = 10\n+.1 > P. 11:21(10) ack 1 <...>")
    result = run_text(script)
    assert not result.passed
    assert result.failure is not None and result.failure.actual is not None
    assert "1:11(10)" in result.failure.actual


def test_elided_options_and_any_time_match() -> None:
    assert run_text(_script("+0 write(4, ..., 10) = 10\n* > P. 1:11(10) ack 1 <...>")).passed


def test_failure_reports_expected_and_actual() -> None:
    result = run_text(_script("+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 7 <...>"))
    assert result.failure is not None
    assert result.failure.expected == "P. 1:11(10) ack 7 <...>"
    assert result.failure.actual is not None and result.failure.actual.startswith("P. 1:11(10) ack 1 win")
    assert f"{BASE_LINES + 2}" in result.text().splitlines()[0]


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("+0 `echo hi`", "shell command"),
        ("+0 %{ print(1) }%", "code block"),
        ("+0 setsockopt(4, IPPROTO_TCP, TCP_CORK, [1], 4) = 0", "TCP_CORK"),
        ("+0 getsockopt(4, SOL_TCP, TCP_INFO, {tcpi_state=1}, [4]) = 0", "tcpi_"),
        ("+0 poll([{fd=4, events=POLLIN}], 1, 0) = 0", "poll"),
        ("+0 > udp (10)", "udp"),
    ],
)
def test_unsupported_fails_naming_the_line(line: str, what: str) -> None:
    result = run_text(_script(line))
    assert not result.passed
    assert result.failure is not None
    assert result.failure.line == BASE_LINES + 1
    assert what in result.failure.message


def test_unsupported_script_option_and_init_command_fail() -> None:
    result = run_text("--udp_encapsulation=tcp\n" + PASSIVE)
    assert result.outcome == "unsupported" and result.failure is not None and "udp" in result.failure.message
    result = run_text("`tcpdrop -a`\n" + PASSIVE)
    assert result.outcome == "unsupported" and result.failure is not None and result.failure.line == 1


def test_tolerance_option_is_honoured() -> None:
    late = W + "+.29 > P. 1:11(10) ack 1 <...>"
    assert not run_text(_script(late)).passed
    assert run_text("--tolerance_usecs=15000\n" + _script(late)).passed


def test_parse_error_fails_at_its_line() -> None:
    result = run_text(_script("+0 > P. 1:11(9) ack 1"))
    assert not result.passed and result.failure is not None
    assert result.failure.line == BASE_LINES + 1
    assert "parse error" in result.failure.message


def test_profiles_differ_in_first_ack() -> None:
    # Linux ACKs the first data at once (quick-ACK mode); the default profile delays it.
    quick = "+0 < P. 1:101(100) ack 1 win 257 <nop,nop,TS val 700 ecr 1>\n+0 > . 1:1(0) ack 101 <...>"
    assert run_text(_script(quick), profile="linux").passed
    assert not run_text(_script(quick), profile="default").passed


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command, so `drill` stays a named subcommand
        pass

    return app


def test_cli_text_and_json(tmp_path: Path) -> None:
    good = tmp_path / "good.pkt"
    good.write_text(_script("+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <...>"))
    bad = tmp_path / "bad.pkt"
    bad.write_text(_script("+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 2 <...>"))
    runner = CliRunner()
    out = runner.invoke(_app(), ["drill", str(good), str(bad)])
    assert out.exit_code == 1
    assert f"PASS {good}" in out.output
    assert f"FAIL {bad}:{BASE_LINES + 2}" in out.output
    out = runner.invoke(_app(), ["drill", "--json", str(good)])
    assert out.exit_code == 0
    data = json.loads(out.output)
    assert data["summary"] == {"scripts": 1, "passed": 1, "failed": 0, "unsupported": 0}
    out = runner.invoke(_app(), ["drill", "--node", "n1", str(good)])
    assert out.exit_code == 2
    out = runner.invoke(_app(), ["drill", "--profile", "bsd", str(good)])
    assert out.exit_code == 2
