"""packetdrill-compatible scripts for the stack: a tool for the stack, usable without a lab.

It imports `stack` alone (tests/unit/test_layers.py); `tcplab drill` (lab.cli.drill) runs it.
Modules: `lexer`, `tokens`, `parser` (with `packet_grammar`, `syscall_grammar`) -> `ast`;
`matcher` (expected vs. sent segments); `runner` (a script against the stack on a virtual clock),
with `wire` (packets in and out), `addresses` (--ip_version: IPv4, IPv6 or IPv4-mapped IPv6),
`icmp` (ICMP and ICMPv6 lines) and `syscalls` (system calls on the stack's sockets); `report`
(results and their summary).

`parse_script(text)` / `parse_file(path)` return a `drill.ast.Script` or raise `ParseError`
(with line and column). `run_file(path)` / `run_text(text)` / `run_script(script)` run a script
against the stack on a virtual clock (drill.runner) and return a `ScriptResult`.
"""

from drill.lexer import ParseError
from drill.parser import parse_file, parse_script
from drill.report import Failure, ScriptResult
from drill.runner import profile_config, run_file, run_script, run_text

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
