"""The node daemon's control protocol: line-delimited JSON over a Unix socket (mode 0600).

One request per line, answered by zero or more *stream* lines and then exactly one *final* line:

    -> {"op": "ss", "args": {}}
    <- {"ok": true, "result": {"connections": [...], "listeners": [...]}}

    -> {"op": "run_script", "args": {"path": "/abs/path.py", "args": ["a"]}}
    <- {"stream": "stdout", "data": "hello\\n"}
    <- {"stream": "stderr", "data": "..."}
    <- {"ok": true, "result": {"exit_code": 0}}

    -> {"op": "nonsense"}
    <- {"ok": false, "error": {"type": "bad_request", "message": "op: ..."}}

A connection may carry several requests, one after the other. Operations and their arguments are
the pydantic models below (`OPS`); anything else is answered with an error, never a crash.

| op          | args                                   | result                                      |
|-------------|----------------------------------------|---------------------------------------------|
| ping        | -                                      | {"pong": true, "node": ...}                 |
| status      | -                                      | node, address, pid, uptime, counters, apps  |
| ss          | -                                      | {"connections": [info...], "listeners": [...]} |
| run_app     | name, options, timeout?                | the client app's result dict                |
| start_app   | name, options                          | {"id": ...} (a server app keeps running)    |
| stop_app    | id                                     | {"stopped": id}                             |
| flush       | -                                      | {"flushed": true}: trace files are on disk  |
| trace       | since, kinds?, limit, tail, follow     | {"events": [...], "next": seq} (see below)  |
| run_script  | path, args, timeout?                   | {"exit_code": n}; output streams as stdout/stderr |
| shutdown    | -                                      | {"shutting_down": true}                     |

`trace` with `follow: true` streams each event as {"stream": "event", "data": {...}} (and a
{"stream": "heartbeat"} each second of silence) until the client goes away or the daemon stops.

`ControlClient` is the blocking client the CLI and the Python API use; `serve_control` is the
server side the daemon runs (it knows nothing of stacks: it calls a dispatcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_LINE = 1 << 20  # one request or reply line, bytes
SOCKET_MODE = 0o600


# -- message schema ----------------------------------------------------------------------------


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(_Args):
    pass


class AppArgs(_Args):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)


class StopAppArgs(_Args):
    id: str


class TraceArgs(_Args):
    since: int = Field(default=0, ge=0)
    """Sequence number of the first event wanted (the `next` of a previous answer)."""
    kinds: list[str] | None = None
    """Event kinds to keep (StateChange, SegmentEvent, Drop, ...); None keeps all."""
    limit: int = Field(default=1000, ge=1, le=100_000)
    tail: bool = False
    """The last `limit` matching events rather than the first ones from `since`."""
    follow: bool = False


class ScriptArgs(_Args):
    path: str
    args: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0)


OPS: dict[str, type[_Args]] = {
    "ping": NoArgs,
    "flush": NoArgs,
    "status": NoArgs,
    "ss": NoArgs,
    "run_app": AppArgs,
    "start_app": AppArgs,
    "stop_app": StopAppArgs,
    "trace": TraceArgs,
    "run_script": ScriptArgs,
    "shutdown": NoArgs,
}

ErrorType = Literal["bad_request", "unknown_op", "bad_args", "failed", "internal"]


class ControlError(Exception):
    """An error answer from the daemon (or no answer at all: type "unreachable")."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(f"{type_}: {message}")
        self.type = type_
        self.message = message


class RequestError(Exception):
    """Raised by a dispatcher (or parse_request) to answer with an error of a given type."""

    def __init__(self, type_: ErrorType, message: str) -> None:
        super().__init__(message)
        self.type: ErrorType = type_
        self.message = message


def parse_request(line: bytes | str) -> tuple[str, _Args]:
    """Decode one request line into (op, validated args); RequestError says what is wrong."""
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError("bad_request", f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise RequestError("bad_request", "a request is a JSON object {\"op\": ..., \"args\": {...}}")
    op = msg.get("op")
    if not isinstance(op, str):
        raise RequestError("bad_request", "missing \"op\" (a string)")
    extra = set(msg) - {"op", "args"}
    if extra:
        raise RequestError("bad_request", f"unknown fields {sorted(extra)}: a request has op and args")
    model = OPS.get(op)
    if model is None:
        raise RequestError("unknown_op", f"unknown op {op!r}; known: {', '.join(sorted(OPS))}")
    raw = msg.get("args", {})
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RequestError("bad_args", f"{op}: args must be an object")
    try:
        return op, model.model_validate(raw)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(args)'}: {e['msg']}" for e in exc.errors()
        )
        raise RequestError("bad_args", f"{op}: {detail}") from None


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":"), default=str).encode() + b"\n"


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error(type_: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"type": type_, "message": message}}


def stream(name: str, data: Any) -> dict[str, Any]:
    return {"stream": name, "data": data}


# -- server ------------------------------------------------------------------------------------

Emit = Callable[[str, Any], Awaitable[None]]
"""emit(stream_name, data): send one stream line to the requester (waits for the socket)."""
Dispatch = Callable[[str, Any, Emit], Awaitable[Any]]
"""dispatch(op, args, emit) -> result; raise RequestError for an error answer."""


async def _handle_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dispatch: Dispatch
) -> None:
    async def send(msg: dict[str, Any]) -> None:
        writer.write(encode(msg))
        await writer.drain()

    async def emit(name: str, data: Any) -> None:
        await send(stream(name, data))

    try:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # longer than MAX_LINE
                await send(error("bad_request", f"request line longer than {MAX_LINE} bytes"))
                return
            if not line:
                return
            if not line.strip():
                continue
            try:
                op, args = parse_request(line)
                result = await dispatch(op, args, emit)
                reply = ok(result)
            except RequestError as exc:
                reply = error(exc.type, exc.message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in a handler must not take the daemon down
                reply = error("internal", f"{type(exc).__name__}: {exc}")
            await send(reply)
    except (ConnectionError, BrokenPipeError):
        pass  # the client went away
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, BrokenPipeError, OSError):
            await writer.wait_closed()


async def serve_control(path: str | Path, dispatch: Dispatch) -> asyncio.AbstractServer:
    """Listen on Unix socket `path` (replacing a stale file), mode 0600, and answer requests."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)  # the socket file is born 0600: never a window where others can connect
    try:
        server = await asyncio.start_unix_server(
            lambda r, w: _handle_client(r, w, dispatch), path=str(path), limit=MAX_LINE
        )
    finally:
        os.umask(old)
    os.chmod(path, SOCKET_MODE)
    return server


# -- client ------------------------------------------------------------------------------------


class _Default:
    """Marks "the client's own timeout" (None already means: wait forever)."""


DEFAULT = _Default()


class ControlClient:
    """Blocking client: `ControlClient(path).call("ss")`, or iterate `.stream(...)` for output."""

    def __init__(self, path: str | Path, timeout: float | None = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.path))
        except FileNotFoundError:
            sock.close()
            raise ControlError(
                "unreachable", f"no control socket at {self.path}: is the node's daemon running?"
            ) from None
        except OSError as exc:
            sock.close()
            raise ControlError("unreachable", f"cannot connect to {self.path}: {exc}") from None
        return sock

    def stream(
        self, op: str, args: dict[str, Any] | None = None, timeout: float | _Default | None = DEFAULT
    ) -> Iterator[dict[str, Any]]:
        """Send one request; yield each stream message ({"stream": name, "data": ...}) and, last,
        the final reply ({"ok": ..., ...}). `timeout` bounds each wait for a line (default: the
        client's; None waits forever, as a long script or `trace --follow` needs)."""
        wait = self.timeout if isinstance(timeout, _Default) else timeout
        sock = self._connect(wait)
        try:
            sock.sendall(encode({"op": op, "args": args or {}}))
            buf = bytearray()
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    try:
                        chunk = sock.recv(65536)
                    except TimeoutError:
                        raise ControlError("timeout", f"{op}: no answer within {wait}s") from None
                    if not chunk:
                        raise ControlError("unreachable", f"{op}: the daemon closed the connection")
                    buf += chunk
                    if len(buf) > MAX_LINE and b"\n" not in buf:
                        raise ControlError("bad_reply", f"{op}: reply line too long")
                    continue
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                try:
                    msg = json.loads(line)
                except ValueError:
                    raise ControlError("bad_reply", f"{op}: not JSON: {line[:200]!r}") from None
                yield msg
                if "stream" not in msg:
                    return
        finally:
            sock.close()

    def call(
        self, op: str, args: dict[str, Any] | None = None, timeout: float | _Default | None = DEFAULT
    ) -> Any:
        """Send one request and return its result (stream lines are discarded); ControlError on error."""
        final: dict[str, Any] = {}
        for msg in self.stream(op, args, timeout):
            final = msg
        return result_of(op, final)


def result_of(op: str, final: dict[str, Any]) -> Any:
    """The result of a final reply, or ControlError."""
    if final.get("ok") is True:
        return final.get("result")
    err = final.get("error") or {}
    raise ControlError(str(err.get("type", "bad_reply")), str(err.get("message", f"{op}: {final!r}")))


def flush_traces(directory: Path) -> None:
    """Ask every running daemon of a lab to write out its buffered trace, so a connection that just
    ended is in both ends' files (each daemon flushes on its own only once a second)."""
    for sock in sorted(directory.glob("*.sock")):
        try:
            ControlClient(sock, timeout=5.0).call("flush")
        except (ControlError, OSError):
            pass  # a node that is stopping, or not a stack node: its file is what there is
