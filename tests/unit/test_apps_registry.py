"""The app registry: names, typed options, validation errors that name the field."""

from __future__ import annotations

import asyncio

import pytest

from lab.node.apps import registry
from lab.node.apps.echo import EchoClientOptions, EchoServer
from lab.node.apps.net import KernelNet


def test_all_apps_are_registered() -> None:
    assert registry.names() == sorted(
        ["echo-server", "echo-client", "http-server", "http-client", "bulk-server", "bulk-client"]
    )
    assert registry.get("http-server").kind == "server"
    assert registry.get("bulk-client").kind == "client"
    with pytest.raises(KeyError, match="known: bulk-client"):
        registry.get("ftp-server")


def test_validation_errors_name_the_field() -> None:
    spec = registry.get("bulk-client")
    with pytest.raises(registry.AppOptionsError) as exc:
        spec.parse({"host": "10.0.0.2", "streams": 0, "direction": "sideways"})
    fields = {field for field, _ in exc.value.errors}
    assert fields == {"streams", "direction"}
    assert "bulk-client" in str(exc.value) and "streams" in str(exc.value)
    with pytest.raises(registry.AppOptionsError, match="host"):
        registry.get("echo-client").parse({})
    with pytest.raises(registry.AppOptionsError, match="colour"):
        registry.get("http-server").parse({"colour": "blue"})
    with pytest.raises(registry.AppOptionsError, match="not both"):
        spec.parse({"host": "h", "bytes": 1, "seconds": 1})


def test_parse_gives_the_typed_model() -> None:
    opts = registry.get("echo-client").parse({"host": "127.0.0.1", "port": "7007", "size": 10})
    assert isinstance(opts, EchoClientOptions) and opts.port == 7007


def test_run_a_client_and_a_server_through_the_registry() -> None:
    async def main() -> dict[str, object]:
        net = KernelNet()
        echo = await EchoServer().start(net, "127.0.0.1", 0)
        client = registry.get("echo-client")
        result = await client.run(
            net, client.parse({"host": "127.0.0.1", "port": echo.port, "message": "hi"})
        )
        echo.close()
        await echo.wait_closed()
        # A registered server runs until cancelled.
        server = registry.get("http-server")
        task = asyncio.create_task(server.run(net, server.parse({"host": "127.0.0.1", "port": 0})))
        await asyncio.sleep(0)  # one loop turn so the task starts; not a delay
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert result is not None
        return result.to_dict()

    assert asyncio.run(main())["ok"] is True
