"""The control protocol without root: request parsing, the server and client over a Unix socket in a
temporary directory (with a stand-in dispatcher), and the user-script runner with a stand-in stack."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.node import control, scripts
from lab.node.control import ControlClient, ControlError, RequestError, parse_request

# -- parse_request ------------------------------------------------------------------------------


def test_parse_valid_requests() -> None:
    op, args = parse_request(b'{"op": "ping"}')
    assert op == "ping" and isinstance(args, control.NoArgs)
    op, args = parse_request('{"op": "trace", "args": {"since": 5, "kinds": ["Drop"], "follow": true}}')
    assert isinstance(args, control.TraceArgs)
    assert (args.since, args.kinds, args.follow, args.limit) == (5, ["Drop"], True, 1000)
    op, args = parse_request('{"op": "run_app", "args": {"name": "echo-client", "options": {"host": "x"}}}')
    assert isinstance(args, control.AppArgs) and args.options == {"host": "x"} and args.timeout is None
    op, args = parse_request('{"op": "run_script", "args": {"path": "/x.py", "args": ["1"]}}')
    assert isinstance(args, control.ScriptArgs) and args.args == ["1"]
    assert parse_request('{"op": "status", "args": null}')[0] == "status"


@pytest.mark.parametrize(
    ("line", "kind", "words"),
    [
        (b"", "bad_request", "not JSON"),
        (b"{nope", "bad_request", "not JSON"),
        (b"\xff", "bad_request", "not JSON"),
        (b"42", "bad_request", "JSON object"),
        (b'{"args": {}}', "bad_request", "op"),
        (b'{"op": 3}', "bad_request", "op"),
        (b'{"op": "ping", "id": 1}', "bad_request", "unknown fields"),
        (b'{"op": "reboot"}', "unknown_op", "known: "),
        (b'{"op": "ping", "args": []}', "bad_args", "object"),
        (b'{"op": "ping", "args": {"x": 1}}', "bad_args", "x"),
        (b'{"op": "trace", "args": {"since": -1}}', "bad_args", "since"),
        (b'{"op": "trace", "args": {"limit": 0}}', "bad_args", "limit"),
        (b'{"op": "run_app", "args": {}}', "bad_args", "name"),
        (b'{"op": "run_app", "args": {"name": "x", "timeout": 0}}', "bad_args", "timeout"),
        (b'{"op": "stop_app", "args": {}}', "bad_args", "id"),
        (b'{"op": "run_script", "args": {"args": []}}', "bad_args", "path"),
    ],
)
def test_parse_errors_name_the_problem(line: bytes, kind: str, words: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(line)
    assert info.value.type == kind
    assert words in info.value.message


def test_every_op_has_an_args_model() -> None:
    assert set(control.OPS) == {"ping", "status", "ss", "run_app", "start_app", "stop_app", "trace", "flush",
                                "run_script", "shutdown"}
    for op in control.OPS:
        if op in ("ping", "status", "ss", "shutdown"):
            assert parse_request(json.dumps({"op": op}))[0] == op


# -- server and client -----------------------------------------------------------------------------


class Server:
    """serve_control on a loop in a thread, with a dispatcher that records what it was asked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[tuple[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "control server did not start"

    async def dispatch(self, op: str, args: Any, emit: control.Emit) -> Any:
        self.calls.append((op, args))
        if op == "ping":
            return {"pong": True}
        if op == "run_script":
            for i in range(3):
                await emit("stdout", f"line {i}\n")
            await emit("stderr", "oops\n")
            return {"exit_code": 0}
        if op == "stop_app":
            raise RequestError("bad_args", f"no app {args.id}")
        if op == "status":
            raise ZeroDivisionError("a bug in a handler")
        if op == "ss":
            return {"big": "x" * 300_000}
        return None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = await control.serve_control(self.path, self.dispatch)
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "node.sock")
    try:
        yield s
    finally:
        s.close()


def test_socket_is_private(server: Server) -> None:
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(server.path).st_mode)


def test_call_and_errors(server: Server) -> None:
    client = ControlClient(server.path, timeout=10)
    assert client.call("ping") == {"pong": True}
    with pytest.raises(ControlError) as info:
        client.call("stop_app", {"id": "web"})
    assert (info.value.type, info.value.message) == ("bad_args", "no app web")
    with pytest.raises(ControlError) as info:
        client.call("status")
    assert info.value.type == "internal" and "ZeroDivisionError" in info.value.message
    with pytest.raises(ControlError) as info:
        client.call("launch")
    assert info.value.type == "unknown_op"
    assert client.call("ss")["big"] == "x" * 300_000  # a reply larger than one recv
    assert client.call("ping") == {"pong": True}  # the server survived all that


def test_stream_yields_lines_then_the_final_reply(server: Server) -> None:
    messages = list(ControlClient(server.path).stream("run_script", {"path": "/s.py"}))
    assert messages == [
        {"stream": "stdout", "data": "line 0\n"},
        {"stream": "stdout", "data": "line 1\n"},
        {"stream": "stdout", "data": "line 2\n"},
        {"stream": "stderr", "data": "oops\n"},
        {"ok": True, "result": {"exit_code": 0}},
    ]
    assert ControlClient(server.path).call("run_script", {"path": "/s.py"}) == {"exit_code": 0}


def test_raw_connection_survives_bad_lines(server: Server) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(server.path))
        f = s.makefile("rb")
        s.sendall(b"garbage\n\n" + b'{"op": "ping"}\n')
        assert json.loads(f.readline())["error"]["type"] == "bad_request"
        assert json.loads(f.readline()) == {"ok": True, "result": {"pong": True}}
        s.sendall(b"x" * (control.MAX_LINE + 10) + b"\n")
        reply = json.loads(f.readline())
        assert reply["ok"] is False and "longer than" in reply["error"]["message"]
    assert ControlClient(server.path).call("ping") == {"pong": True}


def test_unreachable_daemon(tmp_path: Path) -> None:
    with pytest.raises(ControlError) as info:
        ControlClient(tmp_path / "none.sock").call("ping")
    assert info.value.type == "unreachable" and "no control socket" in info.value.message


def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "node.sock"
    path.write_text("left over")
    s = Server(path)
    try:
        assert ControlClient(path).call("ping") == {"pong": True}
    finally:
        s.close()


# -- user scripts ----------------------------------------------------------------------------------


class FakeStack:
    address = "10.2.0.9"


def run_script(
    path: Path, args: list[str], timeout: float | None = None
) -> tuple[int, list[tuple[str, str]]]:
    out: list[tuple[str, str]] = []

    async def emit(name: str, data: Any) -> None:
        out.append((name, data))

    async def main() -> int:
        return await scripts.run_script(FakeStack(), str(path), args, emit, timeout)  # type: ignore[arg-type]

    return asyncio.run(main()), out


def test_script_output_exit_code_and_names(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(
        "import sys\n"
        "print('on', stack.address, argv[1:], sys.argv[1:], __name__)\n"
        "sys.stdout.write('partial')\n"
        "sys.stdout.write(' line\\ntwo\\nthree')\n"
        "print('warn', file=sys.stderr)\n"
        "sys.exit(7)\n"
    )
    code, out = run_script(script, ["a", "b"])
    assert code == 7
    assert out == [
        ("stdout", "on 10.2.0.9 ['a', 'b'] ['a', 'b'] __main__\n"),
        ("stdout", "partial line\n"),
        ("stdout", "two\n"),
        ("stderr", "warn\n"),
        ("stdout", "three"),
    ]


def test_script_exception_and_plain_end(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    raise KeyError('k')\nf()\n")
    code, out = run_script(bad, [])
    assert code == 1
    err = "".join(data for name, data in out if name == "stderr")
    assert "Traceback" in err and "KeyError: 'k'" in err
    good = tmp_path / "good.py"
    good.write_text("x = 1\n")
    assert run_script(good, []) == (0, [])
    message = tmp_path / "msg.py"
    message.write_text("raise SystemExit('fatal: no')\n")
    assert run_script(message, []) == (1, [("stderr", "fatal: no\n")])


def test_script_timeout_and_missing_file(tmp_path: Path) -> None:
    slow = tmp_path / "slow.py"
    slow.write_text("import threading\nthreading.Event().wait(0.3)\n")
    with pytest.raises(TimeoutError):
        run_script(slow, [], timeout=0.05)
    # The script runs on after the caller stopped waiting (and after its loop closed), then ends.
    deadline = time.monotonic() + 5
    while any(t.name == "script slow.py" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the script thread did not end"
        time.sleep(0.01)
    with pytest.raises(FileNotFoundError):
        run_script(tmp_path / "absent.py", [])


def test_other_threads_print_to_the_real_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    scripts.install_output_router()
    print("daemon's own line")
    assert "daemon's own line" in capsys.readouterr().out
