"""packetdrill-compatible scripts for the stack.

`parse_script(text)` / `parse_file(path)` return a `lab.drill.ast.Script` or raise `ParseError`
(with line and column). `run_file(path)` / `run_text(text)` / `run_script(script)` run a script
against the stack on a virtual clock (lab.drill.runner) and return a `ScriptResult`.
"""

from lab.drill.lexer import ParseError
from lab.drill.parser import parse_file, parse_script
from lab.drill.report import Failure, ScriptResult
from lab.drill.runner import profile_config, run_file, run_script, run_text

__all__ = [
    "Failure",
    "ParseError",
    "ScriptResult",
    "parse_file",
    "parse_script",
    "profile_config",
    "run_file",
    "run_script",
    "run_text",
]
