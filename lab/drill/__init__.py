"""packetdrill-compatible scripts for the stack: the script language front end.

`parse_script(text)` / `parse_file(path)` return a `lab.drill.ast.Script` or raise `ParseError`
(with line and column). The runner that executes scripts against the stack builds on this.
"""

from lab.drill.lexer import ParseError
from lab.drill.parser import parse_file, parse_script

__all__ = ["ParseError", "parse_file", "parse_script"]
