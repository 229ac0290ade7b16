"""Running a user's own Python program on a node's stack (`tcplab run NODE SCRIPT.py ARGS...`).

The contract a script can rely on:

- It runs inside the node daemon, in a thread of its own, as `__main__` (so
  `if __name__ == "__main__":` works), while the stack's event loop runs in the daemon's main thread.
- Module-level names given to it: `stack`, a `stack.socket.Stack` on the node's host (its
  address is `stack.address`, node names resolve through `stack.resolve`), and `argv`, the list
  `[script path, *ARGS]`. `sys.argv` is set to the same list when the script starts (only `argv`
  stays right if two scripts run at once on one node).
- The blocking socket API works as with Python's own sockets:

      s = stack.socket(); s.connect(("server", 7)); s.sendall(b"hi"); print(s.recv(100)); s.close()

  For asyncio, write coroutines against `stack.open_connection` / `stack.start_server` and run
  them with `stack.run(main())`: they run on the stack's loop (never `asyncio.run`, which would
  start a second loop that the stack knows nothing of).
- What the script prints to `sys.stdout` and `sys.stderr` streams back to the caller line by line
  (a partial line goes when the script flushes or ends). Output of threads the script starts
  goes to the daemon's log instead. There is no stdin.
- The exit code is 0 when the script returns, the `SystemExit` code when it exits, 1 when it
  raises (the traceback goes to stderr).
- A script cannot be killed from outside (Python threads cannot): a caller's timeout stops
  waiting and reports it, the script runs on until it ends or the daemon stops.
"""

from __future__ import annotations

import asyncio
import io
import runpy
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from stack.socket import Stack

_local = threading.local()


class _Router(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: a thread running a script writes to its own sink,
    every other thread to the original stream."""

    def __init__(self, name: str, fallback: TextIO) -> None:
        super().__init__()
        self.name_ = name
        self.fallback = fallback

    def _sink(self) -> _LineSink | None:
        sinks: dict[str, _LineSink] | None = getattr(_local, "sinks", None)
        return sinks.get(self.name_) if sinks else None

    def write(self, s: str) -> int:
        sink = self._sink()
        if sink is None:
            return self.fallback.write(s)
        sink.write(s)
        return len(s)

    def flush(self) -> None:
        sink = self._sink()
        if sink is None:
            self.fallback.flush()
        else:
            sink.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False if self._sink() is not None else self.fallback.isatty()

    def fileno(self) -> int:
        return self.fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class _LineSink:
    """Collects a script's writes to one stream and sends each complete line (thread-safe send)."""

    def __init__(self, name: str, send: Callable[[str, str], None]) -> None:
        self.name = name
        self.send = send
        self.buf = ""

    def write(self, s: str) -> None:
        self.buf += s
        if "\n" in self.buf:
            head, _, self.buf = self.buf.rpartition("\n")
            for line in head.split("\n"):
                self.send(self.name, line + "\n")

    def flush(self) -> None:
        if self.buf:
            data, self.buf = self.buf, ""
            self.send(self.name, data)


_install_lock = threading.Lock()


def install_output_router() -> None:
    """Route sys.stdout/sys.stderr per thread (idempotent; the daemon calls it once)."""
    with _install_lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router("stdout", sys.stdout)
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router("stderr", sys.stderr)


def _run_in_thread(stack: Stack, path: str, args: list[str], send: Callable[[str, str], None]) -> int:
    sinks = {"stdout": _LineSink("stdout", send), "stderr": _LineSink("stderr", send)}
    _local.sinks = sinks
    argv = [path, *args]
    code = 0
    try:
        sys.argv = list(argv)
        runpy.run_path(path, init_globals={"stack": stack, "argv": argv}, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            sinks["stderr"].write(f"{exc.code}\n")
            code = 1
    except BaseException:
        sinks["stderr"].write(traceback.format_exc())
        code = 1
    finally:
        for sink in sinks.values():
            sink.flush()
        _local.sinks = None
    return code


Emit = Callable[[str, Any], Awaitable[None]]


async def run_script(
    stack: Stack, path: str, args: list[str], emit: Emit, timeout: float | None = None
) -> int:
    """Run the script at `path` in a new thread; stream its output through `emit(stream, text)`;
    return its exit code. Raises FileNotFoundError for a missing script, TimeoutError when
    `timeout` passes first (the script keeps running: see the module docstring)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no script at {path}")
    install_output_router()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def send(name: str, data: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (name, data))
        except RuntimeError:
            pass  # the loop is closed (the daemon stopped while the script ran): nobody listens

    def target() -> None:
        code = 1
        try:
            code = _run_in_thread(stack, path, args, send)
        finally:
            send("exit", code)

    thread = threading.Thread(target=target, name=f"script {Path(path).name}", daemon=True)
    thread.start()
    deadline = None if timeout is None else loop.time() + timeout
    listening = True
    while True:
        wait = None if deadline is None else max(deadline - loop.time(), 0.0)
        try:
            name, data = await asyncio.wait_for(queue.get(), wait)
        except TimeoutError:
            raise TimeoutError(f"script {path} still running after {timeout}s") from None
        if name == "exit":
            return int(data)
        if listening:
            try:
                await emit(name, data)
            except (ConnectionError, BrokenPipeError):
                listening = False  # the caller went away; the script runs to its end anyway
