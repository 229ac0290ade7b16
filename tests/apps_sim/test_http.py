"""The HTTP/1.1 apps (h11) on the real stack over the simulated network, clean and lossy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab.node.apps import payload
from lab.node.apps.http_client import HttpClient, HttpResponse
from lab.node.apps.http_server import HttpServer, HttpServerOptions
from lab.node.apps.net import close_writer
from tests.two_hosts import TwoHosts

from .helpers import PROFILES, assert_all_finished, connections, make_lab, sha256, syns_out

PORT = 80
_T = TypeVar("_T")
BOTH = pytest.mark.parametrize("profile", ["clean", "lossy"])


@contextlib.asynccontextmanager
async def http_server(lab: TwoHosts, root: Path | None = None) -> AsyncIterator[HttpServer]:
    server = await HttpServer(HttpServerOptions(port=PORT, root=root)).start(lab.stack_b)
    try:
        yield server
    finally:
        await lab.settle()  # every connection finished, TIME_WAIT waited out on the virtual clock
        server.close()
        await server.wait_closed()


def run_with_server(
    lab: TwoHosts, body: Callable[[HttpServer], Coroutine[Any, Any, _T]], root: Path | None = None
) -> tuple[_T, HttpServer]:
    async def scenario() -> tuple[_T, HttpServer]:
        async with http_server(lab, root) as server:
            return await body(server), server

    with lab.net:
        out = lab.run(scenario(), timeout=900)
    lab.assert_impaired()
    return out


@BOTH
def test_get_files_from_a_directory(profile: str, tmp_path: Path) -> None:
    page = b"<!doctype html><title>tcplab</title><p>served over the stack</p>\n"
    data = payload.payload(300_001, seed=5)
    (tmp_path / "index.html").write_bytes(page)
    (tmp_path / "data.bin").write_bytes(data)
    lab = make_lab(seed=11, profile=PROFILES[profile])

    async def body(server: HttpServer) -> list[HttpResponse]:
        async with HttpClient(lab.stack_a, "server", PORT) as client:
            return [
                await client.request("GET", "/data.bin"),
                await client.request("GET", "/"),
                await client.request("HEAD", "/data.bin"),
                await client.request("GET", "/missing.txt"),
                await client.request("DELETE", "/data.bin"),
            ]

    (blob, index, head, missing, delete), server = run_with_server(lab, body, tmp_path)
    assert (blob.status, blob.body_length, blob.sha256) == (200, len(data), sha256(data))
    assert blob.header("content-length") == str(len(data))
    assert blob.header("content-type") == "application/octet-stream"
    assert (index.status, index.body, index.header("content-type")) == (200, page, "text/html")
    assert (head.status, head.body, head.header("content-length")) == (200, b"", str(len(data)))
    assert (missing.status, delete.status) == (404, 405)
    assert server.connections == 1  # all five on one connection
    assert_all_finished(lab.sink_a, expect=1)
    assert_all_finished(lab.sink_b, expect=1)


@BOTH
def test_get_five_megabytes_of_generated_bytes(profile: str) -> None:
    n = 5_000_000
    lab = make_lab(seed=12, profile=PROFILES[profile])

    async def body(server: HttpServer) -> HttpResponse:
        async with HttpClient(lab.stack_a, "server", PORT, keep_body=False) as client:
            return await client.request("GET", f"/bytes/{n}?seed=4")

    response, _ = run_with_server(lab, body)
    assert response.status == 200
    assert (response.body_length, response.sha256) == (n, payload.sha256(n, 4))
    assert response.header("content-length") == str(n)
    assert_all_finished(lab.sink_a, expect=1)
    assert_all_finished(lab.sink_b, expect=1)
    # The body really crossed the link: the server's data segments carried at least n bytes.
    assert sum(s.len for s in lab.sink_b.segments("out")) >= n


@BOTH
def test_post_echo_with_length_and_chunked(profile: str) -> None:
    data = payload.payload(200_000, seed=6)
    lab = make_lab(seed=13, profile=PROFILES[profile])

    async def body(server: HttpServer) -> list[HttpResponse]:
        async with HttpClient(lab.stack_a, "server", PORT) as client:
            sized = await client.request("POST", "/echo", {"Content-Type": "application/x-test"}, data)
            chunks = (data[i : i + 7000] for i in range(0, len(data), 7000))
            chunked = await client.request("POST", "/echo", None, chunks)
            empty = await client.request("POST", "/echo", None, b"")
            return [sized, chunked, empty]

    (sized, chunked, empty), _ = run_with_server(lab, body)
    assert (sized.status, sized.body, sized.header("content-type")) == (200, data, "application/x-test")
    assert (chunked.status, chunked.body) == (200, data)
    assert (empty.status, empty.body) == (200, b"")
    assert_all_finished(lab.sink_a, expect=1)


@BOTH
def test_hundred_requests_on_one_kept_alive_connection(profile: str) -> None:
    lab = make_lab(seed=14, profile=PROFILES[profile])

    async def body(server: HttpServer) -> tuple[list[HttpResponse], int]:
        async with HttpClient(lab.stack_a, "server", PORT) as client:
            responses = [await client.request("GET", f"/bytes/{100 * i}?seed={i}") for i in range(100)]
            return responses, client.connections

    (responses, opened), server = run_with_server(lab, body)
    assert [r.status for r in responses] == [200] * 100
    assert all(r.sha256 == payload.sha256(100 * i, i) for i, r in enumerate(responses))
    assert [r.reused for r in responses] == [False] + [True] * 99
    assert opened == 1 and server.connections == 1 and server.requests == 100
    # The trace shows exactly one handshake: one SYN out of the client, one connection each side.
    assert syns_out(lab.sink_a) == 1
    assert len(connections(lab.sink_a)) == 1
    assert sum(1 for s in lab.sink_b.segments("in") if s.flags == "S") == 1
    assert_all_finished(lab.sink_a, expect=1)
    assert_all_finished(lab.sink_b, expect=1)


MALFORMED = {
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 400),
    "no-host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "bad-length": (b"POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: ten\r\n\r\n", 400),
    "bad-header": (b"GET / HTTP/1.1\r\nHost: s\r\nno colon here\r\n\r\n", 400),
    "bad-chunk": (b"POST /echo HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    "huge-head": (b"GET / HTTP/1.1\r\nHost: s\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431),
    "huge-body": (b"POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: 999999999\r\n\r\n", 413),
}


@BOTH
def test_malformed_requests_get_an_error_and_a_close(profile: str) -> None:
    lab = make_lab(seed=15, profile=PROFILES[profile])

    async def raw(request: bytes) -> bytes:
        reader, writer = await lab.stack_a.open_connection("server", PORT)
        writer.write(request)
        await writer.drain()
        answer = await reader.read()  # everything up to the server's FIN
        await close_writer(writer)
        return answer

    async def body(server: HttpServer) -> tuple[dict[str, bytes], HttpResponse]:
        answers = {name: await raw(request) for name, (request, _) in MALFORMED.items()}
        async with HttpClient(lab.stack_a, "server", PORT) as client:  # the server survived
            after = await client.request("GET", "/bytes/10")
        return answers, after

    (answers, after), server = run_with_server(lab, body)
    for name, (_, status) in MALFORMED.items():
        head = answers[name].split(b"\r\n", 1)[0]
        assert head.startswith(b"HTTP/1.1 %d " % status), (name, answers[name][:200])
        assert b"connection: close" in answers[name].lower(), name
    assert after.status == 200 and after.body == payload.payload(10)
    assert server.connections == len(MALFORMED) + 1
    client_paths = assert_all_finished(lab.sink_a, expect=len(MALFORMED) + 1)
    server_paths = assert_all_finished(lab.sink_b, expect=len(MALFORMED) + 1)
    # The server closed each bad connection first (its FIN), the client then closed its side.
    assert all("FIN_WAIT_1" in p for p in server_paths[: len(MALFORMED)]), server_paths
    assert all("CLOSE_WAIT" in p for p in client_paths[: len(MALFORMED)]), client_paths


@BOTH
def test_idle_connection_closed_by_the_server_is_replaced(profile: str) -> None:
    lab = make_lab(seed=16, profile=PROFILES[profile])

    async def scenario() -> tuple[list[HttpResponse], int, HttpServer]:
        server = await HttpServer(HttpServerOptions(port=PORT, idle_timeout=5.0)).start(lab.stack_b)
        async with HttpClient(lab.stack_a, "server", PORT) as client:
            first = await client.request("GET", "/bytes/1000")
            await asyncio.sleep(10.0)  # past the server's idle timeout: it closes its side
            second = await client.request("GET", "/bytes/2000")
            opened = client.connections
        await lab.settle()
        server.close()
        await server.wait_closed()
        return [first, second], opened, server

    with lab.net:
        (first, second), opened, server = lab.run(scenario(), timeout=900)
    assert (first.status, first.body) == (200, payload.payload(1000))
    # The stale connection failed before any response; the request went again on a new one.
    assert (second.status, second.body, second.reused) == (200, payload.payload(2000), False)
    assert opened == 2 and server.connections == 2 and server.requests == 2
    first_server, second_server = (lab.sink_b.transitions(c) for c in connections(lab.sink_b))
    assert first_server[:4] == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1"]  # server closed
    assert second_server[-1] == "CLOSED" and "ESTABLISHED" in second_server
    assert lab.sink_a.transitions(connections(lab.sink_a)[0])[3] == "CLOSE_WAIT"


def test_idle_timeout_counts_from_the_last_request_not_the_first() -> None:
    """A connection used every 3 s outlives a 5 s idle timeout: only one wait for a request
    that lasts the whole timeout closes it."""
    lab = make_lab(seed=17, profile=PROFILES["clean"])

    async def scenario() -> tuple[int, HttpServer]:
        server = await HttpServer(HttpServerOptions(port=PORT, idle_timeout=5.0)).start(lab.stack_b)
        async with HttpClient(lab.stack_a, "server", PORT) as client:
            for i in range(4):
                if i:
                    await asyncio.sleep(3.0)
                r = await client.request("GET", f"/bytes/{i}")
                assert (r.status, r.body, r.reused) == (200, payload.payload(i), i > 0)
            opened = client.connections
        await lab.settle()
        server.close()
        await server.wait_closed()
        return opened, server

    with lab.net:
        opened, server = lab.run(scenario(), timeout=900)
    assert opened == 1 and server.connections == 1 and server.requests == 4
    # The client closed first: the server never timed the connection out.
    assert lab.sink_b.transitions(connections(lab.sink_b)[0])[3] == "CLOSE_WAIT"
