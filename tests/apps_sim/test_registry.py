"""The apps registry runs every client app against its server app on the stack, by name."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from lab.node.apps import registry

from .helpers import PROFILES, assert_all_finished, make_lab

CASES: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "echo": ("echo-server", {"port": 7}, "echo-client", {"host": "server", "port": 7, "size": 200_000}),
    "http": (
        "http-server", {"port": 8080},
        "http-client", {"host": "server", "port": 8080, "path": "/bytes/150000", "count": 3},
    ),
    "http-post": (
        "http-server", {"port": 8080},
        "http-client", {"host": "server", "port": 8080, "method": "POST", "path": "/echo", "body": "hi"},
    ),
    "bulk-send": (
        "bulk-server", {"port": 5201},
        "bulk-client", {"host": "server", "port": 5201, "bytes": 400_000, "streams": 2},
    ),
    "bulk-recv": (
        "bulk-server", {},
        "bulk-client", {"host": "server", "direction": "recv", "bytes": 400_000, "streams": 3, "seed": 4},
    ),
    "bulk-seconds": (
        "bulk-server", {},
        "bulk-client", {"host": "server", "seconds": 0.5},
    ),
}  # fmt: skip


def test_every_app_is_covered() -> None:
    used = {name for server, _, client, _ in CASES.values() for name in (server, client)}
    assert used == set(registry.names())


@pytest.mark.parametrize("profile", ["clean", "lossy"])
@pytest.mark.parametrize("case", list(CASES))
def test_registry_runs_client_against_server(case: str, profile: str) -> None:
    server_name, server_raw, client_name, client_raw = CASES[case]
    server_spec, client_spec = registry.get(server_name), registry.get(client_name)
    assert (server_spec.kind, client_spec.kind) == ("server", "client")
    lab = make_lab(seed=41, profile=PROFILES[profile])

    async def scenario() -> dict[str, Any]:
        server = asyncio.create_task(server_spec.run(lab.stack_b, server_spec.parse(server_raw)))
        await asyncio.sleep(0.001)  # the server is listening
        try:
            result = await client_spec.run(lab.stack_a, client_spec.parse(client_raw))
        finally:
            server.cancel()  # servers run until cancelled, then close what they have open
            with contextlib.suppress(asyncio.CancelledError):
                await server
        await lab.settle()
        assert result is not None
        return result.to_dict()

    with lab.net:
        report = lab.run(scenario(), timeout=900)

    if client_name == "echo-client":
        assert report["ok"] and report["bytes_received"] == client_raw["size"], report
    elif client_name == "http-client":
        assert report["ok"] and report["connections"] == 1, report
        assert len(report["responses"]) == client_raw.get("count", 1)
        for response in report["responses"]:
            assert response["status"] == 200
    else:
        assert report["verified"], report
        assert len(report["streams"]) == client_raw.get("streams", 1)
        if "bytes" in client_raw:
            assert report["bytes"] == client_raw["bytes"]
        else:  # 0.5 s at 100 Mbit/s is 6.25 MB; 5% loss costs most of that (Mathis: ~6 Mbit/s)
            assert report["bytes"] > (3_000_000 if profile == "clean" else 200_000), report
    assert_all_finished(lab.sink_a)
    assert_all_finished(lab.sink_b)
