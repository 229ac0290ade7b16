"""The stack's goodput over TUN: bulk-client on the client node sends to bulk-server on the server
node (`lab.node.apps.bulk`, payload verified byte by byte at the receiver) for a few seconds.
Neither end hashes (`digest: false`): the byte check proves the stream, and a SHA-256 of every
byte was a third of the receiving daemon's CPU at offload rates, a cost of the application.

The lab is brought up without daemons; this module starts the two node daemons itself, because
their config is where `trace_files` lives (off for the headline figure, on for its cost) and its
environment is where the cProfile switch lives (`TCPLAB_DAEMON_PROFILE`, see `lab.node.daemon`). The
daemons are stopped (SIGTERM, then SIGKILL) before the next run; `Lab.down` finds any left over.

Trace modes (TRACE_MODES): "files-off" (no JSON lines, no pcap, but the daemon's in-memory ring
that the `trace` op reads is still fed, so every event is still built), "files-on" (the daemon's
default) and "none" (no sink at all: the host builds no event).
"""

from __future__ import annotations

import json
import os
import pstats
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.kernel.state import write_state
from lab.model.topology import StackSettings
from lab.node.control import ControlClient
from tests.bench import REPO_ROOT, child_env

if TYPE_CHECKING:
    from lab.lab import Lab

NODES = ("client", "server")
PORT = 5201
START_TIMEOUT = 15.0
STOP_TIMEOUT = 8.0


def _log_tail(lab: Lab, node: str) -> str:
    try:
        return (lab.run_dir / f"{node}.log").read_text()[-800:]
    except OSError:
        return "(no log)"


@contextmanager
def daemons(lab: Lab, trace_files: dict[str, bool], profile_dir: Path | None = None,
            offload: bool | str = False, buffers: int | None = None, accel: Path | None = None
            ) -> Iterator[None]:
    """Run both nodes' daemons (bulk-server on the server) for the duration of the block; offload
    as the topology's `stack: {offload}` says it (true, false or "checksum"); accel: the
    directory of the compiled stack (tests.bench.accel), else the pure-Python one runs."""
    extra = {"TCPLAB_DAEMON_PROFILE": str(profile_dir)} if profile_dir is not None else {}
    env = child_env(extra)
    if accel is not None:  # before the repository, whose `stack` it shadows
        env["PYTHONPATH"] = os.pathsep.join([str(accel), env["PYTHONPATH"]])
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for node in NODES:
            config = lab.plan.daemon_config(node, str(lab.run_dir))
            config["trace_files"] = dict(trace_files)
            config["offload"], config["tso"] = bool(offload), offload is True
            if offload is True:  # what `stack: {offload: true}` gives a node: its buffers autotune too
                auto = StackSettings(offload=True).tcp_config_changes(int(config["tcp_config"]["mtu"]))
                config["tcp_config"] = {**config["tcp_config"], **auto}
            if buffers is not None:
                config["tcp_config"] = {**config["tcp_config"], "sndbuf": buffers, "rcvbuf": buffers}
            server_app = {"name": "bulk-server", "options": {"port": PORT, "digest": False}}
            config["apps"] = [server_app] if node == "server" else []
            path = lab.run_dir / f"{node}.json"
            path.write_text(json.dumps(config, indent=2))
            with open(lab.run_dir / f"{node}.log", "ab") as logfile:
                procs[node] = subprocess.Popen(
                    [sys.executable, "-m", "lab.node.daemon", "--netns", lab.netns_of(node),
                     "--run-dir", str(lab.run_dir), "--node", node, "--config", str(path)],
                    stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                    start_new_session=True, env=env, cwd=str(accel or REPO_ROOT),  # `-m`: cwd comes first
                )
            lab.state.daemons[node] = procs[node].pid
        write_state(lab.state)
        deadline = time.monotonic() + START_TIMEOUT
        while not all((lab.run_dir / f"{n}.sock").exists() for n in NODES):
            for node, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon of {node} exited ({proc.returncode}): {_log_tail(lab, node)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemons gave no control socket within {START_TIMEOUT}s")
            time.sleep(0.05)
        yield
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        lab.state.daemons.clear()
        write_state(lab.state)


def _compiled_modules(lab: Lab) -> int:
    """How many of the server daemon's stack modules are compiled extensions: proof that an
    accelerated row ran the compiled stack (the status op reports them)."""
    return int(_client(lab, "server").call("status").get("compiled_modules", 0))


def _client(lab: Lab, node: str) -> ControlClient:
    return ControlClient(lab.run_dir / f"{node}.sock", timeout=10)


def _schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread
    (/proc/PID/schedstat); zeros where the kernel does not keep them."""
    try:
        on_cpu, waiting = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return 0.0, 0.0


def run_bulk(lab: Lab, seconds: float, host: str = "server") -> dict[str, Any]:
    """One bulk transfer client → server for `seconds` with the daemons running; figures and counters.
    `host` is what the client connects to: the node name (IPv4) or an address of the server.

    `cpu` says where each daemon's time went (from /proc/PID/schedstat over the transfer): on a
    CPU, waiting in the run queue for one (a busy machine), and the rest waiting for packets."""
    timeout = seconds + 30
    client = ControlClient(lab.run_dir / "client.sock", timeout=timeout + 5)
    options = {"host": host, "port": PORT, "seconds": seconds, "direction": "send", "digest": False}
    pids = {node: lab.state.daemons.get(node, 0) for node in NODES}
    before = {node: _schedstat(pid) for node, pid in pids.items()}
    t0 = time.monotonic()
    result = client.call("run_app", {"name": "bulk-client", "options": options, "timeout": timeout})
    wall = time.monotonic() - t0
    cpu = {}
    for node, pid in pids.items():
        on_cpu, waiting = (a - b for a, b in zip(_schedstat(pid), before[node], strict=True))
        cpu[node] = {"on_cpu": round(on_cpu / wall, 3), "run_queue": round(waiting / wall, 3),
                     "idle": round(max(wall - on_cpu - waiting, 0) / wall, 3)}
    status = {node: _client(lab, node).call("status") for node in NODES}
    streams = result.get("streams") or []
    stats = [s.get("stats") or {} for s in streams]
    tun_client = status["client"]["counters"]["tun"]
    tun_server = status["server"]["counters"]["tun"]
    return {
        "bytes": int(result["bytes"]),
        "seconds": float(result["duration"]),
        "bytes_per_s": int(result["bytes"]) / (float(result["duration"]) or 1e-9),
        "verified": bool(result.get("verified")),
        "retransmits": sum(int(s.get("retransmits", 0) or 0) for s in stats),
        "bytes_retrans": sum(int(s.get("bytes_retrans", 0) or 0) for s in stats),
        "srtt": stats[0].get("srtt") if stats else None,
        "cwnd": stats[0].get("cwnd") if stats else None,
        "segments_out": tun_client.get("tx_packets", 0),
        "acks_in": tun_client.get("rx_packets", 0),
        "tx_drops": tun_client.get("tx_drops", 0) + tun_server.get("tx_drops", 0),
        "server_rx_per_batch": tun_server.get("rx_packets", 0) / max(1, tun_server.get("rx_batches", 0)),
        "client_rx_per_batch": tun_client.get("rx_packets", 0) / max(1, tun_client.get("rx_batches", 0)),
        "cpu": cpu,
    }


TRACE_MODES: dict[str, dict[str, bool]] = {
    "files-off": {"jsonl": False, "pcap": False, "ring": True},  # trace files off (ring still on)
    "files-on": {"jsonl": True, "pcap": True, "ring": True},  # the daemon's default
    "none": {"jsonl": False, "pcap": False, "ring": False},  # no sink at all: no event is built
}


def measure(lab: Lab, seconds: float = 3.0, *, trace: str = "files-off", offload: bool | str = False,
            buffers: int | None = None, host: str = "server", accel: Path | None = None) -> dict[str, Any]:
    """Goodput with the daemons' trace in mode `trace` (a key of TRACE_MODES), tun0 with TUN
    offloads (TSO super-segments, see stack.tundev) or without, and SO_SNDBUF/SO_RCVBUF of
    `buffers` octets on both nodes (None: the stack's default); the client connects to `host`;
    accel: run the compiled stack from that directory (tests.bench.accel)."""
    with daemons(lab, TRACE_MODES[trace], offload=offload, buffers=buffers, accel=accel):
        figures = run_bulk(lab, seconds, host)
        figures["compiled"] = _compiled_modules(lab)  # asked of every row: 0 proves a pure one too
    figures["offload"] = offload
    figures["buffers"] = buffers
    if TRACE_MODES[trace]["jsonl"] or TRACE_MODES[trace]["pcap"]:
        sizes = [(lab.run_dir / f"{n}{ext}") for n in NODES for ext in (".trace.jsonl", ".pcap")]
        figures["trace_file_bytes"] = sum(p.stat().st_size for p in sizes if p.exists())
    return figures


def profile(lab: Lab, seconds: float, out_dir: Path, offload: bool = False) -> dict[str, Any]:
    """A bulk run with both daemons under cProfile (trace files off); figures and .prof paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for node in NODES:
        (out_dir / f"{node}.prof").unlink(missing_ok=True)
    with daemons(lab, TRACE_MODES["files-off"], profile_dir=out_dir, offload=offload):
        figures = run_bulk(lab, seconds)
    figures["profiles"] = {n: str(out_dir / f"{n}.prof") for n in NODES if (out_dir / f"{n}.prof").exists()}
    return figures


def _where(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    root = str(REPO_ROOT) + os.sep
    short = filename[len(root):] if filename.startswith(root) else Path(filename).name
    return f"{short}:{line}({func})" if line else func


def hot_spots(prof_path: str | Path, limit: int = 15) -> list[dict[str, Any]]:
    """The functions with the most own time in a cProfile dump: own and cumulative seconds, calls."""
    stats = pstats.Stats(str(prof_path))
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table.values()) or 1e-9
    rows: list[dict[str, Any]] = []
    for key, (_cc, ncalls, tottime, cumtime, _callers) in table.items():
        rows.append({"function": _where(key), "calls": ncalls, "own_s": tottime, "cum_s": cumtime,
                     "own_share": tottime / total})
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    return rows[:limit]


def cumulative_spots(prof_path: str | Path, prefix: str, limit: int = 10) -> list[dict[str, Any]]:
    """Functions under `prefix` (a repo-relative path such as "stack/tcp/") by cumulative time."""
    stats = pstats.Stats(str(prof_path))
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table.values()) or 1e-9
    rows: list[dict[str, Any]] = []
    for key, (_cc, ncalls, tottime, cumtime, _callers) in table.items():
        where = _where(key)
        if where.startswith(prefix):
            rows.append({"function": where, "calls": ncalls, "own_s": tottime, "cum_s": cumtime,
                         "own_share": tottime / total, "cum_share": cumtime / total})
    rows.sort(key=lambda r: r["cum_s"], reverse=True)
    return rows[:limit]
