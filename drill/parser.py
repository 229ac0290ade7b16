"""Recursive-descent parser for packetdrill scripts (the subset of packetdrill's parser.y that
concerns TCP), producing drill.ast.

One event per line: `TIME ACTION`, where ACTION is a TCP packet, a system call, a backquoted
shell command or a `%{ }%` block; only a system call's arguments may run over several lines.
`#ifdef` blocks are resolved first (drill.preprocess). Valid packetdrill that the runner
cannot execute becomes an UnsupportedEvent naming the line, so a script using it fails rather
than passing silently.
"""

from __future__ import annotations

from pathlib import Path

from drill.ast import (
    ELIDED,
    CodeEvent,
    Direction,
    Elided,
    Eol,
    Event,
    Expr,
    IcmpEvent,
    IntLit,
    ListExpr,
    Mss,
    Nop,
    PacketEvent,
    RawStruct,
    Sack,
    SackOk,
    Script,
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
from drill.icmp import icmp_numbers, is_icmpv6
from drill.lexer import Kind, ParseError, Token, tokenize
from drill.preprocess import preprocess

__all__ = ["ParseError", "parse_file", "parse_script"]

FLAG_CHARS = "FSRP.EWU"  # FIN SYN RST PSH ACK ECE CWR URG
U32_MAX = (1 << 32) - 1
U16_MAX = (1 << 16) - 1
# packetdrill TCP options this runner does not implement (others are simply errors).
UNSUPPORTED_OPTIONS = frozenset({"FO", "FOEXP", "md5", "mpcapable", "dss"})
_RANGE_KINDS = (TimeKind.ABSOLUTE_RANGE, TimeKind.RELATIVE_RANGE)


class _Unsupported(Exception):
    """Raised inside an event on valid but unsupported syntax; the event becomes Unsupported."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


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


def _int_value(tok: Token) -> int:
    return int(tok.text, 16) if tok.text[:2].lower() == "0x" else int(tok.text)


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0

    # --- token helpers ------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        if tok.kind is not Kind.EOF:
            self.i += 1
        return tok

    def at(self, kind: Kind, text: str | None = None, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind is kind and (text is None or tok.text == text)

    def at_punct(self, chars: str) -> bool:
        return self.at(Kind.PUNCT) and self.peek().text in chars

    def error(self, expected: str, tok: Token | None = None) -> ParseError:
        t = self.peek() if tok is None else tok
        return ParseError(t.line, t.column, f"expected {expected}, got {t.describe()}")

    def expect(self, kind: Kind, text: str | None = None, expected: str | None = None) -> Token:
        if not self.at(kind, text):
            raise self.error(expected or (repr(text) if text else kind.value))
        return self.next()

    def expect_int(self, what: str, limit: int) -> int:
        tok = self.expect(Kind.INT, expected=what)
        value = _int_value(tok)
        if value > limit:
            raise ParseError(tok.line, tok.column, f"{what} {value} out of range (max {limit})")
        return value

    def skip_newlines(self) -> None:
        while self.at(Kind.NEWLINE):
            self.next()

    def end_of_line(self) -> None:
        if self.at(Kind.NEWLINE):
            self.next()
        elif not self.at(Kind.EOF):
            raise self.error("end of line")

    def skip_line(self) -> None:
        while not (self.at(Kind.NEWLINE) or self.at(Kind.EOF)):
            self.next()

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
        except _Unsupported as u:
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

    # --- packets ------------------------------------------------------------------------------

    def packet(self, line: int, timing: Timing) -> PacketEvent | IcmpEvent:
        direction = Direction(self.next().text)
        tok = self.peek()
        if self.at(Kind.WORD, "icmp") and direction is Direction.IN:
            return self.icmp(line, timing)
        if tok.kind is Kind.WORD and tok.text.lower() in ("udp", "icmp", "udplite", "gre", "mpls"):
            raise _Unsupported(f"{tok.text} packet")
        if self.at_punct("[("):
            raise _Unsupported("IP-level packet field")
        flags = self.flags()
        start_tok = self.peek()
        if self.at(Kind.ELLIPSIS):  # nplab packetdrill: `...(0)`, sequence numbers left unchecked
            raise _Unsupported("elided sequence numbers")
        seq_start = self.expect_int("start sequence number", U32_MAX)
        self.expect(Kind.PUNCT, ":")
        seq_end = self.expect_int("end sequence number", U32_MAX)
        self.expect(Kind.PUNCT, "(")
        payload_len = self.expect_int("payload length", U16_MAX)
        self.expect(Kind.PUNCT, ")")
        if self.at(Kind.PUNCT, "!"):  # nplab packetdrill's marker for unchecked sequence numbers
            raise _Unsupported("'!' after the sequence numbers")
        if (seq_end - seq_start) & U32_MAX != payload_len:
            raise ParseError(
                start_tok.line, start_tok.column, "inconsistent TCP sequence numbers and payload length"
            )
        fields: dict[str, int] = {}
        limits = {"ack": U32_MAX, "win": U16_MAX, "urg": U16_MAX}
        while self.at(Kind.WORD) and self.peek().text in limits:
            tok = self.next()
            if tok.text in fields:
                raise ParseError(tok.line, tok.column, f"'{tok.text}' given twice")
            fields[tok.text] = self.expect_int(f"{tok.text} value", limits[tok.text])
        options: tuple[TcpOption, ...] | Elided | None = None
        if self.at(Kind.PUNCT, "<"):
            options = self.options()
        if self.at(Kind.PUNCT, "/"):  # `.../udp(9811 > 1)`: RFC 8899-style TCP over UDP
            raise _Unsupported("TCP over UDP encapsulation (/udp)")
        return PacketEvent(
            line=line,
            timing=timing,
            direction=direction,
            flags=flags,
            seq_start=seq_start,
            seq_end=seq_end,
            payload_len=payload_len,
            ack=fields.get("ack"),
            win=fields.get("win"),
            urg=fields.get("urg"),
            options=options,
        )

    def icmp(self, line: int, timing: Timing) -> IcmpEvent:
        """`icmp TYPE [CODE] [mtu N] [[START:END(LEN)]]`, inbound only."""
        self.next()
        type_tok = self.expect(Kind.WORD, expected="an ICMP type (unreachable, time_exceeded, ...)")
        code_tok = self.next() if self.at(Kind.WORD) and self.peek().text != "mtu" else None
        code = code_tok.text if code_tok else None
        if is_icmpv6(type_tok.text, code):  # names only ICMPv6 has: an IPv6 script
            try:
                icmp_numbers(type_tok.text, code)
            except ValueError:
                raise _Unsupported("ICMPv6 message") from None
        for tok in (type_tok, code_tok):  # the type first, so that its error is named first
            try:
                icmp_numbers(type_tok.text, code if tok is code_tok else None)
            except ValueError as e:
                bad = tok or type_tok
                raise ParseError(bad.line, bad.column, str(e)) from None
        mtu = None
        if self.at(Kind.WORD, "mtu"):
            self.next()
            mtu = self.expect_int("mtu value", U16_MAX)
        quoted = None
        if self.at(Kind.PUNCT, "["):
            self.next()
            if not self.at(Kind.INT):
                raise _Unsupported("ICMP quoting a packet other than TCP")
            start_tok = self.peek()
            quoted = self.expect_int("start sequence number", U32_MAX)
            self.expect(Kind.PUNCT, ":")
            end = self.expect_int("end sequence number", U32_MAX)
            self.expect(Kind.PUNCT, "(")
            length = self.expect_int("payload length", U16_MAX)
            self.expect(Kind.PUNCT, ")")
            if self.at(Kind.PUNCT, "/"):  # `[0:0(0)/udp(9812 > 1)]`
                raise _Unsupported("TCP over UDP encapsulation (/udp)")
            self.expect(Kind.PUNCT, "]", "']'")
            if (end - quoted) & U32_MAX != length:
                raise ParseError(
                    start_tok.line, start_tok.column, "inconsistent TCP sequence numbers and payload length"
                )
        name = type_tok.text
        return IcmpEvent(line=line, timing=timing, icmp_type=name, code=code, mtu=mtu, quoted_seq=quoted)

    def flags(self) -> str:
        """Flags are adjacent words and dots (`S.` lexes as S then .), e.g. S. P. . F. R SEW."""
        first = self.peek()
        parts: list[Token] = []
        while (self.at(Kind.WORD) or self.at(Kind.PUNCT, ".")) and (
            not parts or self.peek().start == parts[-1].end
        ):
            parts.append(self.next())
        text = "".join(t.text for t in parts)
        if not text or any(c not in FLAG_CHARS for c in text) or len(set(text)) != len(text):
            raise self.error(f"TCP flags (each of {FLAG_CHARS} at most once)", first)
        return text

    def options(self) -> tuple[TcpOption, ...] | Elided:
        self.expect(Kind.PUNCT, "<")
        if self.at(Kind.ELLIPSIS):
            self.next()
            self.expect(Kind.PUNCT, ">", "'>'")
            return ELIDED
        items = [self.option()]
        while not self.at(Kind.PUNCT, ">"):
            self.expect(Kind.PUNCT, ",", "',' or '>'")
            items.append(self.option())
        self.next()
        return tuple(items)

    def option(self) -> TcpOption:
        tok = self.peek()
        if tok.kind is Kind.WORD and tok.text in UNSUPPORTED_OPTIONS:
            raise _Unsupported(f"TCP option '{tok.text}'")
        expected = "a TCP option (mss, sackOK, nop, eol, wscale, TS, sack)"
        name = self.expect(Kind.WORD, expected=expected).text
        if name == "nop":
            return Nop()
        if name == "eol":
            return Eol()
        if name == "sackOK":
            return SackOk()
        if name == "mss":
            return Mss(self.expect_int("mss value", U16_MAX))
        if name == "wscale":
            return WScale(self.expect_int("wscale value", 255))
        if name == "TS":
            self.expect(Kind.WORD, "val", "'val'")
            val = self.expect_int("TS val", U32_MAX)
            self.expect(Kind.WORD, "ecr", "'ecr'")
            return Timestamp(val, self.expect_int("TS ecr", U32_MAX))
        if name == "sack":
            blocks: list[tuple[int, int]] = []
            while not blocks or self.at(Kind.INT):
                left = self.expect_int("SACK block left edge", U32_MAX)
                self.expect(Kind.PUNCT, ":")
                blocks.append((left, self.expect_int("SACK block right edge", U32_MAX)))
            return Sack(tuple(blocks))
        raise self.error(expected, tok)

    # --- system calls -------------------------------------------------------------------------

    def syscall(self, line: int, timing: Timing) -> SyscallEvent:
        name = self.next().text
        self.next()  # '('
        args: list[Expr] = []
        # Arguments may run over several lines, broken after '(' or ',' (as packetdrill allows).
        self.skip_newlines()
        if not self.at(Kind.PUNCT, ")"):
            args.append(self.expr())
            while not self.at(Kind.PUNCT, ")"):
                self.expect(Kind.PUNCT, ",", "',' or ')'")
                self.skip_newlines()
                args.append(self.expr())
        self.next()
        self.expect(Kind.PUNCT, "=", "'=' and the expected result")
        result_tok = self.peek()
        result = self.signed_int("the expected result (an integer)")
        errno = note = None
        if self.at(Kind.WORD):
            errno = self.next().text
            if result != -1:
                raise ParseError(result_tok.line, result_tok.column, "an errno goes with a result of -1")
        if self.at(Kind.PUNCT, "("):  # also without errno: `fcntl(3, F_GETFL) = 0x2 (flags O_RDWR)`
            note = self.note()
        for arg in args:
            if isinstance(arg, RawStruct) and "tcpi_" in arg.text:
                raise _Unsupported(f"tcpi_ fields in {name}()")
            if name == "getsockopt" and _has_struct(arg):
                raise _Unsupported("struct argument to getsockopt()")
        return SyscallEvent(
            line=line, timing=timing, name=name, args=tuple(args), result=result, errno=errno, note=note
        )

    def note(self) -> str:
        """The text in parentheses after the result, `(Operation now in progress)`, verbatim."""
        opening = self.next()
        while not self.at(Kind.PUNCT, ")"):
            if self.at(Kind.NEWLINE) or self.at(Kind.EOF):
                raise self.error("')' closing the note")
            self.next()
        closing = self.next()
        return self.src[opening.end : closing.start].strip()

    def signed_int(self, expected: str) -> int:
        if self.at(Kind.PUNCT, "-") and self.at(Kind.INT, ahead=1):
            self.next()
            return -_int_value(self.next())
        return _int_value(self.expect(Kind.INT, expected=expected))

    def expr(self) -> Expr:
        tok = self.peek()
        if tok.kind is Kind.ELLIPSIS:
            self.next()
            return ELIDED
        if tok.kind is Kind.INT or (tok.kind is Kind.PUNCT and tok.text == "-"):
            return IntLit(self.signed_int("an integer after '-'"))
        if tok.kind is Kind.WORD:
            names = [self.next().text]
            while self.at(Kind.PUNCT, "|"):
                self.next()
                names.append(self.expect(Kind.WORD, expected="a symbolic constant after '|'").text)
            return Symbols(tuple(names))
        if tok.kind is Kind.STRING:
            self.next()
            prefix = self.at(Kind.ELLIPSIS) and self.peek().start == tok.end
            if prefix:
                self.next()
            return StringLit(tok.text, prefix)
        if tok.kind is Kind.STRUCT:
            self.next()
            return RawStruct(tok.text)
        if tok.kind is Kind.PUNCT and tok.text == "[":
            self.next()
            items: list[Expr] = []
            if not self.at(Kind.PUNCT, "]"):
                items.append(self.expr())
                while not self.at(Kind.PUNCT, "]"):
                    self.expect(Kind.PUNCT, ",", "',' or ']'")
                    items.append(self.expr())
            self.next()
            return ListExpr(tuple(items))
        raise self.error("an argument (integer, constant, string, [list], {struct} or ...)")


def _has_struct(expr: Expr) -> bool:
    if isinstance(expr, RawStruct):
        return True
    return isinstance(expr, ListExpr) and any(_has_struct(e) for e in expr.items)
