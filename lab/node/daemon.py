"""The node daemon: one process per stack node, running the stack over tun0 inside the node's namespace.

    python -m lab.node.daemon --netns NS --run-dir DIR --node NAME --config JSON_FILE

It enters network namespace NS (/run/netns/NS), attaches to tun0 (creating and configuring it when
the lab did not), runs a `stack.host.Host` on it through `stack.tun.TunDriver`, starts the node's
server apps, and answers the control protocol of `lab.node.control` on DIR/NAME.sock (mode 0600).
It writes DIR/NAME.trace.jsonl (every trace event but whole packets), DIR/NAME.pcap (every packet)
and DIR/NAME.log.

The config file (written by the lab from `LabPlan.daemon_config`) holds:

    node, lab               names (for status)
    stack_address           the host's address (the peer of tun0)
    stack_address6          its IPv6 address (the IPv6 peer of tun0)
    tun                     {ifname, address (kernel side), peer (= stack_address), address6,
                            peer6 (= stack_address6), mtu}
    tcp_config              `stack.config.TcpConfig` fields (mtu, msl, congestion_control, ...)
    offload (optional)      true: tun0 with checksum/TSO offloads (`stack.tundev`), false by default
    tso (optional)          with offload, false: the checksum offload alone (segment by segment)
    apps                    [{name, options}] server apps started at boot
    hosts                   {node name: address}, so apps and scripts can name nodes
    hosts6                  {node name: IPv6 address}, the same for IPv6
    trace_files (optional)  {"jsonl": bool, "pcap": bool, "ring": bool}, all true by default (they
                            cost speed). "ring" is the in-memory ring the `trace` op reads: with all
                            three off the host's trace has no sink, so no event is even built (the
                            fastest stack; `trace` then returns nothing)

With TCPLAB_DAEMON_PROFILE=DIR in its environment the daemon runs under cProfile and writes
DIR/NAME.prof when it exits (for `tests.bench`; profiling slows the stack down severalfold).

SIGTERM or SIGINT (or the `shutdown` op): stop the apps (their connections close with FIN),
give open connections a moment to finish their close, reset what is left, flush trace and
pcap, remove the socket file, exit 0. A daemon that cannot start (bad config, no tun0, an app
that fails to listen) logs why and exits 1 before its socket exists.

This module is the process: its entry point, the start and stop of a node, and the control ops'
dispatch. Beside it: `lab.node.tun_setup` (entering the namespace, configuring tun0),
`lab.node.supervisor` (the apps) and `lab.node.ring` (the trace ring and the `trace` op).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

from lab.node import control
from lab.node.control import AppArgs, Emit, RequestError, ScriptArgs
from lab.node.ring import RingSink, trace_op
from lab.node.supervisor import AppSupervisor
from lab.node.tun_setup import DaemonError, TunSettings, configure_tun, enter_netns
from stack.compiled import compiled_modules
from stack.config import TcpConfig
from stack.host import Host
from stack.socket import Stack
from stack.tcp.state import State
from stack.trace import JsonLinesSink, PacketEvent, PcapSink, Sink, Trace
from stack.tun import TunDriver

log = logging.getLogger("tcplab.daemon")

TRACE_BATCH = 256  # events the trace files hold before encoding them in one go (and each second)
CLOSE_GRACE = 1.0  # seconds open connections get to finish their close on shutdown
PROFILE_ENV = "TCPLAB_DAEMON_PROFILE"


# -- the daemon --------------------------------------------------------------------------------


def tcp_config_from(raw: dict[str, Any]) -> TcpConfig:
    known = {f.name for f in fields(TcpConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DaemonError(f"tcp_config: unknown fields {unknown}; known: {', '.join(sorted(known))}")
    return TcpConfig(**raw)


class NodeDaemon:
    """Everything of one node: host, TUN driver, trace files, apps, control socket."""

    def __init__(self, config: dict[str, Any], run_dir: Path, node: str) -> None:
        self.config = config
        self.run_dir = run_dir
        self.node = node
        self.lab = str(config.get("lab", ""))
        try:
            self.address = str(config["stack_address"])
            tun = config["tun"]
            self.tun = TunSettings(
                ifname=str(tun.get("ifname", "tun0")),
                address=str(tun["address"]),
                peer=str(tun.get("peer", self.address)),
                mtu=int(tun.get("mtu", config.get("mtu", 1500))),
                address6=str(tun["address6"]) if tun.get("address6") else None,
                peer6=str(tun["peer6"]) if tun.get("peer6") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DaemonError(f"config: missing or bad field {exc}") from None
        self.tcp_config = tcp_config_from(dict(config.get("tcp_config") or {"mtu": self.tun.mtu}))
        self.names: dict[str, str] = {str(k): str(v) for k, v in (config.get("hosts") or {}).items()}
        self.names6: dict[str, str] = {str(k): str(v) for k, v in (config.get("hosts6") or {}).items()}
        self.boot_apps: list[dict[str, Any]] = list(config.get("apps") or [])
        self.offload = bool(config.get("offload", False))
        self.tso = self.offload and bool(config.get("tso", True))
        files = config.get("trace_files") or {}
        self.trace_files: dict[str, bool] = {str(k): bool(v) for k, v in files.items()}
        self.socket_path = run_dir / f"{node}.sock"
        self.started = time.monotonic()
        self.stopping = asyncio.Event()
        self._files: list[IO[Any]] = []
        self._server: asyncio.AbstractServer | None = None
        self._scripts = 0

    @property
    def offload_mode(self) -> str:
        """What tun0 offloads: "off", "checksum" (segment by segment) or "on" (checksum and TSO)."""
        return ("on" if self.tso else "checksum") if self.offload else "off"

    # -- start / stop

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self._loop_thread = threading.get_ident()
        jsonl = None
        if self.trace_files.get("jsonl", True):
            jsonl = open(self.run_dir / f"{self.node}.trace.jsonl", "w", buffering=1 << 16)  # noqa: SIM115
            self._files.append(jsonl)
        # Whole packets go to the pcap; the JSON lines keep every other event (segments too). The
        # ring encodes each event once, for itself and for the file.
        ring = self.trace_files.get("ring", True)
        self.ring = RingSink(loop, mirror=jsonl if ring else None)
        sinks: list[Sink] = [self.ring] if ring else []
        if jsonl is not None and not ring:
            sinks.append(JsonLinesSink(jsonl, batch=TRACE_BATCH, skip=(PacketEvent,)))
        if self.trace_files.get("pcap", True):
            pcap = open(self.run_dir / f"{self.node}.pcap", "wb")  # noqa: SIM115
            self._files.append(pcap)
            # pcap timestamps are wall-clock; the host's clock is the loop's (monotonic).
            sinks.append(PcapSink(pcap, time_offset=time.time() - loop.time(), batch=TRACE_BATCH))
        # The sinks take events in batches: one append per event, handed over at the end of the
        # loop's step (or every TRACE_BATCH events), so `trace --follow` still sees them at once.
        self.trace = Trace(sinks, hold=TRACE_BATCH)
        self.trace.wake = self._drain_soon
        self.host = Host(self.address, config=self.tcp_config, trace=self.trace, rng=random.Random(),
                         isn_key=os.urandom(16), address6=self.config.get("stack_address6") or None,
                         offload=self.offload, tso=self.tso)
        self.driver = TunDriver(self.tun.ifname, self.host, loop)
        try:
            self.driver.start()
        except OSError as exc:
            raise DaemonError(f"opening {self.tun.ifname}: {exc}") from None
        # pyroute2's blocking API runs an asyncio loop of its own: give it a thread (threads
        # started after enter_netns are in the node's namespace too).
        await loop.run_in_executor(None, configure_tun, self.tun)
        self.stack = Stack(self.driver.runtime, names=self.names, names6=self.names6)
        self.supervisor = AppSupervisor(loop, self.stack)
        for app in self.boot_apps:
            try:
                args = AppArgs.model_validate(app)
                await self.supervisor.start(args)
            except (RequestError, ValueError) as exc:
                raise DaemonError(f"app {app.get('name')!r}: {exc}") from None
        self._flusher = loop.create_task(self._flush_periodically())
        self._server = await control.serve_control(self.socket_path, self.dispatch)
        log.info("%s up: stack %s on %s (%s peer %s, mtu %d, offloads %s), apps %s, control %s", self.node,
                 self.address, self.tun.ifname, self.tun.address, self.tun.peer, self.tun.mtu,
                 self.offload_mode, ", ".join(self.supervisor.apps) or "none", self.socket_path)

    def _drain_soon(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self.loop.call_soon(self.trace.drain)
        else:  # an event from a script's thread
            self.loop.call_soon_threadsafe(self.trace.drain)

    async def _flush_periodically(self) -> None:
        """Trace files reach the disk within a second (someone may be reading them live)."""
        while True:
            await asyncio.sleep(1.0)
            self.flush()

    def flush(self) -> None:
        """Write what the trace files buffer: `tcplab ladder NODE` asks for it before it reads them."""
        self.trace.flush()
        for f in self._files:
            f.flush()

    def request_stop(self) -> None:
        self.stopping.set()

    async def close(self) -> None:
        """Stop serving, stop apps, let connections close, flush, remove the socket. Idempotent."""
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if hasattr(self, "ring"):
            self.ring.close()
        if hasattr(self, "supervisor"):
            await self.supervisor.stop_all()
        if hasattr(self, "host"):
            await self._close_connections()
        if hasattr(self, "driver"):
            self.driver.stop()
        if hasattr(self, "_flusher"):
            self._flusher.cancel()
        if hasattr(self, "trace"):
            self.trace.close()
        for f in self._files:
            with contextlib.suppress(OSError):
                f.close()
        self._files = []

    async def _close_connections(self) -> None:
        host, now = self.host, self.loop.time()
        for conn in list(host.connections.values()):
            if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT, State.SYN_RECEIVED):
                with contextlib.suppress(Exception):
                    conn.close(now)
                    host.app_call(conn)
        self.driver.runtime.pump()

        def busy() -> bool:
            return any(c.state not in (State.TIME_WAIT, State.CLOSED) for c in host.connections.values())

        deadline = self.loop.time() + CLOSE_GRACE
        while busy() and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        now = self.loop.time()
        for conn in list(host.connections.values()):
            if conn.state not in (State.TIME_WAIT, State.CLOSED):
                with contextlib.suppress(Exception):
                    conn.abort(now, "call:shutdown")
                    host.app_call(conn)
        self.driver.runtime.pump()

    # -- control

    async def dispatch(self, op: str, args: Any, emit: Emit) -> Any:
        if op == "ping":
            return {"pong": True, "node": self.node}
        if op == "status":
            return self.status()
        if op == "ss":
            return self.ss()
        if op == "run_app":
            return await self.supervisor.run(args)
        if op == "start_app":
            return await self.supervisor.start(args)
        if op == "stop_app":
            return await self.supervisor.stop(args)
        if op == "flush":
            self.flush()
            return {"flushed": True}
        if op == "trace":
            self.trace.drain()  # what the ring holds is all that happened until now
            return await trace_op(self.ring, args, emit, self.stopping)
        if op == "run_script":
            return await self.run_script(args, emit)
        if op == "shutdown":
            self.loop.call_soon(self.request_stop)
            return {"shutting_down": True}
        raise RequestError("unknown_op", op)

    def status(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "lab": self.lab,
            "address": self.address,
            "pid": os.getpid(),
            "uptime": time.monotonic() - self.started,
            "tun": {"ifname": self.tun.ifname, "address": self.tun.address, "peer": self.tun.peer,
                    "mtu": self.tun.mtu},
            "counters": {"host": dict(self.host.counters), "tun": dict(self.driver.counters)},
            "connections": len(self.host.connections),
            "listeners": sorted(self.host.listeners),
            "apps": {a.id: {"name": a.name, "options": a.options} for a in self.supervisor.apps.values()},
            "scripts_running": self._scripts,
            "trace": {"events": self.ring.next_seq, "follow_drops": self.ring.follow_drops},
            "tcp_config": {f.name: getattr(self.tcp_config, f.name) for f in fields(TcpConfig)},
            "offload": self.offload,
            "offload_mode": self.offload_mode,
            "compiled_modules": len(compiled_modules()),  # the optional mypyc build (tests.bench.accel)
        }

    def ss(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "connections": [conn.info() for conn in self.host.connections.values()],
            "listeners": [
                {"state": "LISTEN", "local": f"{self.address}:{port}", "port": port,
                 "backlog": lst.backlog, "accept_queue": len(lst.accept_queue),
                 "half_open": len(lst.half_open), "overflows": lst.overflows}
                for port, lst in sorted(self.host.listeners.items())
            ],
        }

    async def run_script(self, args: ScriptArgs, emit: Emit) -> dict[str, Any]:
        from lab.node import scripts

        if not os.path.isabs(args.path):
            raise RequestError("bad_args", f"run_script: give an absolute path (got {args.path})")
        self._scripts += 1
        try:
            code = await scripts.run_script(self.stack, args.path, list(args.args), emit, args.timeout)
        except FileNotFoundError as exc:
            raise RequestError("bad_args", str(exc)) from None
        except TimeoutError as exc:
            raise RequestError("failed", str(exc)) from None
        finally:
            self._scripts -= 1
        return {"exit_code": code}


# -- entry point -------------------------------------------------------------------------------


async def _amain(daemon: NodeDaemon) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    try:
        await daemon.start()
        await daemon.stopping.wait()
        log.info("%s stopping", daemon.node)
    finally:
        await daemon.close()
    log.info("%s stopped", daemon.node)


def _setup_logging(run_dir: Path, node: str) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handler = logging.FileHandler(run_dir / f"{node}.log")
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if sys.stderr.isatty():
        console = logging.StreamHandler()
        console.setFormatter(fmt)
        root.addHandler(console)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.node.daemon", description=__doc__.splitlines()[0])
    parser.add_argument("--netns", help="network namespace to enter (/run/netns/NAME); omit to stay")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--node", required=True)
    parser.add_argument("--config", required=True, type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    _setup_logging(args.run_dir, args.node)
    try:
        if args.netns:
            enter_netns(args.netns)  # first: every thread started later inherits the namespace
        config = json.loads(args.config.read_text())
        if not isinstance(config, dict):
            raise DaemonError(f"{args.config}: not a JSON object")
        daemon = NodeDaemon(config, args.run_dir, args.node)
        profile_dir = os.environ.get(PROFILE_ENV)
        profiler = cProfile.Profile() if profile_dir else None
        if profiler is not None:
            profiler.enable()
        try:
            asyncio.run(_amain(daemon))
        finally:
            if profiler is not None and profile_dir:
                profiler.disable()
                profiler.dump_stats(Path(profile_dir) / f"{args.node}.prof")
    except (DaemonError, OSError, ValueError) as exc:
        log.error("%s: cannot run: %s", args.node, exc)
        return 1
    except Exception:
        log.exception("%s: failed", args.node)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
