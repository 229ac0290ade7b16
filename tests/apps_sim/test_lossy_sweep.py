"""Echo and HTTP side by side over the lossy, reordering link, for several seeds: each seed is a
different packet timeline, and every one must deliver exactly the bytes sent and close cleanly."""

from __future__ import annotations

import asyncio

import pytest

from lab.node.apps import payload
from lab.node.apps.echo import EchoClientOptions, EchoResult, EchoServer
from lab.node.apps.echo import run_client as run_echo
from lab.node.apps.http_client import HttpClient, HttpResponse
from lab.node.apps.http_server import HttpServer, HttpServerOptions

from .helpers import LOSSY, assert_all_finished, make_lab


@pytest.mark.parametrize("seed", range(1000, 1008))
def test_echo_and_http_together_over_a_lossy_link(seed: int) -> None:
    lab = make_lab(seed=seed, profile=LOSSY)

    async def fetch(i: int) -> list[HttpResponse]:
        async with HttpClient(lab.stack_a, "server", 80, keep_body=False) as client:
            return [await client.request("GET", f"/bytes/{40_000 * i + k}?seed={i}") for k in range(2)]

    async def scenario() -> tuple[list[EchoResult], list[list[HttpResponse]]]:
        echo = await EchoServer().start(lab.stack_b, "0.0.0.0", 7)
        http = await HttpServer(HttpServerOptions(port=80)).start(lab.stack_b)
        echoes = [
            run_echo(lab.stack_a, EchoClientOptions(host="server", port=7, size=60_000 + i, seed=i))
            for i in range(3)
        ]
        results = await asyncio.gather(asyncio.gather(*echoes), asyncio.gather(*(fetch(i) for i in range(3))))
        await lab.settle()
        for server in (echo, http):
            server.close()
            await server.wait_closed()
        return list(results[0]), list(results[1])

    with lab.net:
        echoes, fetched = lab.run(scenario(), timeout=900)
    assert [(r.ok, r.bytes_received) for r in echoes] == [(True, 60_000 + i) for i in range(3)]
    for i, responses in enumerate(fetched):
        for k, response in enumerate(responses):
            n = 40_000 * i + k
            assert (response.status, response.body_length) == (200, n)
            assert response.sha256 == payload.sha256(n, i)
    assert_all_finished(lab.sink_a)
    assert_all_finished(lab.sink_b)
    lab.assert_impaired()
