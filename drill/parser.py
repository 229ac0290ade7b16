"""Recursive-descent parser for packetdrill scripts (the subset of packetdrill's parser.y that
concerns TCP), producing drill.ast.

One event per line: `TIME ACTION`, where ACTION is a TCP packet, a system call, a backquoted
shell command or a `%{ }%` block; only a system call's arguments may run over several lines.
`#ifdef` blocks are resolved first (drill.preprocess). Valid packetdrill that the runner
cannot execute becomes an UnsupportedEvent naming the line, so a script using it fails rather
than passing silently. This module reads the script and its timing; the packet grammar is in
drill.packet_grammar, the system call grammar in drill.syscall_grammar, both over the token
cursor of drill.tokens.
"""

from __future__ import annotations

from pathlib import Path

from drill.ast import (
    CodeEvent,
    Direction,
    Event,
    PacketEvent,
    Script,
    ShellEvent,
    TimeKind,
    Timing,
    UnsupportedEvent,
)
from drill.lexer import Kind, ParseError, Token
from drill.packet_grammar import PacketGrammar
from drill.preprocess import preprocess
from drill.syscall_grammar import SyscallGrammar
from drill.tokens import UnsupportedSyntax

__all__ = ["ParseError", "parse_file", "parse_script"]

_RANGE_KINDS = (TimeKind.ABSOLUTE_RANGE, TimeKind.RELATIVE_RANGE)


def parse_script(text: str, defines: frozenset[str] | set[str] = frozenset()) -> Script:
    """Parse a whole script, `#ifdef NAME` blocks active for the names in `defines`.
    Raises ParseError with the line and column of the first problem."""
    return _Parser(preprocess(text, defines)).script()


def parse_file(path: str | Path, defines: frozenset[str] | set[str] = frozenset()) -> Script:
    return parse_script(Path(path).read_text(encoding="utf-8"), defines)


def seconds_to_usecs(text: str) -> int:
    """`1.5` -> 1500000, exactly (no float rounding); digits past microseconds round half up."""
    whole, _, frac = text.partition(".")
    usecs = int(whole or "0") * 1_000_000 + int(frac[:6].ljust(6, "0"))
    return usecs + (1 if len(frac) > 6 and frac[6] >= "5" else 0)


class _Parser(PacketGrammar, SyscallGrammar):
    """A whole script: options, the init command, timed events, the cleanup command."""

    # --- script -------------------------------------------------------------------------------

    def script(self) -> Script:
        options: dict[str, str | None] = {}
        self.skip_newlines()
        while self.at(Kind.OPTION):
            name, eq, value = self.next().text[2:].partition("=")
            options[name] = value if eq else None
            self.skip_newlines()
        init_command = None
        if self.at(Kind.COMMAND):
            tok = self.next()
            init_command = ShellEvent(line=tok.line, timing=None, command=tok.text)
            self.end_of_line()
        events: list[Event] = []
        while True:
            self.skip_newlines()
            if self.at(Kind.EOF):
                return Script(options, init_command, tuple(events))
            if self.at(Kind.COMMAND) and events:  # packetdrill's cleanup command, run at the end
                tok = self.next()
                self.end_of_line()
                self.skip_newlines()
                if not self.at(Kind.EOF):
                    raise self.error("an event time (an untimed command comes first or last)", tok)
                cleanup = ShellEvent(line=tok.line, timing=None, command=tok.text)
                return Script(options, init_command, tuple(events), cleanup)
            if self.at(Kind.OPTION):
                raise self.error("an event time (options must come before the first event)")
            events.append(self.event())

    def event(self) -> Event:
        first = self.peek()
        timing = self.timing()
        event: Event
        try:
            event = self.action(first.line, timing)
        except UnsupportedSyntax as u:
            self.skip_line()
            event = UnsupportedEvent(line=first.line, timing=timing, what=u.what)
        self.end_of_line()
        self.check_timing(event, first)
        return event

    def check_timing(self, event: Event, first: Token) -> None:
        """packetdrill's semantic rules: `*` and ranges only make sense for what the stack sends."""
        if isinstance(event, UnsupportedEvent) or event.timing is None:
            return
        outbound = isinstance(event, PacketEvent) and event.direction is Direction.OUT
        kind = event.timing.kind
        if kind is TimeKind.ANY and not outbound:
            raise ParseError(
                first.line, first.column, "event time '*' can only be used with outbound packets"
            )
        if kind in _RANGE_KINDS and not outbound:
            raise ParseError(first.line, first.column, "a time range can only be used with outbound packets")

    # --- timing -------------------------------------------------------------------------------

    def time_value(self) -> tuple[int, Token]:
        tok = self.peek()
        if tok.kind not in (Kind.INT, Kind.FLOAT) or tok.text[:2].lower() == "0x":
            raise self.error("a time in seconds")
        self.next()
        return seconds_to_usecs(tok.text), tok

    def timing(self) -> Timing:
        if self.at(Kind.PUNCT, "*"):
            self.next()
            timing = Timing(TimeKind.ANY)
        elif self.at(Kind.PUNCT, "+"):
            self.next()
            start, _ = self.time_value()
            timing = Timing(TimeKind.RELATIVE, start)
            if self.at(Kind.PUNCT, "~"):
                tilde = self.next()
                self.expect(Kind.PUNCT, "+", "'+' (a relative range is written +a~+b)")
                end, _ = self.time_value()
                timing = self.range(TimeKind.RELATIVE_RANGE, start, end, tilde)
        elif self.at(Kind.INT) or self.at(Kind.FLOAT):
            start, _ = self.time_value()
            timing = Timing(TimeKind.ABSOLUTE, start)
            if self.at(Kind.PUNCT, "~"):
                tilde = self.next()
                end, _ = self.time_value()
                timing = self.range(TimeKind.ABSOLUTE_RANGE, start, end, tilde)
        else:
            raise self.error("an event time (e.g. 0, +0.1, *, 0.1~0.2)")
        if self.at(Kind.ELLIPSIS):
            self.next()
            end, end_tok = self.time_value()
            if end < timing.usecs:
                raise ParseError(end_tok.line, end_tok.column, "blocking call ends before it starts")
            if not (self.at(Kind.WORD) and self.at(Kind.PUNCT, "(", ahead=1)):
                raise self.error("a system call after '...' (only system calls can block)")
            timing = Timing(timing.kind, timing.usecs, timing.end_usecs, end)
        return timing

    @staticmethod
    def range(kind: TimeKind, start: int, end: int, tilde: Token) -> Timing:
        if end < start:
            raise ParseError(tilde.line, tilde.column, "time range is backwards")
        return Timing(kind, start, end)

    # --- actions ------------------------------------------------------------------------------

    def action(self, line: int, timing: Timing) -> Event:
        tok = self.peek()
        if tok.kind is Kind.CODE:
            self.next()
            return CodeEvent(line=line, timing=timing, code=tok.text)
        if tok.kind is Kind.COMMAND:
            self.next()
            return ShellEvent(line=line, timing=timing, command=tok.text)
        if self.at_punct("<>"):
            return self.packet(line, timing)
        if tok.kind is Kind.WORD and self.at(Kind.PUNCT, "(", ahead=1):
            return self.syscall(line, timing)
        raise self.error("a packet ('<' or '>'), a system call, a `command` or a %{ }% block")
