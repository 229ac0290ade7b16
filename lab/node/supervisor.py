"""The node daemon's apps: server apps it keeps running (`start_app`, `stop_app`, the boot apps of
its config) and client apps it runs to a result (`run_app`), all from `lab.node.apps.registry`.

An app's bad options or a server that dies at once (a port in use) are the request's error; a
server that fails later is logged and forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from lab.node.control import AppArgs, RequestError, StopAppArgs
from stack.socket import Stack

log = logging.getLogger("tcplab.daemon")

APP_STOP_GRACE = 1.0


@dataclass
class RunningApp:
    id: str
    name: str
    options: dict[str, Any]
    task: asyncio.Task[Any]


def _conn_stats(writer: asyncio.StreamWriter) -> dict[str, object] | None:
    """What the bulk app reports per stream: the connection's `ss` line at the end."""
    conn = writer.get_extra_info("tcp_connection")
    info = getattr(conn, "info", None)
    return dict(info()) if callable(info) else None


class AppSupervisor:
    """The apps of one node's stack, by id (`NAME:PORT` for a server with a port, else `NAME`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stack: Stack) -> None:
        self.loop = loop
        self.stack = stack
        self.apps: dict[str, RunningApp] = {}

    async def start(self, args: AppArgs) -> dict[str, Any]:
        from lab.node.apps import registry

        spec = self._spec(args.name, "server")
        try:
            options = spec.parse(args.options)
        except registry.AppOptionsError as exc:
            raise RequestError("bad_args", str(exc)) from None
        port = getattr(options, "port", None)
        app_id = f"{args.name}:{port}" if port is not None else args.name
        if app_id in self.apps:
            raise RequestError("failed", f"{app_id} is already running")
        task = self.loop.create_task(spec.run(self.stack, options), name=app_id)
        # Listening happens in the app's first steps: let it get that far, so a port already in
        # use is this request's error rather than a silent death later.
        for _ in range(10):
            await asyncio.sleep(0)
            if task.done():
                break
        if task.done():
            failure = task.exception() if not task.cancelled() else None
            raise RequestError("failed", f"{app_id} stopped at once: {failure!r}")
        self.apps[app_id] = RunningApp(app_id, args.name, options.model_dump(mode="json"), task)
        task.add_done_callback(lambda t: self._app_ended(app_id, t))
        log.info("started %s", app_id)
        return {"id": app_id}

    def _app_ended(self, app_id: str, task: asyncio.Task[Any]) -> None:
        if self.apps.get(app_id) is not None and self.apps[app_id].task is task:
            del self.apps[app_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("app %s failed: %r", app_id, task.exception())

    def _spec(self, name: str, kind: str) -> Any:
        from lab.node.apps import registry

        try:
            spec = registry.get(name)
        except KeyError as exc:
            raise RequestError("bad_args", str(exc.args[0])) from None
        if spec.kind != kind:
            other = "start_app" if spec.kind == "server" else "run_app"
            raise RequestError("bad_args", f"{name} is a {spec.kind} app: use {other}")
        return spec

    async def run(self, args: AppArgs) -> Any:
        from lab.node.apps import registry

        spec = self._spec(args.name, "client")
        try:
            options = spec.parse(args.options)
        except registry.AppOptionsError as exc:
            raise RequestError("bad_args", str(exc)) from None
        if args.name == "bulk-client":
            from lab.node.apps import bulk

            coro = bulk.run_client(self.stack, options, conn_stats=_conn_stats)
        else:
            coro = spec.run(self.stack, options)
        try:
            result = await asyncio.wait_for(coro, args.timeout)
        except TimeoutError:
            raise RequestError("failed", f"{args.name}: no result within {args.timeout}s") from None
        except (OSError, EOFError, ValueError, RuntimeError, asyncio.IncompleteReadError) as exc:
            raise RequestError("failed", f"{args.name}: {type(exc).__name__}: {exc}") from None
        to_dict = getattr(result, "to_dict", None)
        return to_dict() if callable(to_dict) else result

    async def stop(self, args: StopAppArgs) -> dict[str, Any]:
        app = self.apps.pop(args.id, None)
        if app is None:
            running = ", ".join(sorted(self.apps)) or "none"
            raise RequestError("bad_args", f"no app {args.id!r} running; running: {running}")
        app.task.cancel()
        await asyncio.wait([app.task], timeout=APP_STOP_GRACE)
        return {"stopped": args.id}

    async def stop_all(self) -> None:
        """Cancel every app and give them `APP_STOP_GRACE` to close their connections."""
        tasks = [app.task for app in self.apps.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=APP_STOP_GRACE)
        self.apps.clear()
