"""`tcplab check`: bring a lab up, run the built-in scenarios across the stack, report, tear down.

Scenarios (each a row with pass/fail and figures):

1. handshake-close: one HTTP GET; the client's and the server's state sequences, read from both
   nodes' traces, are exactly the textbook ones (EXPECTED_CLIENT, EXPECTED_SERVER).
2. echo: N bytes to the echo server come back identical.
3. http-digest: GET /bytes/N and POST /echo, both bodies checked by SHA-256.
4. bulk-impaired: a bulk transfer over an impaired link on the client-server path: the topology's
   own impairment when the path has one, else IMPAIRMENT applied live (both directions of the
   client's first link) for this scenario only and removed afterwards; bytes and digest checked,
   goodput and retransmissions reported.
5. no-leftovers: both ends hold no connection other than TIME_WAIT or CLOSED (via `ss`).

Roles: lab.scenarios.roles picks the client and the server. Server apps the scenarios need and
the server lacks are started on its daemon (`start_app`); on a kernel node they run on Linux's TCP
in its namespace (lab.scenarios.kernel_server): only the client's side of the state checks
applies, and the client may also go FIN_WAIT_1 -> TIME_WAIT (KERNEL_PEER_CLIENT: Linux sends its
FIN with the ACK).
A TIME_WAIT longer than MAX_TIME_WAIT is not waited out: the client's sequence then ends at it.

`run_check` never leaves the lab behind: `teardown` (emulators, then `Lab.down`) runs in `finally`,
with SIGINT ignored meanwhile so a second Ctrl-C cannot cut it short; then KeyboardInterrupt
propagates (the CLI exits 130). lab.scenarios.interrupt says why a Ctrl-C needs care here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lab.lab import Lab, LabError
from lab.model.impairment import Impairment
from lab.node.apps.payload import sha256 as payload_sha256
from lab.node.control import ControlClient, ControlError
from lab.scenarios import kernel_server
from lab.scenarios.interrupt import Sigint, sigint_handled, sigint_ignored
from lab.scenarios.roles import CheckError as CheckError
from lab.scenarios.roles import Roles, pick_roles

EXPECTED_CLIENT = ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
EXPECTED_SERVER = ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
# Linux, as the server, acknowledges the client's FIN on its own FIN when the app closes at once:
# the client then goes FIN_WAIT_1 -> TIME_WAIT (RFC 9293 3.10.7.4). Accepted for a kernel server only.
KERNEL_PEER_CLIENT = ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "TIME_WAIT", "CLOSED"]

HTTP_PORT = 80
ECHO_PORT = 7
BULK_PORT = 5201
HANDSHAKE_BYTES = 1000
ECHO_BYTES = 20_000
GET_BYTES = 100_000
POST_BYTES = 5_000
BULK_BYTES = 1_000_000
IMPAIRMENT = {"delay": "10ms", "loss": "1%"}
APP_TIMEOUT = 60.0
MAX_TIME_WAIT = 10.0  # longer TIME_WAITs are not waited out: the sequence is checked up to TIME_WAIT
SETTLE_EXTRA = 10.0  # seconds beyond TIME_WAIT to wait for both ends to reach CLOSED
LEFTOVER_TIMEOUT = 10.0  # seconds for the last connections to leave LAST_ACK, FIN_WAIT_*, ...
QUIET_STATES = {"TIME_WAIT", "CLOSED"}
POLL = 0.05

Progress = Callable[[str], None]


@dataclasses.dataclass
class ScenarioResult:
    name: str
    description: str
    ok: bool
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- traces, ss ---------------------------------------------------------------------------------------


def _state_changes(run_dir: Path, node: str) -> list[dict[str, Any]]:
    path = run_dir / f"{node}.trace.jsonl"
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        if '"StateChange"' not in line:
            continue
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("kind") == "StateChange":
                out.append(event)
    return out


def _sequence(changes: list[dict[str, Any]], conn: str) -> list[str]:
    steps = [e for e in changes if e["conn"] == conn]
    return ([steps[0]["old"]] if steps else []) + [e["new"] for e in steps]


def _conns_to(changes: list[dict[str, Any]], remote: str) -> list[str]:
    """Connections (in trace order) whose remote end is `remote` ("addr:port")."""
    return [c for c in dict.fromkeys(e["conn"] for e in changes) if c.split(">")[1] == remote]


def _reverse(conn: str) -> str:
    local, remote = conn.split(">")
    return f"{remote}>{local}"


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


# -- the check ---------------------------------------------------------------------------------------


class Checker:
    """Runs the scenarios on a lab that is up."""

    def __init__(
        self,
        lab: Lab,
        roles: Roles,
        progress: Progress | None = None,
        checkpoint: Callable[[], None] | None = None,
    ) -> None:
        self.lab = lab
        self.checkpoint = checkpoint or (lambda: None)
        self.roles = roles
        self.progress = progress or (lambda _msg: None)
        self.client = ControlClient(lab.run_dir / f"{roles.client}.sock", timeout=APP_TIMEOUT + 10)
        self.server = (
            ControlClient(lab.run_dir / f"{roles.server}.sock", timeout=30.0)
            if roles.server_kind == "stack" else None
        )  # fmt: skip
        self.server_addr = lab.address_of(roles.server)
        self.client_addr = lab.address_of(roles.client)
        self.kernel_server: subprocess.Popen[bytes] | None = None
        msl = lab.plan.node(roles.client).tcp_config.get("msl")
        self.time_wait = 2 * float(msl) if isinstance(msl, (int, float)) else 120.0  # stack default MSL 60 s

    # -- server apps

    def start_servers(self) -> list[str]:
        """Make sure the server runs http, echo and bulk servers; returns what was started."""
        wanted = {"http-server": HTTP_PORT, "echo-server": ECHO_PORT, "bulk-server": BULK_PORT}
        if self.server is None:
            self.kernel_server = kernel_server.start(self.lab, self.roles.server, wanted)
            return [f"{name}:{port} (kernel)" for name, port in wanted.items()]
        running = {app["name"]: app["options"].get("port")
                   for app in self.server.call("status")["apps"].values()}  # fmt: skip
        started: list[str] = []
        for name, port in wanted.items():
            if running.get(name) == port:
                continue
            try:
                self.server.call("start_app", {"name": name, "options": {"port": port}})
                started.append(f"{name}:{port}")
            except ControlError as exc:
                if "already running" not in exc.message:
                    raise
        return started

    def stop_kernel_server(self) -> None:
        proc, self.kernel_server = self.kernel_server, None
        if proc is not None:
            kernel_server.stop(proc)

    def _run_app(self, name: str, options: dict[str, Any]) -> Any:
        options = {"host": self.server_addr, **options}
        return self.client.call("run_app", {"name": name, "options": options, "timeout": APP_TIMEOUT},
                                timeout=APP_TIMEOUT + 10)

    # -- scenarios

    def scenarios(self) -> list[tuple[str, str, Callable[[ScenarioResult], None]]]:
        return [
            ("handshake-close", "HTTP GET: both ends' state sequences are the textbook ones",
             self.handshake_close),
            ("echo", f"echo {ECHO_BYTES} bytes: identical bytes back", self.echo),
            ("http-digest", f"GET /bytes/{GET_BYTES} and POST /echo ({POST_BYTES} bytes) with digests",
             self.http_digest),
            ("bulk-impaired", f"bulk {BULK_BYTES} bytes over the impaired link", self.bulk_impaired),
            ("no-leftovers", "both ends: no connection but TIME_WAIT/CLOSED", self.no_leftovers),
        ]  # fmt: skip

    def run(self) -> list[ScenarioResult]:
        results: list[ScenarioResult] = []
        for name, description, scenario in self.scenarios():
            self.checkpoint()
            self.progress(f"{name}: {description}")
            result = ScenarioResult(name, description, ok=False)
            started = time.monotonic()
            try:
                scenario(result)
            except ControlError as exc:
                result.ok, result.detail = False, f"{exc.type}: {exc.message}"
            except (OSError, LabError, CheckError, KeyError, ValueError, TypeError) as exc:
                result.ok, result.detail = False, f"{type(exc).__name__}: {exc}"
            result.figures["seconds"] = round(time.monotonic() - started, 3)
            results.append(result)
        self.checkpoint()
        return results

    def handshake_close(self, r: ScenarioResult) -> None:
        run_dir, roles = self.lab.run_dir, self.roles
        remote = f"{self.server_addr}:{HTTP_PORT}"
        before = set(_conns_to(_state_changes(run_dir, roles.client), remote))
        reply = self._run_app("http-client", {"path": f"/bytes/{HANDSHAKE_BYTES}"})
        first = reply["responses"][0]
        traced_server = self.server is not None
        accepted = [EXPECTED_CLIENT] if traced_server else [EXPECTED_CLIENT, KERNEL_PEER_CLIENT]
        if self.time_wait > MAX_TIME_WAIT:
            accepted = [seq[:-1] for seq in accepted]  # TIME_WAIT is not waited out (MAX_TIME_WAIT)
            r.figures["time_wait_s"] = self.time_wait
        last = accepted[0][-1]
        conn = ""

        def sequences() -> tuple[list[str], list[str]]:
            # The daemons flush their traces every so often: the connection may show up late.
            nonlocal conn
            changes = _state_changes(run_dir, roles.client)
            if not conn:
                conn = next((c for c in _conns_to(changes, remote) if c not in before), "")
            if not conn:
                return [], []
            client = _sequence(changes, conn)
            server = (_sequence(_state_changes(run_dir, roles.server), _reverse(conn))
                      if traced_server else [])  # fmt: skip
            return client, server

        def settled() -> bool:
            client, server = sequences()
            return client[-1:] == [last] and (not traced_server or server[-1:] == ["CLOSED"])

        _wait_until(settled, min(self.time_wait, MAX_TIME_WAIT) + SETTLE_EXTRA)
        client_seq, server_seq = sequences()
        r.figures.update(connection=conn, status=first["status"], bytes=first["body_length"],
                         client=" ".join(client_seq))
        problems: list[str] = []
        if first["status"] != 200 or first["body_length"] != HANDSHAKE_BYTES:
            problems.append(f"GET answered {first['status']} with {first['body_length']} bytes")
        if client_seq not in accepted:
            problems.append(f"client went {' '.join(client_seq) or '(nothing)'}")
        if traced_server:
            r.figures["server"] = " ".join(server_seq)
            if server_seq != EXPECTED_SERVER:
                problems.append(f"server went {' '.join(server_seq) or '(nothing)'}")
        else:
            r.figures["server"] = "Linux kernel (not traced)"
            if client_seq == accepted[-1]:
                r.figures["variant"] = "Linux acknowledged the FIN on its own FIN"
        r.ok, r.detail = not problems, "; ".join(problems)

    def echo(self, r: ScenarioResult) -> None:
        reply = self._run_app("echo-client", {"port": ECHO_PORT, "size": ECHO_BYTES})
        r.figures.update(sent=reply["bytes_sent"], received=reply["bytes_received"],
                         rtt_ms=round(float(reply["rtt"]) * 1000, 2))
        r.ok = bool(reply["ok"]) and reply["bytes_sent"] == reply["bytes_received"] == ECHO_BYTES
        if not r.ok:
            r.detail = f"first mismatch at byte {reply.get('first_mismatch')}"

    def http_digest(self, r: ScenarioResult) -> None:
        got = self._run_app("http-client", {"path": f"/bytes/{GET_BYTES}"})["responses"][0]
        body = "".join(chr(ord("a") + (i * 7) % 26) for i in range(POST_BYTES))
        posted = self._run_app("http-client", {"method": "POST", "path": "/echo", "body": body})
        post = posted["responses"][0]
        get_ok = (got["status"] == 200 and got["body_length"] == GET_BYTES
                  and got["sha256"] == payload_sha256(GET_BYTES))  # fmt: skip
        post_ok = (post["status"] == 200 and post["body_length"] == POST_BYTES
                   and post["sha256"] == hashlib.sha256(body.encode()).hexdigest())  # fmt: skip
        r.figures.update(get=f"{got['status']} {got['body_length']} B sha256 {got['sha256'][:12]}",
                         get_ms=round(float(got["total"]) * 1000, 1),
                         post=f"{post['status']} {post['body_length']} B sha256 {post['sha256'][:12]}",
                         post_ms=round(float(post["total"]) * 1000, 1))
        r.ok = get_ok and post_ok
        wrong = [("GET body or digest wrong", get_ok), ("POST echo body or digest wrong", post_ok)]
        r.detail = "; ".join(message for message, ok in wrong if not ok)

    def bulk_impaired(self, r: ScenarioResult) -> None:
        with self._impaired_link() as described:
            r.figures["link"] = described
            reply = self._run_app("bulk-client", {"port": BULK_PORT, "bytes": BULK_BYTES})
        streams = reply.get("streams") or []
        stats = (streams[0].get("stats") if streams else None) or {}
        moved = sum(int(s.get("bytes", 0)) for s in streams)
        digest_ok = bool(streams) and streams[0].get("sha256") == payload_sha256(BULK_BYTES)
        r.figures.update(bytes=moved, goodput_mbps=round(float(reply.get("goodput_bps", 0.0)) / 1e6, 2),
                         retransmits=stats.get("retransmits", "-"),
                         bytes_retrans=stats.get("bytes_retrans", "-"))
        r.ok = bool(reply.get("verified")) and moved == BULK_BYTES and digest_ok
        if not r.ok:
            r.detail = "; ".join(str(s.get("detail") or "") for s in streams) or "transfer not verified"

    @contextlib.contextmanager
    def _impaired_link(self) -> Iterator[str]:
        """The path's own impairment if it has one; else IMPAIRMENT on the client's first link,
        both directions, removed on the way out (however the scenario ends)."""
        plan = self.lab.plan
        for index in self.roles.path_links:
            link = plan.links[index]
            own = [f"{end.node}->{end.peer_node} {end.egress.describe()}"
                   for end in (link.a, link.b) if end.egress is not None and not end.egress.is_noop]
            if own:
                yield f"{link.name}: " + ", ".join(own) + " (topology)"
                return
        from lab.kernel.impair import backend

        link = plan.links[self.roles.path_links[0]]
        profile = Impairment.model_validate(IMPAIRMENT)
        applied: list[tuple[str, str]] = []
        try:
            used = ""
            for end in (link.a, link.b):
                netns = plan.node(end.node).netns
                seed = plan.seed_for(link.index, end is link.a)
                applied.append((netns, end.ifname))
                used = backend.update(netns, end.ifname, profile, seed, self.lab.run_dir)
            yield f"{link.name}: {profile.describe()} each way, live ({used})"
        finally:
            for netns, ifname in applied:
                with contextlib.suppress(Exception):
                    backend.remove(netns, ifname, self.lab.run_dir)

    def no_leftovers(self, r: ScenarioResult) -> None:
        def busy() -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            out[self.roles.client] = [f"{c['state']} {c['local']}>{c['remote']}"
                                      for c in self.client.call("ss")["connections"]
                                      if c["state"] not in QUIET_STATES]  # fmt: skip
            if self.server is not None:
                out[self.roles.server] = [f"{c['state']} {c['local']}>{c['remote']}"
                                          for c in self.server.call("ss")["connections"]
                                          if c["state"] not in QUIET_STATES]  # fmt: skip
            else:
                out[self.roles.server] = self._kernel_busy()
            return out

        left: dict[str, list[str]] = {}

        def quiet() -> bool:
            nonlocal left
            left = busy()
            return not any(left.values())

        _wait_until(quiet, LEFTOVER_TIMEOUT)
        counts = {self.roles.client: self._state_counts(self.client)}
        if self.server is not None:
            counts[self.roles.server] = self._state_counts(self.server)
        r.figures.update({node: ", ".join(f"{n} {s}" for s, n in c.items()) or "none"
                          for node, c in counts.items()})  # fmt: skip
        if self.server is None:
            r.figures[self.roles.server] = "Linux: " + (", ".join(left[self.roles.server]) or "quiet")
        r.ok = not any(left.values())
        r.detail = "; ".join(f"{node}: {', '.join(v)}" for node, v in left.items() if v)

    @staticmethod
    def _state_counts(client: ControlClient) -> dict[str, int]:
        counts: dict[str, int] = {}
        for conn in client.call("ss")["connections"]:
            counts[conn["state"]] = counts.get(conn["state"], 0) + 1
        return counts

    def _kernel_busy(self) -> list[str]:
        done = self.lab.exec(self.roles.server, ["ss", "-Htan"], check=False, timeout=10)
        busy: list[str] = []
        for line in done.stdout.splitlines():
            fields = line.split()
            if fields and fields[0] not in ("LISTEN", "TIME-WAIT", "CLOSED"):
                busy.append(f"{fields[0]} {' '.join(fields[3:5])}")
        return busy


# -- the whole run ---------------------------------------------------------------------------------


def teardown(name: str) -> dict[str, Any]:
    """Stop the link emulators (found by command line: one still starting is in no namespace
    yet), then `Lab.down`; a Ctrl-C meanwhile is ignored."""
    from lab.kernel.impair import backend
    from lab.model.names import netns_name

    with sigint_ignored():
        with contextlib.suppress(Exception):
            backend.stop_emulators(netns_name(name, ""))
        return Lab.down(name)


def default_name() -> str:
    return f"check{os.getpid() % 100000}"


def run_check(
    topology: str, name: str | None = None, seed: int = 0, progress: Progress | None = None
) -> dict[str, Any]:
    """Up, scenarios, down (always, Ctrl-C included: KeyboardInterrupt propagates after teardown).
    Returns the report; `ok` is all-pass."""
    lab_name = name or default_name()
    note = progress or (lambda _msg: None)
    if lab_name in Lab.running():
        raise LabError(f"lab {lab_name} is already up: choose another --name or `tcplab down {lab_name}`")
    checker: Checker | None = None
    with sigint_handled():
        try:
            note(f"bringing up {topology} as {lab_name}")
            lab = Lab.up(topology, lab_name, seed=seed)
            Sigint.checkpoint()
            roles = pick_roles(lab.plan)
            checker = Checker(lab, roles, progress, checkpoint=Sigint.checkpoint)
            started = checker.start_servers()
            Sigint.checkpoint()
            results = checker.run()
            report = {
                "lab": lab.name,
                "topology": topology,
                "client": {"node": roles.client, "address": checker.client_addr},
                "server": {"node": roles.server, "address": checker.server_addr,
                           "kind": roles.server_kind, "apps_started": started},
                "scenarios": [r.to_dict() for r in results],
                "passed": sum(r.ok for r in results),
                "total": len(results),
                "ok": all(r.ok for r in results),
            }  # fmt: skip
        finally:
            note(f"tearing down {lab_name}")
            with sigint_ignored():
                if checker is not None:
                    checker.stop_kernel_server()
            teardown(lab_name)
    return report
