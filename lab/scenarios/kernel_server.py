"""Server apps on Linux's own TCP inside a kernel node's namespace: the far end of `tcplab check`
when its server is a kernel node.

    python -m lab.scenarios.kernel_server --netns NS --serve http-server:80 --serve echo-server:7

The process runs the same apps as the stack nodes (lab.node.apps) on kernel sockets, prints
`ready` once every one listens, and runs until SIGTERM. `start` spawns it in a lab node's
namespace and waits for that line; `stop` ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import subprocess
import sys

from lab.lab import REPO_ROOT, Lab, LabError

READY_TIMEOUT = 15.0


def start(lab: Lab, node: str, servers: dict[str, int]) -> subprocess.Popen[bytes]:
    """Run `servers` (app name -> port) on `node`'s kernel; returns once they all listen."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    serve = [arg for name, port in servers.items() for arg in ("--serve", f"{name}:{port}")]
    proc = lab.spawn(
        node,
        [sys.executable, "-m", "lab.scenarios.kernel_server", "--netns", lab.netns_of(node), *serve],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        stop(proc)
        raise LabError(f"the kernel-side servers on {node} did not start")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5.0)
    if proc.stdout is not None:
        proc.stdout.close()


def serve(servers: dict[str, int]) -> None:
    """The apps on Linux's TCP (inside the node's namespace); prints `ready` once all listen, runs
    until SIGTERM."""
    from lab.node.apps import registry
    from lab.node.apps.net import KernelNet

    async def main() -> None:
        net = KernelNet()
        tasks = []
        for name, port in servers.items():
            spec = registry.get(name)
            # "": every address of both families (asyncio opens one socket per family; "::"
            # alone would be IPv6 only, as asyncio sets IPV6_V6ONLY).
            options = spec.parse({"port": port, "host": ""})
            tasks.append(asyncio.create_task(spec.run(net, options)))
        for _ in range(20):
            await asyncio.sleep(0.01)
        failed = [t for t in tasks if t.done()]
        if failed:
            raise SystemExit(f"a server stopped at once: {failed[0].exception()!r}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def _server(text: str) -> tuple[str, int]:
    name, sep, port = text.rpartition(":")
    if not sep or not name or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give APP:PORT, e.g. echo-server:7")
    return name, int(port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m lab.scenarios.kernel_server")
    parser.add_argument("--netns", help="The namespace it runs in (names the process for teardown).")
    parser.add_argument("--serve", type=_server, action="append", required=True, help="APP:PORT")
    serve(dict(parser.parse_args().serve))
