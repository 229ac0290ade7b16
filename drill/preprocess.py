"""`#ifdef NAME` / `#ifndef NAME` / `#else` / `#endif` blocks, as packetdrill scripts of the BSDs use
them (`#ifdef FreeBSD`), with the names given by `--define`.

Lines of an inactive block, and the directive lines themselves, become empty lines, so every
line keeps its number for the parser's error messages and the runner's failures.
"""

from __future__ import annotations

from drill.lexer import ParseError

_DIRECTIVES = ("#ifdef", "#ifndef", "#else", "#endif")


def preprocess(text: str, defines: frozenset[str] | set[str] = frozenset()) -> str:
    """`text` with the conditional blocks resolved; raises ParseError on an unbalanced block."""
    out: list[str] = []
    # One entry per open block: (its current branch is active, its #else was seen).
    stack: list[tuple[bool, bool]] = []
    opened_at: list[int] = []
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        words = line.split()
        directive = words[0] if words and words[0].startswith("#") else None
        active = all(s[0] for s in stack)
        if directive is None:
            out.append(line if active else "")
            continue
        if directive not in _DIRECTIVES:
            raise ParseError(number, 1, f"unknown directive {directive} (only {', '.join(_DIRECTIVES)})")
        if directive in ("#ifdef", "#ifndef"):
            if len(words) != 2:
                raise ParseError(number, 1, f"{directive} needs one name")
            defined = words[1] in defines
            stack.append((defined if directive == "#ifdef" else not defined, False))
            opened_at.append(number)
        elif not stack:
            raise ParseError(number, 1, f"{directive} without #ifdef")
        elif directive == "#else":
            branch, seen_else = stack[-1]
            if seen_else:
                raise ParseError(number, 1, "a second #else in one block")
            stack[-1] = (not branch, True)
        else:
            stack.pop()
            opened_at.pop()
        out.append("")
    if stack:
        raise ParseError(opened_at[-1], 1, "#ifdef without #endif")
    return "\n".join(out)
