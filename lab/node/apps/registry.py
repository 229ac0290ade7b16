"""Apps by name, with typed options, so topology files and the CLI can start them.

spec = registry.get("bulk-client")
options = spec.parse({"host": "10.0.0.2", "bytes": 1_000_000})   # AppOptionsError names the field
result = await spec.run(net, options)                              # servers run until cancelled
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from lab.node.apps import bulk, echo, http_client, http_server
from lab.node.apps.net import Net


class AppResult(Protocol):
    """What a client app returns: JSON-ready via to_dict()."""

    def to_dict(self) -> dict[str, Any]: ...


class AppOptionsError(ValueError):
    """Invalid options for an app; the message names the app and every offending field."""

    def __init__(self, app: str, errors: list[tuple[str, str]]) -> None:
        self.app = app
        self.errors = errors
        """(field path, message) pairs."""
        lines = "; ".join(f"{field}: {msg}" for field, msg in errors)
        super().__init__(f"{app}: invalid options: {lines}")


@dataclasses.dataclass(frozen=True)
class AppSpec:
    name: str
    kind: Literal["server", "client"]
    options_model: type[BaseModel]
    run: Callable[[Net, Any], Coroutine[Any, Any, AppResult | None]]
    """Servers return only when cancelled; clients return a result."""
    description: str

    def parse(self, raw: Mapping[str, Any] | None = None) -> BaseModel:
        """Validate raw options (from YAML, JSON or CLI) into the app's options model."""
        try:
            return self.options_model.model_validate(dict(raw or {}))
        except ValidationError as exc:
            errors = [(".".join(str(p) for p in e["loc"]) or "(options)", e["msg"]) for e in exc.errors()]
            raise AppOptionsError(self.name, errors) from None


_APPS: dict[str, AppSpec] = {
    spec.name: spec
    for spec in (
        AppSpec("echo-server", "server", echo.EchoServerOptions, echo.run_server,
                "echoes every byte until the peer half-closes"),
        AppSpec("echo-client", "client", echo.EchoClientOptions, echo.run_client,
                "sends a message, reads it back, verifies it, reports the round-trip time"),
        AppSpec("http-server", "server", http_server.HttpServerOptions, http_server.run_server,
                "HTTP/1.1: a directory's files, /bytes/N, /echo, /status/N"),
        AppSpec("http-client", "client", http_client.HttpClientOptions, http_client.run_client,
                "HTTP/1.1 requests on one kept-alive connection, with digests and timings"),
        AppSpec("bulk-server", "server", bulk.BulkServerOptions, bulk.run_server,
                "bulk transfer peer (either direction, verifies what it receives)"),
        AppSpec("bulk-client", "client", bulk.BulkClientOptions, bulk.run_client,
                "bulk transfer: N bytes or T seconds, parallel streams, goodput"),
    )
}  # fmt: skip


def names() -> list[str]:
    return sorted(_APPS)


def get(name: str) -> AppSpec:
    try:
        return _APPS[name]
    except KeyError:
        raise KeyError(f"unknown app {name!r}; known: {', '.join(names())}") from None


def server_problem(name: str, options: Mapping[str, Any] | None = None) -> str | None:
    """Why the server app `name` cannot start with `options`, or None: one check shared by a
    topology's `apps` and `tcplab app start`, so both refuse the same things in the same words."""
    try:
        spec = get(name)
    except KeyError as exc:
        return str(exc.args[0])
    if spec.kind != "server":
        servers = ", ".join(n for n in names() if _APPS[n].kind == "server")
        return f"{name} is a client app (it runs once, e.g. `tcplab http`); servers: {servers}"
    try:
        spec.parse(options)
    except AppOptionsError as exc:
        return str(exc)
    return None
