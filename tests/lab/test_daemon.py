"""The node daemon on real namespaces: TUN driver, stack, apps, control socket, shutdown.

Without the lab: each fixture makes its own pair of namespaces joined by a veth (pyroute2),

    [ns "k": kernel peer, veth 10.77.0.2] ---- [ns "s": veth 10.77.0.1, forwards, tun0 10.254.9.1]
                                                         |  point-to-point
                                                   the stack 10.2.9.1 (the daemon)

and removes them (and stops the daemon) whatever happens. One test at the end uses `Lab.up`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.node.control import ControlClient, ControlError

from .support import PING

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
STACK_ADDR = "10.2.9.1"
TUN_LOCAL = "10.254.9.1"
S_ADDR = "10.77.0.1"
K_ADDR = "10.77.0.2"


ECHO_CLIENT = r"""
import hashlib, socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = bytes((i * 7 + i // 251) & 0xFF for i in range(n))
s = socket.create_connection((host, port), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = bytearray()
while chunk := s.recv(65536):
    got += chunk
s.close()
print(len(got), hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest())
"""

KERNEL_ECHO_SERVER = r"""
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(16)
print("listening", flush=True)
def serve(c):
    with c:
        while data := c.recv(65536):
            c.sendall(data)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def in_ns(ns: str, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


@dataclass
class Pair:
    stack_ns: str
    kernel_ns: str


def _make_pair(tag: str) -> Pair:
    from pyroute2 import IPRoute, NetNS, netns

    base = f"tcpd{os.getpid() % 100000}{tag}"
    pair = Pair(stack_ns=f"{base}s", kernel_ns=f"{base}k")
    netns.create(pair.stack_ns)
    netns.create(pair.kernel_ns)
    with IPRoute() as ipr:
        ipr.link("add", ifname=f"{base}a", kind="veth", peer=f"{base}b")
        ipr.link("set", index=ipr.link_lookup(ifname=f"{base}a")[0], net_ns_fd=pair.stack_ns)
        ipr.link("set", index=ipr.link_lookup(ifname=f"{base}b")[0], net_ns_fd=pair.kernel_ns)
    for ns, ifname, addr in ((pair.stack_ns, f"{base}a", S_ADDR), (pair.kernel_ns, f"{base}b", K_ADDR)):
        with NetNS(ns) as nsr:
            idx = nsr.link_lookup(ifname=ifname)[0]
            nsr.addr("add", index=idx, address=addr, prefixlen=24)
            nsr.link("set", index=idx, state="up")
            nsr.link("set", index=nsr.link_lookup(ifname="lo")[0], state="up")
            if ns == pair.kernel_ns:
                nsr.route("add", dst=f"{STACK_ADDR}/32", gateway=S_ADDR)
    sysctl = in_ns(pair.stack_ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1",
                                   "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])
    assert sysctl.returncode == 0, sysctl.stderr
    return pair


def _remove_pair(pair: Pair) -> None:
    from pyroute2 import netns

    for ns in (pair.stack_ns, pair.kernel_ns):
        # Anything still running in the namespace is ours (a test's helper): stop it first.
        for pid in _pids_in(ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            netns.remove(ns)
        except FileNotFoundError:
            pass


def _pids_in(ns: str) -> list[int]:
    try:
        target = os.stat(f"/run/netns/{ns}")
    except FileNotFoundError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(entry / "ns" / "net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino) and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


@dataclass
class Daemon:
    pair: Pair
    run_dir: Path
    proc: subprocess.Popen[bytes]
    node: str = "alpha"

    @property
    def socket(self) -> Path:
        return self.run_dir / f"{self.node}.sock"

    def client(self, timeout: float = 30.0) -> ControlClient:
        return ControlClient(self.socket, timeout=timeout)

    def log(self) -> str:
        path = self.run_dir / f"{self.node}.log"
        return path.read_text() if path.exists() else ""


def _daemon_config(run_dir: Path, tcp: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "lab": "test",
        "node": "alpha",
        "stack_address": STACK_ADDR,
        "tun": {"ifname": "tun0", "address": TUN_LOCAL, "peer": STACK_ADDR, "mtu": 1500},
        "mtu": 1500,
        "tcp_config": {"mtu": 1500, "msl": 0.5, **(tcp or {})},
        "apps": [{"name": "echo-server", "options": {"port": 7}},
                 {"name": "http-server", "options": {"port": 80}}],
        "hosts": {"alpha": STACK_ADDR, "peer": K_ADDR},
        "run_dir": str(run_dir),
    }


def _start_daemon(pair: Pair, run_dir: Path) -> Daemon:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "alpha.json"
    config.write_text(json.dumps(_daemon_config(run_dir)))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(run_dir / "alpha.out", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab.node.daemon", "--netns", pair.stack_ns, "--run-dir", str(run_dir),
             "--node", "alpha", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )
    daemon = Daemon(pair, run_dir, proc)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}: {daemon.log()}"
                                 f"{(run_dir / 'alpha.out').read_text()}")
        return daemon.socket.exists()

    wait_for(ready, 15.0, "the daemon's control socket")
    return daemon


def _stop_daemon(daemon: Daemon) -> None:
    if daemon.proc.poll() is None:
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            daemon.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            daemon.proc.kill()
            daemon.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    made = _make_pair("m")
    try:
        yield made
    finally:
        _remove_pair(made)


@pytest.fixture(scope="module")
def daemon(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = _start_daemon(pair, tmp_path_factory.mktemp("daemon"))
    try:
        yield d
    finally:
        _stop_daemon(d)


@pytest.fixture
def kernel_echo(pair: Pair) -> Iterator[int]:
    """A kernel TCP echo server on port 7007 in the kernel peer's namespace."""
    proc = subprocess.Popen(["ip", "netns", "exec", pair.kernel_ns, sys.executable, "-c",
                             KERNEL_ECHO_SERVER, "7007"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "listening"
        yield 7007
    finally:
        proc.kill()
        proc.wait(timeout=5)


# -- tests ---------------------------------------------------------------------------------------


def test_control_ping_status_ss(daemon: Daemon) -> None:
    client = daemon.client()
    assert client.call("ping") == {"pong": True, "node": "alpha"}
    status = client.call("status")
    assert status["address"] == STACK_ADDR
    assert status["pid"] == daemon.proc.pid
    assert status["uptime"] > 0
    assert set(status["apps"]) == {"echo-server:7", "http-server:80"}
    assert status["tcp_config"]["msl"] == 0.5
    ss = client.call("ss")
    assert [lst["port"] for lst in ss["listeners"]] == [7, 80]
    assert os.stat(daemon.socket).st_mode & 0o777 == 0o600


def test_kernel_pings_the_stack(daemon: Daemon) -> None:
    before = daemon.client().call("status")["counters"]["host"].get("icmp_echo", 0)
    result = in_ns(daemon.pair.kernel_ns, [sys.executable, "-c", PING, STACK_ADDR])
    assert result.returncode == 0, f"no echo reply from {STACK_ADDR}: {result.stderr}"
    after = daemon.client().call("status")["counters"]
    assert after["host"]["icmp_echo"] == before + 1
    assert after["tun"]["rx_packets"] >= 1 and after["tun"]["tx_packets"] >= 1


def test_kernel_tcp_to_stack_echo_server(daemon: Daemon) -> None:
    n = 300_000
    result = in_ns(daemon.pair.kernel_ns, [sys.executable, "-c", ECHO_CLIENT, STACK_ADDR, "7", str(n)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(n), "True"]
    # The trace saw the server side go through its whole life up to CLOSE_WAIT/LAST_ACK/CLOSED.
    trace = daemon.client().call("trace", {"kinds": ["StateChange"], "limit": 100000})
    states = [e["new"] for e in trace["events"] if e["conn"].startswith(f"{STACK_ADDR}:7>")]
    assert states[:2] == ["SYN_RECEIVED", "ESTABLISHED"]
    assert "CLOSE_WAIT" in states


def test_run_app_echo_client_to_kernel(daemon: Daemon, kernel_echo: int) -> None:
    result = daemon.client().call(
        "run_app", {"name": "echo-client", "options": {"host": "peer", "port": kernel_echo, "size": 50_000},
                    "timeout": 30})
    assert result["ok"] is True
    assert result["bytes_received"] == 50_000


def test_run_script_streams_output(daemon: Daemon, kernel_echo: int, tmp_path: Path) -> None:
    script = tmp_path / "hello.py"
    script.write_text(
        "import sys\n"
        "print('from', stack.address, argv[1:])\n"
        "s = stack.socket()\n"
        "s.settimeout(10)\n"
        f"s.connect(('peer', {kernel_echo}))\n"
        "s.sendall(b'ping over the stack')\n"
        "print(s.recv(100).decode())\n"
        "s.close()\n"
        "print('to stderr', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    messages = list(daemon.client().stream("run_script", {"path": str(script), "args": ["x", "y"]}))
    out = [m["data"] for m in messages if m.get("stream") == "stdout"]
    err = [m["data"] for m in messages if m.get("stream") == "stderr"]
    assert out == [f"from {STACK_ADDR} ['x', 'y']\n", "ping over the stack\n"]
    assert err == ["to stderr\n"]
    assert messages[-1] == {"ok": True, "result": {"exit_code": 3}}

    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('boom')\n")
    messages = list(daemon.client().stream("run_script", {"path": str(broken)}))
    assert "ValueError: boom" in "".join(m["data"] for m in messages if m.get("stream") == "stderr")
    assert messages[-1]["result"] == {"exit_code": 1}


def test_bad_control_messages_get_errors(daemon: Daemon) -> None:
    import socket as pysocket

    bad = [
        (b"this is not json\n", "bad_request"),
        (b"[1, 2]\n", "bad_request"),
        (b'{"args": {}}\n', "bad_request"),
        (b'{"op": "explode"}\n', "unknown_op"),
        (b'{"op": "trace", "args": {"since": -1}}\n', "bad_args"),
        (b'{"op": "trace", "args": "x"}\n', "bad_args"),
        (b'{"op": "ping", "args": {"x": 1}}\n', "bad_args"),
        (b'{"op": "run_app", "args": {"name": "nope"}}\n', "bad_args"),
        (b'{"op": "run_app", "args": {"name": "echo-server"}}\n', "bad_args"),
        (b'{"op": "run_app", "args": {"name": "echo-client", "options": {"port": 7}}}\n', "bad_args"),
        (b'{"op": "start_app", "args": {"name": "echo-server", "options": {"port": 7}}}\n', "failed"),
        (b'{"op": "stop_app", "args": {"id": "nothing"}}\n', "bad_args"),
        (b'{"op": "run_script", "args": {"path": "relative.py"}}\n', "bad_args"),
        (b'{"op": "run_script", "args": {"path": "/nonexistent/x.py"}}\n', "bad_args"),
        (b"\xff\xfe\n", "bad_request"),
    ]
    with pysocket.socket(pysocket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(daemon.socket))
        f = s.makefile("rb")
        for line, kind in bad:
            s.sendall(line)
            reply = json.loads(f.readline())
            assert reply["ok"] is False, (line, reply)
            assert reply["error"]["type"] == kind, (line, reply)
        s.sendall(b'{"op": "ping"}\n')  # the same connection still works
        assert json.loads(f.readline()) == {"ok": True, "result": {"pong": True, "node": "alpha"}}
    # A refused connection from the stack is an error answer, not a crash.
    with pytest.raises(ControlError) as info:
        daemon.client().call("run_app", {"name": "echo-client", "options": {"host": "peer", "port": 9}})
    assert info.value.type == "failed" and "Refused" in info.value.message
    assert daemon.client().call("ping")["pong"] is True


def test_start_and_stop_app(daemon: Daemon) -> None:
    client = daemon.client()
    started = client.call("start_app", {"name": "bulk-server", "options": {"port": 5201}})
    assert started == {"id": "bulk-server:5201"}
    assert 5201 in [lst["port"] for lst in client.call("ss")["listeners"]]
    result = client.call("run_app", {"name": "bulk-client",
                                     "options": {"host": "alpha", "port": 5201, "bytes": 100_000}})
    assert result is not None
    assert client.call("stop_app", {"id": "bulk-server:5201"}) == {"stopped": "bulk-server:5201"}
    assert 5201 not in [lst["port"] for lst in client.call("ss")["listeners"]]


def test_trace_since_and_follow(daemon: Daemon) -> None:
    client = daemon.client()
    first = client.call("trace", {"limit": 1})
    assert len(first["events"]) <= 1
    head = client.call("trace", {"since": 10**9})
    assert head["events"] == []
    # follow: a ping makes packet events that stream to us.
    stream = daemon.client(timeout=10).stream("trace", {"since": head["next"], "follow": True,
                                                       "kinds": ["PacketEvent"]})
    result = in_ns(daemon.pair.kernel_ns, [sys.executable, "-c", PING, STACK_ADDR])
    assert result.returncode == 0
    seen = []
    for msg in stream:
        if msg.get("stream") == "event":
            seen.append(msg["data"]["direction"])
            if "out" in seen:
                break
    stream.close()  # type: ignore[attr-defined]
    assert seen[:2] == ["in", "out"]


def test_sigterm_cleans_up_and_pcap_reads(tmp_path: Path) -> None:
    pair = _make_pair("t")
    try:
        d = _start_daemon(pair, tmp_path / "run")
        try:
            result = in_ns(pair.kernel_ns, [sys.executable, "-c", ECHO_CLIENT, STACK_ADDR, "7", "100000"])
            assert result.stdout.split() == ["100000", "True"], result.stderr
            assert in_ns(pair.kernel_ns, [sys.executable, "-c", PING, STACK_ADDR]).returncode == 0
            d.proc.send_signal(signal.SIGTERM)
            assert d.proc.wait(timeout=10) == 0
        finally:
            _stop_daemon(d)
        assert not d.socket.exists()
        pcap = d.run_dir / "alpha.pcap"
        total = subprocess.run(["tshark", "-n", "-r", str(pcap)], capture_output=True, text=True, check=True)
        packets = total.stdout.strip().splitlines()
        assert len(packets) > 20
        bad = "_ws.malformed || _ws.expert.severity >= error"
        malformed = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", bad],
                                   capture_output=True, text=True, check=True)
        assert malformed.stdout.strip() == ""
        lines = (d.run_dir / "alpha.trace.jsonl").read_text().splitlines()
        kinds = {json.loads(line)["kind"] for line in lines}
        assert {"StateChange", "SegmentEvent"} <= kinds and "PacketEvent" not in kinds  # those: the pcap
        assert "stopped" in d.log()
    finally:
        _remove_pair(pair)


# -- the CLI commands, against the daemon's socket ------------------------------------------------


@pytest.fixture(scope="module")
def cli() -> Callable[..., tuple[int, str]]:
    import typer
    from typer.testing import CliRunner

    from lab.cli.node import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def invoke(*argv: str) -> tuple[int, str]:
        result = runner.invoke(app, list(argv), catch_exceptions=False)
        return result.exit_code, result.output

    return invoke


def test_cli_ss_echo_http_run_trace(
    daemon: Daemon, kernel_echo: int, cli: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    sock = str(daemon.socket)
    code, out = cli("ss", "alpha", "--socket", sock, "--json")
    assert code == 0 and {lst["port"] for lst in json.loads(out)["listeners"]} >= {7, 80}
    code, out = cli("ss", "alpha", "--socket", sock)
    assert code == 0 and "LISTEN" in out

    code, out = cli("echo", "alpha", "peer", "--port", str(kernel_echo), "--bytes", "20000",
                    "--socket", sock, "--json")
    assert code == 0, out
    assert json.loads(out)["bytes_received"] == 20000

    # The stack fetches from its own HTTP server: out through tun0, the kernel sends it back in.
    from lab.node.apps import payload

    code, out = cli("http", "alpha", "http://alpha/bytes/30000", "--socket", sock, "--json")
    assert code == 0, out
    response = json.loads(out)["responses"][0]
    assert response["status"] == 200 and response["sha256"] == payload.sha256(30000)

    script = tmp_path / "args.py"
    script.write_text("print('args', argv[1:])\nraise SystemExit(4)\n")
    # Options the command does not know belong to the script (`--` passes anything on).
    code, out = cli("run", "alpha", str(script), "one", "--two", "--socket", sock, "--", "--lab")
    assert code == 4 and "args ['one', '--two', '--lab']" in out, out

    code, out = cli("trace", "alpha", "--socket", sock, "--kind", "StateChange", "--limit", "5")
    assert code == 0 and len(out.strip().splitlines()) == 5 and "->" in out

    code, out = cli("ss", "nobody", "--socket", str(tmp_path / "missing.sock"))
    assert code == 1 and "no control socket" in out


# -- with the lab ----------------------------------------------------------------------------------


def test_lab_two_node_http_across_stacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., tuple[int, str]]
) -> None:
    """Lab.up(two-node.yaml): the client's stack fetches /bytes/100000 from the server's stack."""
    from lab.lab import Lab
    from lab.node.apps import payload

    monkeypatch.setenv("TCPLAB_RUN_DIR", str(tmp_path / "run"))
    name = f"d{os.getpid() % 100000}"
    daemons: dict[str, int] = {}
    try:
        lab_ = Lab.up(REPO / "topologies" / "two-node.yaml", name=name)
        client = ControlClient(lab_.run_dir / "client.sock", timeout=60)
        result = client.call("run_app", {"name": "http-client", "timeout": 30,
                                         "options": {"host": "server", "path": "/bytes/100000"}})
        response = result["responses"][0]
        assert response["status"] == 200
        assert response["body_length"] == 100_000
        assert response["sha256"] == payload.sha256(100_000)
        server = ControlClient(lab_.run_dir / "server.sock")
        assert server.call("status")["address"] == lab_.address_of("server")
        # The server's end went through its whole life (TIME_WAIT is 1 s in this topology, and
        # the client closes first, so the server's end is the one that ends in CLOSED at once).
        changes = server.call("trace", {"kinds": ["StateChange"], "limit": 1000})["events"]
        states = [e["new"] for e in changes if e["conn"].startswith(f"{lab_.address_of('server')}:80>")]
        assert states[:2] == ["SYN_RECEIVED", "ESTABLISHED"]
        # The CLI finds the node by lab name, and starts the bulk server on the target node.
        code, out = cli("transfer", "client", "server", "--bytes", "3000000", "--parallel", "2",
                        "--lab", name, "--json")
        assert code == 0, out
        bulk = json.loads(out)
        assert bulk["verified"] is True and bulk["bytes"] == 3_000_000
        assert all(s["stats"]["state"] for s in bulk["streams"])
        code, out = cli("ss", "server", "--lab", name)
        assert code == 0 and ":5201" in out
        daemons.update(lab_.state.daemons)
        assert len(daemons) == 2
    finally:
        Lab.down(name)
    for pid in daemons.values():  # down stopped them (a zombie is its parent's to reap)
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] in ("Z", "X")
