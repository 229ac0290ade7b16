"""Run a packetdrill script against the stack on a virtual clock.

One stack Host at 192.168.0.1 (packetdrill's local address) runs on a VirtualTimeLoop; the script
plays the remote end, 192.0.2.1. Over IPv6 (`--ip_version=ipv6`, in the script or on the command
line, which wins as in packetdrill) the ends are fd3d:fa7b:d17d::1 and 2001:db8::1; with
`ipv4-mapped-ipv6` the sockets are AF_INET6 and the wire IPv4 (drill.addresses). Its `<` lines
are built into IP packets and delivered at their script time; what the stack transmits is
queued, and each `>` line takes the oldest queued packet and checks it (flags, sequence
numbers, ack, window, urgent pointer, options in order: see drill.wire and drill.matcher).
System calls go to the stack's socket API (drill.syscalls). This module keeps the script's
clock and runs its events in order.

Timing (packetdrill's rules): script time 0 is the start of the run. An absolute time is from the
start, `+x` from the previous event's (start) time, `*` any time, `a~b` a range. A `>` line must be seen
within the tolerance (--tolerance_usecs, default 4000) of its time or range; after `*` or a range
the time it was seen becomes the previous event's time. A blocking call `a...b name(...)` starts
at a, the script carries on meanwhile, and it must have returned at b (within the tolerance) by
the next system call or the end of the script. A call written without `...` must not block.

Anything the runner cannot do (a %{ }% block, a tcpi_ struct, a socket option or system call
the stack lacks) ends the script as unsupported, naming the construct and the line: never a
silent pass. Shell lines are interpreted by drill.shell (sysctls mapped to stack settings).
"""

from __future__ import annotations

import asyncio
import random
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

from drill import ast, shell
from drill.addresses import LOCAL_IP, Addresses, addresses
from drill.lexer import ParseError
from drill.matcher import Flow
from drill.parser import parse_script
from drill.report import Failure, ScriptFailed, ScriptResult, ScriptUnsupported, usecs_text
from drill.syscalls import Syscalls, check_result
from drill.wire import Wire
from stack.config import TcpConfig, freebsd_profile, linux_profile
from stack.driver import StackRuntime
from stack.host import Host
from stack.sim.loop import VirtualTimeLoop, close_loop
from stack.socket import Stack

DEFAULT_TOLERANCE_USECS = 4000  # packetdrill's --tolerance_usecs
ANY_TIME_LIMIT_USECS = 24 * 3600 * 1_000_000  # how long `*` waits for a packet
PROFILES = ("linux", "default", "freebsd")

# Script options that need nothing from the runner, and the values it can honour.
_OPTION_VALUES: dict[str, set[str | None]] = {"address_family": {"AF_INET"}}
_ADDRESS_OPTIONS = ("ip_version", "local_ip", "remote_ip")  # drill.addresses
_INT_OPTIONS = ("tolerance_usecs", "bind_port", "connect_port", "speaker_port", "mtu")
_TCPI_STATE = re.compile(r"assert\s+tcpi_state\s*==\s*TCPI_([A-Z_0-9]+)")
_TCPI_OPTIONS = re.compile(r"assert\s+tcpi_options\s*==\s*(\d+)")
# struct tcp_info's tcpi_options bits (Linux and FreeBSD alike), by the stack's `ss` names.
_TCPI_OPT = {"ts": 1, "sack": 2, "ws": 4}


def profile_config(profile: str) -> TcpConfig:
    """The stack's settings for a profile.

    `linux`: what packetdrill scripts written on Linux assume, Linux 6.x's choices where the RFCs
    leave one (stack.config.linux_profile).
    `default`: the stack's own defaults (TcpConfig()).
    `freebsd`: FreeBSD 13/14's defaults and choices where the RFCs leave one, so that the FreeBSD
    TCP test suite's scripts pass (stack.config.freebsd_profile).
    """
    if profile == "default":
        return TcpConfig()
    if profile == "freebsd":
        return freebsd_profile()
    if profile == "linux":
        return linux_profile()
    raise ValueError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")


@dataclass
class _Blocking:
    event: ast.SyscallEvent
    task: asyncio.Task[int]
    end_usecs: int
    done_usecs: int | None = None


class Runner:
    """Runs one parsed script once; `run()` gives its ScriptResult."""

    def __init__(
        self,
        script: ast.Script,
        *,
        name: str = "<script>",
        profile: str = "linux",
        tolerance_usecs: int | None = None,
        config: TcpConfig | None = None,
        seed: int = 1,
        ip_version: str | None = None,
    ) -> None:
        self.script = script
        self.ip_version = ip_version  # the command line's, which overrides the script's
        self.name = name
        self.config = config if config is not None else profile_config(profile)
        self.seed = seed
        self.tolerance = tolerance_usecs
        self.flow = Flow()
        self.blocking: _Blocking | None = None
        self.prev_usecs = 0
        self.events_done = 0
        self._line = 0
        self.notes: list[str] = []

    # --- entry point ------------------------------------------------------------------------

    def run(self) -> ScriptResult:
        loop = VirtualTimeLoop()
        self.loop = loop
        self.wire = Wire(loop, self.flow, lambda: self._line)
        failure: Failure | None = None
        unsupported: str | None = None
        try:
            self.flow.addrs = addrs = self._addresses()
            v4 = addrs.local_ip if not addrs.wire6 else LOCAL_IP
            host = Host(v4, address6=addrs.local_ip6, config=self.config, rng=random.Random(self.seed),
                        isn_key=b"drill")  # fmt: skip
            self.runtime = StackRuntime(host, loop, self.wire.transmit)
            self.calls = Syscalls(Stack(self.runtime), loop, self.flow)
            self._check_options()
            loop.run_until_complete(self._main())
        except ScriptUnsupported as e:
            failure, unsupported = e.failure, e.construct
        except ScriptFailed as e:
            failure = e.failure
        except Exception as e:  # a stack bug surfacing through a callback or call
            failure = Failure(self._line, f"the stack raised {type(e).__name__}: {e}{_origin(e)}")
        finally:
            end = loop.time()
            close_loop(loop)
        return ScriptResult(
            self.name, failure is None, failure, self.events_done, end, unsupported, tuple(self.notes)
        )

    def _addresses(self) -> Addresses:
        """The run's IP version and addresses: the script's options, the command line's
        --ip_version over the script's (as packetdrill)."""
        opts = self.script.options
        version = self.ip_version or opts.get("ip_version") or "ipv4"
        try:
            return addresses(version, opts.get("local_ip"), opts.get("remote_ip"))
        except ValueError as e:
            raise ScriptFailed(0, str(e)) from None

    def _check_options(self) -> None:
        for key, value in self.script.options.items():
            if key in _ADDRESS_OPTIONS:
                continue
            if key in _INT_OPTIONS:
                if value is None or not value.isdigit():
                    raise ScriptFailed(0, f"option --{key} needs an integer value")
                if key == "tolerance_usecs" and self.tolerance is None:
                    self.tolerance = int(value)
                elif key == "bind_port":
                    self.calls.bind_port = int(value)
                elif key in ("connect_port", "speaker_port"):
                    self.calls.connect_port = int(value)
                elif key == "mtu":  # the local interface's MTU: our MSS option follows it
                    self.runtime.host.config = self.runtime.host.config.with_(mtu=int(value))
            elif key in _OPTION_VALUES and value in _OPTION_VALUES[key]:
                continue
            elif key in _OPTION_VALUES:
                raise ScriptUnsupported(0, f"--{key}={value}")
            else:
                raise ScriptUnsupported(0, f"script option --{key}")
        if self.tolerance is None:
            self.tolerance = DEFAULT_TOLERANCE_USECS
        if self.script.init_command is not None:
            self._shell(self.script.init_command)

    def _shell(self, ev: ast.ShellEvent) -> None:
        action = shell.interpret(ev.command)
        if action.unsupported is not None:
            raise ScriptUnsupported(ev.line, action.unsupported)
        self.notes += [f"line {ev.line}: {note}" for note in action.notes]
        self.runtime.host.config = shell.apply(self.runtime.host.config, action)

    @property
    def tol(self) -> int:
        return self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE_USECS

    # --- events -----------------------------------------------------------------------------

    async def _main(self) -> None:
        for ev in self.script.events:
            self._line = ev.line
            if isinstance(ev, ast.UnsupportedEvent):
                raise ScriptUnsupported(ev.line, ev.what)
            if isinstance(ev, ast.ShellEvent):
                assert ev.timing is not None  # only the untimed init command has none
                lo, _ = self._window(ev.timing)
                await self.wire.sleep_until(lo)
                self.prev_usecs = lo
                self._shell(ev)
            elif isinstance(ev, ast.CodeEvent):
                lo, _ = self._window(ev.timing)
                await self.wire.sleep_until(lo)
                self.prev_usecs = lo
                self._code(ev)
            elif isinstance(ev, ast.IcmpEvent):
                await self._inbound(ev)
            elif isinstance(ev, ast.PacketEvent):
                if ev.direction is ast.Direction.OUT:
                    await self._outbound(ev)
                else:
                    await self._inbound(ev)
            else:
                await self._syscall(ev)
            self.events_done += 1
        await self._join_blocking(None)
        cleanup = self.script.cleanup_command
        if cleanup is not None:  # after the test: it can only be noted, never fail the script
            action = shell.interpret(cleanup.command)
            what = action.notes or (f"{action.unsupported} not run",)
            self.notes += [f"line {cleanup.line}: cleanup: {note}" for note in what]

    def _code(self, ev: ast.CodeEvent) -> None:
        """`%{ assert tcpi_state == TCPI_X }%`: the state of the socket under test (as packetdrill,
        the socket of the latest system call), or `tcpi_options == N`: the options negotiated;
        any other code is unsupported."""
        match = _TCPI_STATE.fullmatch(ev.code.strip())
        options = _TCPI_OPTIONS.fullmatch(ev.code.strip())
        if match is None and options is None:
            raise ScriptUnsupported(ev.line, "%{ }% code block")
        sock = self.calls.socket_under_test()
        if sock is None:
            raise ScriptFailed(ev.line, "tcp_info: no socket under test")
        if options is not None:
            names = str(sock.info().get("options", "")).split(",")
            got = sum(_TCPI_OPT.get(name, 0) for name in names)
            if got != int(options.group(1)):
                raise ScriptFailed(ev.line, f"tcpi_options is {got}", options.group(1), str(got))
            return
        assert match is not None
        state = sock.conn.state.name if sock.conn else "LISTEN" if sock.listener else "CLOSED"
        want = match.group(1)
        if state != want:
            raise ScriptFailed(ev.line, f"tcpi_state is TCPI_{state}", f"TCPI_{want}", f"TCPI_{state}")

    def _window(self, t: ast.Timing) -> tuple[int, int]:
        """The script times [lo, hi] an event is due at (hi is lo but for `*` and ranges)."""
        prev = self.prev_usecs
        if t.kind is ast.TimeKind.ABSOLUTE:
            return t.usecs, t.usecs
        if t.kind is ast.TimeKind.RELATIVE:
            return prev + t.usecs, prev + t.usecs
        if t.kind is ast.TimeKind.ABSOLUTE_RANGE:
            return t.usecs, t.end_usecs if t.end_usecs is not None else t.usecs
        if t.kind is ast.TimeKind.RELATIVE_RANGE:
            end = t.end_usecs if t.end_usecs is not None else t.usecs
            return prev + t.usecs, prev + end
        now = self.wire.now()
        return now, now + ANY_TIME_LIMIT_USECS

    async def _outbound(self, ev: ast.PacketEvent) -> None:
        lo, hi = self._window(ev.timing)
        exact = ev.timing.kind in (ast.TimeKind.ABSOLUTE, ast.TimeKind.RELATIVE)
        if (not exact and ev.timing.kind is not ast.TimeKind.ANY) or exact:
            lo, hi = lo - self.tol, hi + self.tol
        else:
            lo = 0
        at = await self.wire.expect(ev, lo, hi, exact, self.tol, self.runtime.host)
        self.prev_usecs = lo + self.tol if exact else at

    async def _inbound(self, ev: ast.PacketEvent | ast.IcmpEvent) -> None:
        lo, _ = self._window(ev.timing)
        await self.wire.sleep_until(lo)
        self.prev_usecs = lo
        self.runtime.deliver([self.wire.inbound(ev)])

    async def _syscall(self, ev: ast.SyscallEvent) -> None:
        start, _ = self._window(ev.timing)
        await self.wire.sleep_until(start)
        await self._join_blocking(ev)
        if self.wire.now() > start + self.tol:
            raise ScriptFailed(
                ev.line, f"{ev.name}() could not start at t={usecs_text(start)}: the blocking call "
                f"before it returned at t={usecs_text(self.wire.now())}",
            )  # fmt: skip
        self.prev_usecs = start
        self._line = ev.line
        task = self.loop.create_task(self.calls.call(ev))
        if ev.timing.block_end_usecs is not None:
            end = ev.timing.block_end_usecs
            if ev.timing.kind is ast.TimeKind.RELATIVE:
                end += start - ev.timing.usecs
            blocking = _Blocking(ev, task, end)
            task.add_done_callback(lambda _t: setattr(blocking, "done_usecs", self.wire.now()))
            self.blocking = blocking
            await asyncio.sleep(0)
            return
        done, _ = await asyncio.wait({task}, timeout=self.tol / 1e6)
        if not done:
            task.cancel()
            raise ScriptFailed(
                ev.line, f"{ev.name}() blocked; the script expects it to return at once "
                "(write `start...end` for a blocking call)",
            )  # fmt: skip
        check_result(ev, task)

    async def _join_blocking(self, next_ev: ast.SyscallEvent | None) -> None:
        b = self.blocking
        if b is None:
            return
        self.blocking = None
        if not b.task.done():
            limit = max(b.end_usecs + self.tol - self.wire.now(), 0)
            await asyncio.wait({b.task}, timeout=limit / 1e6)
        self._line = b.event.line
        if not b.task.done():
            b.task.cancel()
            raise ScriptFailed(
                b.event.line,
                f"{b.event.name}() still blocked at t={usecs_text(self.wire.now())}, expected it to return "
                f"at t={usecs_text(b.end_usecs)}",
            )
        done = b.done_usecs if b.done_usecs is not None else self.wire.now()
        if abs(done - b.end_usecs) > self.tol:
            raise ScriptFailed(
                b.event.line,
                f"{b.event.name}() returned at t={usecs_text(done)}, expected at "
                f"t={usecs_text(b.end_usecs)} (tolerance {self.tol} us)",
            )
        check_result(b.event, b.task)
        if next_ev is not None:
            self._line = next_ev.line


def _origin(exc: BaseException) -> str:
    """ (at file:line)" of the innermost frame of exc's traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


# --- convenience ------------------------------------------------------------------------------


def run_script(
    script: ast.Script,
    *,
    name: str = "<script>",
    profile: str = "linux",
    tolerance_usecs: int | None = None,
    ip_version: str | None = None,
) -> ScriptResult:
    """ip_version: overrides the script's --ip_version (one of IP_VERSIONS)."""
    tolerance = tolerance_usecs
    return Runner(script, name=name, profile=profile, tolerance_usecs=tolerance, ip_version=ip_version).run()


def run_text(
    text: str,
    *,
    name: str = "<script>",
    profile: str = "linux",
    tolerance_usecs: int | None = None,
    defines: frozenset[str] = frozenset(),
    ip_version: str | None = None,
) -> ScriptResult:
    """Parse (`#ifdef NAME` active for NAME in defines) and run; a script that does not parse
    fails at the line of the parse error."""
    try:
        script = parse_script(text, defines)
    except ParseError as e:
        return ScriptResult(name, False, Failure(e.line, f"parse error: {e}"))
    tolerance = tolerance_usecs
    return run_script(script, name=name, profile=profile, tolerance_usecs=tolerance, ip_version=ip_version)


def run_file(
    path: str | Path,
    *,
    profile: str = "linux",
    tolerance_usecs: int | None = None,
    defines: frozenset[str] = frozenset(),
    name: str | None = None,
    ip_version: str | None = None,
) -> ScriptResult:
    p = Path(path)
    shown = str(p) if name is None else name
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return ScriptResult(shown, False, Failure(0, f"cannot read the script: {e}"))
    return run_text(
        text, name=shown, profile=profile, tolerance_usecs=tolerance_usecs, defines=defines,
        ip_version=ip_version,
    )  # fmt: skip
