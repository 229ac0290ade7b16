"""The system call grammar of packetdrill scripts: `name(arg, ...) = RESULT [ERRNO] [(note)]`,
the arguments integers, symbolic constants joined by `|`, strings, [lists], {structs} or `...`."""

from __future__ import annotations

from drill.ast import ELIDED, Expr, IntLit, ListExpr, RawStruct, StringLit, Symbols, SyscallEvent, Timing
from drill.lexer import Kind, ParseError
from drill.tokens import TokenStream, UnsupportedSyntax, int_value


class SyscallGrammar(TokenStream):
    """The system call rules of the parser (drill.parser)."""

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
                raise UnsupportedSyntax(f"tcpi_ fields in {name}()")
            if name == "getsockopt" and _has_struct(arg):
                raise UnsupportedSyntax("struct argument to getsockopt()")
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
            return -int_value(self.next())
        return int_value(self.expect(Kind.INT, expected=expected))

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
