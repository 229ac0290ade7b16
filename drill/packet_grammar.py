"""The packet grammar of packetdrill scripts: a TCP segment line (flags, sequence numbers, ack,
win, urg, `<options>`) and an inbound ICMP line, as drill.ast events."""

from __future__ import annotations

from drill.ast import (
    ELIDED,
    Direction,
    Elided,
    Eol,
    IcmpEvent,
    Mss,
    Nop,
    PacketEvent,
    Sack,
    SackOk,
    TcpOption,
    Timestamp,
    Timing,
    WScale,
)
from drill.icmp import check_names
from drill.lexer import Kind, ParseError, Token
from drill.tokens import U16_MAX, U32_MAX, TokenStream, UnsupportedSyntax

FLAG_CHARS = "FSRP.EWU"  # FIN SYN RST PSH ACK ECE CWR URG
# packetdrill TCP options this runner does not implement (others are simply errors).
UNSUPPORTED_OPTIONS = frozenset({"FO", "FOEXP", "md5", "mpcapable", "dss"})
ICMP_WORDS = ("icmp", "icmpv6", "icmp6")  # packetdrill writes `icmp` for both versions
# IP header fields a packet line may give in parentheses: IPv4's TTL and TOS, IPv6's hop limit
# and traffic class.
IP_FIELDS = {"ttl": 0xFF, "tos": 0xFF, "hlim": 0xFF, "class": 0xFF}


class PacketGrammar(TokenStream):
    """The packet rules of the parser (drill.parser)."""

    def packet(self, line: int, timing: Timing) -> PacketEvent | IcmpEvent:
        direction = Direction(self.next().text)
        tok = self.peek()
        if tok.kind is Kind.WORD and tok.text in ICMP_WORDS and direction is Direction.IN:
            return self.icmp(line, timing)
        if tok.kind is Kind.WORD and tok.text.lower() in ("udp", "udplite", "gre", "mpls", *ICMP_WORDS):
            raise UnsupportedSyntax(f"{tok.text} packet")
        ip_fields = self.ip_fields() if self.at(Kind.PUNCT, "(") else ()
        if self.at_punct("[("):
            raise UnsupportedSyntax("IP-level packet field")
        flags = self.flags()
        start_tok = self.peek()
        if self.at(Kind.ELLIPSIS):  # nplab packetdrill: `...(0)`, sequence numbers left unchecked
            raise UnsupportedSyntax("elided sequence numbers")
        seq_start = self.expect_int("start sequence number", U32_MAX)
        self.expect(Kind.PUNCT, ":")
        seq_end = self.expect_int("end sequence number", U32_MAX)
        self.expect(Kind.PUNCT, "(")
        payload_len = self.expect_int("payload length", U16_MAX)
        self.expect(Kind.PUNCT, ")")
        seq_absolute = self.at(Kind.PUNCT, "!")  # nplab packetdrill: the numbers as on the wire
        if seq_absolute:
            self.next()
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
            raise UnsupportedSyntax("TCP over UDP encapsulation (/udp)")
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
            ip_fields=ip_fields,
            seq_absolute=seq_absolute,
        )

    def ip_fields(self) -> tuple[tuple[str, int], ...]:
        """`(ttl 4)`, `(tos 0x20, ttl 4)`: the IP header fields of IP_FIELDS, in order."""
        self.expect(Kind.PUNCT, "(")
        fields: list[tuple[str, int]] = []
        while True:
            if not (self.at(Kind.WORD) and self.peek().text in IP_FIELDS):
                raise UnsupportedSyntax(f"IP-level packet field {self.peek().text}")
            name = self.next().text
            fields.append((name, self.expect_int(f"{name} value", IP_FIELDS[name])))
            if not self.at(Kind.PUNCT, ","):
                break
            self.next()
        self.expect(Kind.PUNCT, ")")
        return tuple(fields)

    def icmp(self, line: int, timing: Timing) -> IcmpEvent:
        """`icmp TYPE [CODE] [mtu N] [[START:END(LEN)]]`, inbound only. The names must be ICMPv4
        or ICMPv6 names; which table applies is the run's IP version (drill.icmp)."""
        icmpv6 = self.next().text != "icmp"
        type_tok = self.expect(Kind.WORD, expected="an ICMP type (unreachable, time_exceeded, ...)")
        code_tok = self.next() if self.at(Kind.WORD) and self.peek().text != "mtu" else None
        code = code_tok.text if code_tok else None
        for tok in (type_tok, code_tok):  # the type first, so that its error is named first
            try:
                check_names(type_tok.text, code if tok is code_tok else None, icmpv6)
            except ValueError as e:
                bad = tok or type_tok
                raise ParseError(bad.line, bad.column, str(e)) from None
        mtu = None
        if self.at(Kind.WORD, "mtu"):
            self.next()
            mtu = self.expect_int("mtu value", U32_MAX)  # 32 bits in Packet Too Big (RFC 4443 3.2)
        quoted = None
        if self.at(Kind.PUNCT, "["):
            self.next()
            if not self.at(Kind.INT):
                raise UnsupportedSyntax("ICMP quoting a packet other than TCP")
            start_tok = self.peek()
            quoted = self.expect_int("start sequence number", U32_MAX)
            self.expect(Kind.PUNCT, ":")
            end = self.expect_int("end sequence number", U32_MAX)
            self.expect(Kind.PUNCT, "(")
            length = self.expect_int("payload length", U16_MAX)
            self.expect(Kind.PUNCT, ")")
            if self.at(Kind.PUNCT, "/"):  # `[0:0(0)/udp(9812 > 1)]`
                raise UnsupportedSyntax("TCP over UDP encapsulation (/udp)")
            self.expect(Kind.PUNCT, "]", "']'")
            if (end - quoted) & U32_MAX != length:
                raise ParseError(
                    start_tok.line, start_tok.column, "inconsistent TCP sequence numbers and payload length"
                )
        name = type_tok.text
        return IcmpEvent(
            line=line, timing=timing, icmp_type=name, code=code, mtu=mtu, quoted_seq=quoted, icmpv6=icmpv6
        )

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
            raise UnsupportedSyntax(f"TCP option '{tok.text}'")
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
