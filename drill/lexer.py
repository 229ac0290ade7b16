"""Tokenizer for packetdrill scripts.

Newlines are tokens: an event ends at the end of its line, which keeps error line numbers exact.
Constructs that may span lines (`/* */`, `{...}` structs, `%{ }%` blocks, backquoted commands)
are each consumed whole, so no newline token is emitted from inside them. Characters the lexer
does not know become one-character PUNCT tokens, for the parser to reject in context.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ParseError(Exception):
    """A script that cannot be parsed; `line` and `column` are 1-based."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column
        self.message = message


class Kind(Enum):
    INT = "integer"
    FLOAT = "number"
    WORD = "word"
    STRING = "string"
    OPTION = "--option"
    COMMAND = "`command`"
    CODE = "%{ }% block"
    STRUCT = "{...}"
    ELLIPSIS = "'...'"
    PUNCT = "punctuation"
    NEWLINE = "end of line"
    EOF = "end of file"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str  # source text; for STRING the unescaped value, for COMMAND/CODE the inner text
    line: int
    column: int
    start: int  # offsets into the source, for adjacency checks and raw slices
    end: int

    def describe(self) -> str:
        if self.kind in (Kind.NEWLINE, Kind.EOF):
            return str(self.kind.value)
        if self.kind in (Kind.CODE, Kind.COMMAND, Kind.STRUCT):
            return str(self.kind.value)
        return repr(self.text)


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
_HEX = "0123456789abcdefABCDEF"


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.pos = 0
        self.line = 1
        self.line_start = 0
        self.tokens: list[Token] = []

    def error(self, message: str, pos: int | None = None, line: int | None = None) -> ParseError:
        p = self.pos if pos is None else pos
        ln = self.line if line is None else line
        line_start = self.src.rfind("\n", 0, p) + 1
        return ParseError(ln, p - line_start + 1, message)

    def emit(self, kind: Kind, text: str, start: int, line: int, line_start: int) -> None:
        self.tokens.append(Token(kind, text, line, start - line_start + 1, start, self.pos))

    def advance_to(self, pos: int) -> None:
        """Move to `pos`, counting the newlines passed over."""
        for i in range(self.pos, pos):
            if self.src[i] == "\n":
                self.line += 1
                self.line_start = i + 1
        self.pos = pos

    def skip_to(self, closer: str, what: str) -> int:
        """Advance past the next `closer`; returns its offset. Unterminated is an error at start."""
        start, line = self.pos, self.line
        end = self.src.find(closer, self.pos)
        if end < 0:
            raise self.error(f"unterminated {what}", start, line)
        self.advance_to(end + len(closer))
        return end

    def run(self) -> list[Token]:
        src = self.src
        while self.pos < len(src):
            c = src[self.pos]
            start, line, line_start = self.pos, self.line, self.line_start
            if c == "\n":
                self.advance_to(self.pos + 1)
                self.emit(Kind.NEWLINE, "\n", start, line, line_start)
            elif c in " \t\r\f\v":
                self.pos += 1
            elif src.startswith("//", self.pos):
                end = src.find("\n", self.pos)
                self.pos = len(src) if end < 0 else end
            elif src.startswith("/*", self.pos):
                self.pos += 2
                self.skip_to("*/", "/* comment")
            elif src.startswith("%{", self.pos):
                self.pos += 2
                end = self.skip_to("}%", "%{ }% block")
                self.emit(Kind.CODE, src[start + 2 : end], start, line, line_start)
            elif c == "`":
                self.pos += 1
                end = self.skip_to("`", "backquoted command")
                self.emit(Kind.COMMAND, src[start + 1 : end], start, line, line_start)
            elif c == "{":
                self.struct()
                self.emit(Kind.STRUCT, src[start : self.pos], start, line, line_start)
            elif c == '"':
                value = self.string()
                self.emit(Kind.STRING, value, start, line, line_start)
            elif src.startswith("--", self.pos) and self.pos + 2 < len(src) and src[self.pos + 2].isalpha():
                while self.pos < len(src) and not src[self.pos].isspace():
                    self.pos += 1
                self.emit(Kind.OPTION, src[start : self.pos], start, line, line_start)
            elif src.startswith("...", self.pos):
                self.pos += 3
                self.emit(Kind.ELLIPSIS, "...", start, line, line_start)
            elif c.isdigit() or (c == "." and self.pos + 1 < len(src) and src[self.pos + 1].isdigit()):
                kind = self.number()
                self.emit(kind, src[start : self.pos], start, line, line_start)
            elif c.isalpha() or c == "_":
                while self.pos < len(src) and (src[self.pos].isalnum() or src[self.pos] == "_"):
                    self.pos += 1
                self.emit(Kind.WORD, src[start : self.pos], start, line, line_start)
            else:
                self.pos += 1
                self.emit(Kind.PUNCT, c, start, line, line_start)
        self.tokens.append(Token(Kind.EOF, "", self.line, self.pos - self.line_start + 1, self.pos, self.pos))
        return self.tokens

    def number(self) -> Kind:
        src = self.src
        if src.startswith(("0x", "0X"), self.pos) and self.pos + 2 < len(src) and src[self.pos + 2] in _HEX:
            self.pos += 2
            while self.pos < len(src) and src[self.pos] in _HEX:
                self.pos += 1
            return Kind.INT
        while self.pos < len(src) and src[self.pos].isdigit():
            self.pos += 1
        # A fraction needs a digit after the dot, so `0...0.2` lexes as 0, ..., 0.2.
        if self.pos + 1 < len(src) and src[self.pos] == "." and src[self.pos + 1].isdigit():
            self.pos += 1
            while self.pos < len(src) and src[self.pos].isdigit():
                self.pos += 1
            return Kind.FLOAT
        return Kind.INT

    def string(self) -> str:
        src, start, line = self.src, self.pos, self.line
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(src) or src[self.pos] == "\n":
                raise self.error("unterminated string", start, line)
            c = src[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\\" and self.pos + 1 < len(src):
                e = src[self.pos + 1]
                digits = src[self.pos + 2 : self.pos + 4]
                if e == "x" and len(digits) == 2 and all(ch in _HEX for ch in digits):
                    out.append(chr(int(digits, 16)))
                    self.pos += 4
                    continue
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    self.pos += 2
                    continue
                raise self.error(f"unknown escape '\\{e}' in string")
            out.append(c)
            self.pos += 1

    def struct(self) -> None:
        """Consume a balanced `{...}`, skipping over strings inside it."""
        src, start, line = self.src, self.pos, self.line
        depth = 0
        while self.pos < len(src):
            c = src[self.pos]
            if c == '"':
                self.string()
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    self.pos += 1
                    return
            self.advance_to(self.pos + 1)
        raise self.error("unterminated '{'", start, line)


def tokenize(src: str) -> list[Token]:
    """The tokens of `src`, ending with an EOF token. Raises ParseError."""
    return _Lexer(src).run()
