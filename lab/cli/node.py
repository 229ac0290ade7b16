"""CLI commands that work on one node's stack, through its daemon's control socket (lab.node.control).

    tcplab http NODE URL [--method M] [--data D] [--header 'K: V']...   HTTP client on NODE's stack
    tcplab echo NODE TARGET [--bytes N | --message M]                  echo round trip
    tcplab transfer NODE TARGET --bytes N [--parallel P] [--reverse]   bulk transfer, goodput
    tcplab run NODE SCRIPT.py [ARGS]...                                 a user's script; output streams
    tcplab ss NODE                                                      sockets, like `ss -tni`
    tcplab trace NODE [--follow]                                        the node's trace events

A node name works wherever a host is expected (URL host, TARGET): the daemon resolves it.
The lab is `--lab NAME` (default: the only lab up); `--socket PATH` talks to a daemon directly.
Tables go to stdout, `--json` prints JSON instead, errors go to stderr.

`register(app)` adds the commands to a Typer app (lab.cli.root loads it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.node.control import ControlClient, ControlError

stderr = Console(stderr=True, soft_wrap=True)  # messages stay one line each, piped or not


def _stdout() -> Console:
    """A console for tables: the terminal's width on a TTY, wide enough for whole rows elsewhere."""
    return Console() if sys.stdout.isatty() else Console(width=250)

LabOpt = Annotated[str | None, typer.Option("--lab", help="The lab (default: the only one up).")]
SocketOpt = Annotated[
    Path | None, typer.Option("--socket", help="Talk to this control socket instead of a lab's node.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for the result.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    stderr.print(f"tcplab: {message}", markup=False, highlight=False, soft_wrap=True)  # one whole line
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def socket_path(node: str, lab: str | None, socket: Path | None) -> Path:
    """The control socket of `node`: given directly, or in the lab's run directory."""
    if socket is not None:
        return socket
    from lab.cli.root import pick_lab, require_lab_privileges
    from lab.kernel.state import run_dir

    require_lab_privileges()
    name = pick_lab(lab)
    path = run_dir(name) / f"{node}.sock"
    if not path.exists():
        _fail(f"node {node} of lab {name} has no running daemon ({path} is missing): "
              "is it a stack node, and is the lab up?")
    return path


def _call(path: Path, op: str, args: dict[str, Any] | None = None, timeout: float | None = 30.0) -> Any:
    try:
        return ControlClient(path, timeout=timeout).call(op, args, timeout=timeout)
    except ControlError as exc:
        _fail(exc.message if exc.type in ("failed", "bad_args") else str(exc))


def _app_timeout(timeout: float) -> float:
    return timeout + 5.0  # the daemon's own timeout answers first


# -- http / echo / transfer -----------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, path?query) of an http URL; the scheme may be left out."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"{url}: only http:// URLs (the stack has no TLS)")
    if not parts.hostname:
        raise ValueError(f"{url}: no host")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"{url}: bad port") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, port, path


def parse_headers(headers: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header {header!r}: write it as 'Name: value'")
        out[name.strip()] = value.strip()
    return out


def http(
    node: Annotated[str, typer.Argument(help="The stack node that sends the request.")],
    url: Annotated[str, typer.Argument(help="http://HOST[:PORT]/PATH; HOST may be a node name.")],
    method: Annotated[str, typer.Option("--method", "-X", help="Request method.")] = "GET",
    data: Annotated[str | None, typer.Option("--data", "-d", help="Request body.")] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="'Name: value', repeatable.")
    ] = None,
    count: Annotated[int, typer.Option(help="Requests on one kept-alive connection.")] = 1,
    timeout: TimeoutOpt = 60.0,
    lab: LabOpt = None,
    socket: SocketOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the HTTP client on NODE's stack: status, size, digest and timings of the response."""
    try:
        host, port, path = parse_url(url)
        headers = parse_headers(header or [])
    except ValueError as exc:
        _fail(str(exc), code=2)
    if data is not None and method == "GET":
        method = "POST"
    options: dict[str, Any] = {"host": host, "port": port, "method": method.upper(), "path": path,
                               "headers": headers, "count": count, "timeout": timeout}
    if data is not None:
        options["body"] = data
    sock = socket_path(node, lab, socket)
    result = _call(sock, "run_app", {"name": "http-client", "options": options, "timeout": timeout},
                   _app_timeout(timeout))
    if json_out:
        _print_json(result)
    else:
        table = Table(title=escape(f"{node}: {method.upper()} {url}"), title_justify="left")  # [IPv6]
        for col in ("status", "bytes", "sha256", "connect", "ttfb", "total", "reused"):
            table.add_column(col)
        for r in result["responses"]:
            table.add_row(f"{r['status']} {r['reason']}", str(r["body_length"]), r["sha256"][:16],
                          _ms(r["connect_time"]), _ms(r["ttfb"]), _ms(r["total"]), str(r["reused"]))
        _stdout().print(table)
    if not result.get("ok", False):
        raise typer.Exit(1)


def echo(
    node: Annotated[str, typer.Argument(help="The stack node that sends.")],
    target: Annotated[str, typer.Argument(help="Host (or node name) running an echo server.")],
    nbytes: Annotated[int | None, typer.Option("--bytes", help="Send N bytes of a known pattern.")] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Send this text.")] = None,
    port: Annotated[int, typer.Option(help="The echo server's port.")] = 7,
    timeout: TimeoutOpt = 60.0,
    lab: LabOpt = None,
    socket: SocketOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Send bytes to an echo server from NODE's stack and check they come back."""
    if nbytes is not None and message is not None:
        _fail("give --bytes or --message, not both", code=2)
    options: dict[str, Any] = {"host": target, "port": port}
    if message is not None:
        options["message"] = message
    else:
        options["size"] = 1000 if nbytes is None else nbytes
    sock = socket_path(node, lab, socket)
    result = _call(sock, "run_app", {"name": "echo-client", "options": options, "timeout": timeout},
                   _app_timeout(timeout))
    if json_out:
        _print_json(result)
    else:
        verdict = "ok" if result["ok"] else f"MISMATCH at byte {result.get('first_mismatch')}"
        _stdout().print(f"{node} -> {escape(target)}:{port}: sent {result['bytes_sent']}, "
                     f"received {result['bytes_received']}, {verdict}; "
                     f"connect {_ms(result['connect_time'])}, round trip {_ms(result['rtt'])}",
                     highlight=False)
    if not result["ok"]:
        raise typer.Exit(1)


def transfer(
    node: Annotated[str, typer.Argument(help="The stack node running the bulk client.")],
    target: Annotated[str, typer.Argument(help="Host (or node name) running a bulk server.")],
    nbytes: Annotated[int, typer.Option("--bytes", help="Bytes in total (split over the streams).")],
    parallel: Annotated[int, typer.Option("--parallel", "-P", help="Parallel connections.")] = 1,
    reverse: Annotated[
        bool, typer.Option("--reverse", "-R", help="The target sends, NODE receives.")
    ] = False,
    port: Annotated[int, typer.Option(help="The bulk server's port.")] = 5201,
    timeout: TimeoutOpt = 300.0,
    lab: LabOpt = None,
    socket: SocketOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Bulk transfer between NODE's stack and TARGET; reports goodput. When TARGET is a stack
    node of the lab, its bulk server is started if it is not running."""
    sock = socket_path(node, lab, socket)
    target_sock = sock.parent / f"{target}.sock"
    if target_sock.exists():
        try:
            ControlClient(target_sock, timeout=10).call(
                "start_app", {"name": "bulk-server", "options": {"port": port}})
        except ControlError as exc:
            if "already running" not in exc.message:
                _fail(f"starting bulk-server on {target}: {exc.message}")
    options = {"host": target, "port": port, "bytes": nbytes, "streams": parallel,
               "direction": "recv" if reverse else "send"}
    result = _call(sock, "run_app", {"name": "bulk-client", "options": options, "timeout": timeout},
                   _app_timeout(timeout))
    if json_out:
        _print_json(result)
    else:
        arrow = "<-" if reverse else "->"
        table = Table(title=escape(f"{node} {arrow} {target}:{port}"), title_justify="left")
        rows = result.get("streams") or []
        keys = [k for k in ("stream", "role", "bytes", "seconds", "goodput_bps", "ok", "detail")
                if any(k in r for r in rows)]
        for k in keys:
            table.add_column(k)
        for r in rows:
            table.add_row(*[_cell(k, r.get(k)) for k in keys])
        table.caption = " ".join(
            f"{k}={_cell(k, v)}" for k, v in result.items() if not isinstance(v, (list, dict)))
        _stdout().print(table)
    if result.get("ok") is False:
        raise typer.Exit(1)


def _ms(seconds: Any) -> str:
    return f"{float(seconds) * 1000:.1f} ms" if isinstance(seconds, (int, float)) else "-"


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and ("bps" in key or "goodput" in key):
        return f"{value / 1e6:.2f} Mbit/s" if "bps" in key else f"{value:.3g}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


# -- run -------------------------------------------------------------------------------------------


def run(
    node: Annotated[str, typer.Argument(help="The stack node to run the script on.")],
    script: Annotated[
        Path, typer.Argument(help="A Python file; it gets `stack` and `argv` (see lab.node.scripts).")
    ],
    args: Annotated[list[str] | None, typer.Argument(help="Arguments for the script.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop waiting after this many seconds.")] = None,
    lab: LabOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Run your own program against NODE's stack socket API; its output streams back here."""
    path = script.resolve()
    if not path.is_file():
        _fail(f"no script at {script}", code=2)
    sock = socket_path(node, lab, socket)
    client = ControlClient(sock, timeout=None)
    final: dict[str, Any] = {}
    try:
        for msg in client.stream("run_script", {"path": str(path), "args": list(args or []),
                                                "timeout": timeout}, timeout=None):
            name = msg.get("stream")
            if name == "stdout":
                sys.stdout.write(str(msg["data"]))
                sys.stdout.flush()
            elif name == "stderr":
                sys.stderr.write(str(msg["data"]))
                sys.stderr.flush()
            elif name is None:
                final = msg
    except ControlError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted (the script runs on in the daemon until it ends)", code=130)
    if not final.get("ok"):
        _fail(str((final.get("error") or {}).get("message", final)))
    raise typer.Exit(int(final["result"]["exit_code"]))


# -- ss ----------------------------------------------------------------------------------------------

SS_COLUMNS = ("state", "recv_q", "send_q", "local", "remote", "rto", "srtt", "cwnd", "ssthresh",
              "retransmits", "mss", "cc", "options")


def ss_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Listeners then connections, with the columns of `ss -tni` (missing values as None)."""
    rows: list[dict[str, Any]] = []
    for lst in result.get("listeners", []):
        rows.append({"state": "LISTEN", "recv_q": lst.get("accept_queue", 0), "send_q": lst.get("backlog"),
                     "local": lst.get("local"), "remote": "*:*"})
    rows.extend(result.get("connections", []))
    return rows


def _fmt_ss(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in ("rto", "srtt") and isinstance(value, (int, float)):
        return f"{value * 1000:.1f}ms"
    return escape(str(value))  # "[fd00::1]:80" is an endpoint, not rich markup


def ss_table(node: str, result: dict[str, Any]) -> Table:
    """`tcplab ss`'s table of the daemon's `ss` answer."""
    table = Table(title=escape(f"{node} ({result.get('address')})"), title_justify="left")
    for col in SS_COLUMNS:
        left = col in ("state", "local", "remote", "cc", "options")
        table.add_column(col.replace("_", "-").replace("retransmits", "retrans"),
                         justify="left" if left else "right")
    for row in ss_rows(result):
        table.add_row(*[_fmt_ss(col, row.get(col)) for col in SS_COLUMNS])
    return table


def ss(
    node: Annotated[str, typer.Argument(help="The stack node.")],
    lab: LabOpt = None,
    socket: SocketOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sockets of NODE's stack, like `ss -tni`: state, queues, rto, srtt, cwnd, ssthresh, retransmits."""
    result = _call(socket_path(node, lab, socket), "ss")
    if json_out:
        _print_json(result)
        return
    _stdout().print(ss_table(node, result))


# -- trace ----------------------------------------------------------------------------------------------


def format_event(e: dict[str, Any]) -> str:
    """One line for a trace event (the fields that matter for its kind)."""
    kind = e.get("kind", "?")
    t = f"{e.get('time', 0.0):.6f}"
    if kind == "StateChange":
        return f"{t} {e['conn']} {e['old']} -> {e['new']} ({e['cause']})"
    if kind == "SegmentEvent":
        opts = f" <{e['options']}>" if e.get("options") else ""
        return (f"{t} {e['direction']:>3} {e['conn']} [{e['flags']}] seq={e['seq']} ack={e['ack']} "
                f"win={e['win']} len={e['len']}{opts}")
    rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("kind", "time", "seq"))
    return f"{t} {kind} {rest}"


def trace(
    node: Annotated[str, typer.Argument(help="The stack node.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events (Ctrl-C stops).")
    ] = False,
    kind: Annotated[list[str] | None, typer.Option("--kind", "-k", help="Only these event kinds.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many recent events.")] = 1000,
    since: Annotated[int, typer.Option(help="From this event sequence number.")] = 0,
    lab: LabOpt = None,
    socket: SocketOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="events, ladder (text) or svg (a sequence diagram).")
    ] = "events",
    conn: Annotated[str | None, typer.Option(help="With ladder/svg: the connection to draw.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here, not stdout (as ladder and plot do).")
    ] = None,
) -> None:
    """Trace events of NODE's stack: state changes, segments, drops, retransmissions, cwnd, RTT."""
    if output is not None:
        with output.open("w", encoding="utf-8") as out:
            _trace(node, follow, kind, limit, since, lab, socket, json_out, fmt, conn, out)
        stderr.print(f"wrote {output}", markup=False, highlight=False)
    else:
        _trace(node, follow, kind, limit, since, lab, socket, json_out, fmt, conn, sys.stdout)


def _trace(
    node: str, follow: bool, kind: list[str] | None, limit: int, since: int, lab: str | None,
    socket: Path | None, json_out: bool, fmt: str, conn: str | None, out: TextIO,
) -> None:
    if fmt in ("ladder", "svg"):
        from lab.viz.ladder_svg import render_ladder_svg
        from lab.viz.ladder_text import render_ladder_text
        from lab.viz.load import TraceError
        from lab.viz.nodes import node_trace_file, peer_trace_file

        try:
            path = node_trace_file(node, lab)
            render = render_ladder_svg if fmt == "svg" else render_ladder_text
            out.write(render(path, peer_trace_file(path), conn))
        except (ValueError, TraceError) as exc:
            _fail(str(exc))
        return
    if fmt != "events":
        _fail(f"unknown format {fmt!r}: use events, ladder or svg")
    sock = socket_path(node, lab, socket)

    def show(event: dict[str, Any]) -> None:
        line = json.dumps(event, default=str) if json_out else format_event(event)
        out.write(line + "\n")

    args: dict[str, Any] = {"since": since, "limit": limit, "kinds": kind or None}
    if not follow:
        for event in _call(sock, "trace", {**args, "tail": True})["events"]:
            show(event)
        return
    args["follow"] = True
    try:
        for msg in ControlClient(sock, timeout=None).stream("trace", args, timeout=None):
            if msg.get("stream") == "event":
                show(msg["data"])
                out.flush()
            elif "stream" not in msg:
                break
    except ControlError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    """Add http, echo, transfer, run, ss and trace to `app`."""
    app.command()(http)
    app.command()(echo)
    app.command()(transfer)
    app.command(context_settings={"ignore_unknown_options": True})(run)
    app.command()(ss)
    app.command()(trace)
