"""The parser's cursor over a script's tokens (drill.lexer), shared by the grammar modules:
look ahead, take, expect a kind or an integer in range, and stop at the end of a line."""

from __future__ import annotations

from drill.lexer import Kind, ParseError, Token, tokenize

U32_MAX = (1 << 32) - 1
U16_MAX = (1 << 16) - 1


class UnsupportedSyntax(Exception):
    """Raised inside an event on valid but unsupported syntax; the event becomes Unsupported."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def int_value(tok: Token) -> int:
    return int(tok.text, 16) if tok.text[:2].lower() == "0x" else int(tok.text)


class TokenStream:
    """The tokens of one script and the index of the next one."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0

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
        value = int_value(tok)
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
