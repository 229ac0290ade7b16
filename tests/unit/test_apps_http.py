"""HTTP/1.1 server and client over the kernel's TCP on loopback, and against curl / http.server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lab.node.apps import payload
from lab.node.apps.file_cache import RACY_SECONDS, FileCache
from lab.node.apps.http_client import HttpClient, HttpClientOptions, run_client
from lab.node.apps.http_server import HttpServer, HttpServerOptions
from lab.node.apps.net import KernelNet

HOST = "127.0.0.1"
Scenario = Callable[[KernelNet, HttpServer], Awaitable[Any]]


def _run(scenario: Scenario, **options: Any) -> Any:
    async def main() -> Any:
        net = KernelNet()
        server = await HttpServer(HttpServerOptions(host=HOST, port=0, **options)).start(net)
        try:
            return await asyncio.wait_for(scenario(net, server), 30)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


async def _raw(net: KernelNet, port: int, data: bytes) -> bytes:
    """Send raw bytes, then read everything until the server closes."""
    reader, writer = await net.open_connection(HOST, port)
    writer.write(data)
    await writer.drain()
    reply = await reader.read()
    writer.close()
    await writer.wait_closed()
    return reply


def test_get_file_head_404_405(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>hi</h1>")
    (tmp_path / "data.json").write_text('{"a": 1}')

    async def scenario(net: KernelNet, server: HttpServer) -> None:
        async with HttpClient(net, HOST, server.port) as client:
            r = await client.request("GET", "/data.json")
            assert r.status == 200 and r.body == b'{"a": 1}'
            assert r.header("content-type") == "application/json" and r.header("content-length") == "8"
            assert r.sha256 == hashlib.sha256(b'{"a": 1}').hexdigest()
            r = await client.request("GET", "/")
            assert r.status == 200 and r.body == b"<h1>hi</h1>" and r.header("content-type") == "text/html"
            r = await client.request("HEAD", "/data.json")
            assert r.status == 200 and r.body == b"" and r.header("content-length") == "8"
            r = await client.request("GET", "/missing.txt")
            assert r.status == 404
            r = await client.request("GET", "/../../etc/passwd")
            assert r.status == 404
            r = await client.request("DELETE", "/data.json")
            assert r.status == 405 and r.header("allow") == "GET, HEAD"
            r = await client.request("GET", "/echo")
            assert r.status == 405 and r.header("allow") == "POST"
            assert client.connections == 1

    _run(scenario, root=tmp_path)


def test_only_regular_files_inside_the_root_are_served(tmp_path: Path) -> None:
    root, outside = tmp_path / "www", tmp_path / "secret.txt"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "index.html").write_text("docs")
    (root / "empty").mkdir()
    outside.write_text("secret")
    (root / "escape.txt").symlink_to(outside)  # a symlink out of the served directory
    (root / "inside.txt").symlink_to(root / "docs" / "index.html")
    os.mkfifo(root / "pipe")  # opening it for reading must not wait for a writer

    async def scenario(net: KernelNet, server: HttpServer) -> None:
        async with HttpClient(net, HOST, server.port) as client:
            assert (await client.request("GET", "/docs/")).body == b"docs"
            assert (await client.request("GET", "/inside.txt")).body == b"docs"
            for path in ("/escape.txt", "/empty", "/pipe", "/docs/../../secret.txt"):
                assert (await client.request("GET", path)).status == 404, path

    _run(scenario, root=root)


@pytest.mark.parametrize("kept", [False, True], ids=["read", "kept"])
def test_served_files_follow_the_disk(tmp_path: Path, kept: bool) -> None:
    """The server remembers what a path resolved to, yet serves what the disk holds now: with
    files read on every request, and with their bytes kept (a clock that makes them all old)."""
    root, outside = tmp_path / "www", tmp_path / "secret.txt"
    (root / "docs").mkdir(parents=True)
    outside.write_text("secret")
    page, index = root / "a.txt", root / "docs" / "index.html"
    stamps = iter(range(1, 100))

    def write(path: Path, text: str) -> None:
        # A distinct mtime each time: two writes inside one timestamp tick would look alike,
        # which the "kept" clock (every file old) would not see.
        path.write_text(text)
        os.utime(path, ns=(0, next(stamps) * 10**9))

    write(page, "one")
    write(index, "v1")

    async def scenario(net: KernelNet, server: HttpServer) -> None:
        if kept:
            server.files = FileCache(root, clock=lambda: time.time_ns() + 10**12)
        async with HttpClient(net, HOST, server.port) as client:

            async def get(path: str) -> tuple[int, bytes | None]:
                r = await client.request("GET", path)
                return r.status, r.body

            assert await get("/a.txt") == (200, b"one")
            write(page, "two")  # rewritten in place, the same size
            assert await get("/a.txt") == (200, b"two")
            write(page, "three")
            assert await get("/a.txt") == (200, b"three")
            page.unlink()
            assert await get("/a.txt") == (404, b"404 Not Found\n")
            page.symlink_to(outside)  # now an escape from the root
            assert (await get("/a.txt"))[0] == 404
            page.unlink()
            write(page, "back")
            assert await get("/a.txt") == (200, b"back")
            assert await get("/docs/") == (200, b"v1")
            write(index, "v2")
            assert await get("/docs/") == (200, b"v2")
            index.unlink()
            assert (await get("/docs/"))[0] == 404
            os.mkfifo(index)
            assert (await get("/docs/"))[0] == 404

    _run(scenario, root=root)


def test_file_cache_keeps_the_bytes_of_small_files_not_changed_lately(tmp_path: Path) -> None:
    """A small file is given as bytes, kept only once it is older than a timestamp tick can hide
    a rewrite in (RACY_SECONDS); a large file is given open, to stream, and never kept."""
    small, large = tmp_path / "small.txt", tmp_path / "large.bin"
    small.write_bytes(b"abc")
    large.write_bytes(b"x" * 100)
    st = small.stat()
    changed = max(st.st_mtime_ns, st.st_ctime_ns)
    now = [changed + int(RACY_SECONDS * 1e9) // 2]
    cache = FileCache(tmp_path, max_body_bytes=10, clock=lambda: now[0])

    def read(path: str) -> bytes:
        found = cache.lookup(path)
        assert found is not None
        if found.file is None:
            assert found.body is not None and len(found.body) == found.size <= 10
            return found.body
        with found.file as f:
            assert found.size > 10
            return f.read()

    assert read("/small.txt") == b"abc" and cache.kept_bytes == 0  # changed too lately to keep
    now[0] = changed + int(RACY_SECONDS * 1e9) * 2
    assert read("/small.txt") == b"abc" and cache.kept_bytes == 3  # kept from now on
    assert read("/small.txt") == b"abc"
    assert read("/large.bin") == b"x" * 100 and cache.kept_bytes == 3  # over max_body_bytes
    small.write_bytes(b"xyz")  # the same size: its timestamps tell the change
    os.utime(small, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    assert read("/small.txt") == b"xyz"
    small.unlink()
    assert cache.lookup("/small.txt") is None and cache.kept_bytes == 0


def test_bytes_route_streams_the_payload() -> None:
    async def scenario(net: KernelNet, server: HttpServer) -> None:
        async with HttpClient(net, HOST, server.port, keep_body=False) as client:
            r = await client.request("GET", "/bytes/5000000")
            assert r.status == 200 and r.body is None and r.body_length == 5_000_000
            assert r.sha256 == payload.sha256(5_000_000)
            assert 0 <= r.ttfb <= r.total and r.connect_time >= 0
            r = await client.request("GET", "/bytes/1000?seed=7", keep_body=True)
            assert r.body == payload.payload(1000, seed=7) and r.reused and r.connect_time == 0.0

    _run(scenario)


def test_post_echo_and_status() -> None:
    async def scenario(net: KernelNet, server: HttpServer) -> None:
        async with HttpClient(net, HOST, server.port) as client:
            r = await client.request("POST", "/echo", {"Content-Type": "text/plain"}, b"hello, lab")
            assert r.status == 200 and r.body == b"hello, lab" and r.header("content-type") == "text/plain"
            r = await client.request("GET", "/status/418")
            assert r.status == 418 and r.reason == "I'm a Teapot"
            r = await client.request("GET", "/status/204")
            assert r.status == 204 and r.body == b""
            r = await client.request("GET", "/status/99")
            assert r.status == 400

    _run(scenario)


def test_hundred_requests_on_one_connection_then_connection_close() -> None:
    async def scenario(net: KernelNet, server: HttpServer) -> tuple[int, int]:
        async with HttpClient(net, HOST, server.port) as client:
            for i in range(100):
                r = await client.request("GET", f"/bytes/{i}")
                assert r.status == 200 and r.body == payload.payload(i)
            r = await client.request("GET", "/bytes/10", {"Connection": "close"})
            assert r.status == 200 and r.header("connection") == "close"
            assert client.connections == 1
            r = await client.request("GET", "/bytes/3")  # reconnects
            assert r.status == 200 and not r.reused and client.connections == 2
        return server.connections, server.requests

    assert _run(scenario) == (2, 102)


def test_chunked_request_body() -> None:
    async def scenario(net: KernelNet, server: HttpServer) -> None:
        async with HttpClient(net, HOST, server.port) as client:
            r = await client.request("POST", "/echo", body=iter([b"abc", b"", b"defg", b"h" * 70_000]))
            assert r.status == 200 and r.body == b"abcdefg" + b"h" * 70_000
        raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        raw += b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        reply = await _raw(net, server.port, raw)
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"\r\n\r\nabcde")

    _run(scenario)


def test_malformed_request_gets_400_then_close_and_server_survives() -> None:
    async def scenario(net: KernelNet, server: HttpServer) -> None:
        reply = await _raw(net, server.port, b"THIS IS NOT HTTP\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
        reply = await _raw(net, server.port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
        async with HttpClient(net, HOST, server.port) as client:
            assert (await client.request("GET", "/status/200")).status == 200

    _run(scenario)


def test_oversize_header_431_and_body_413() -> None:
    async def scenario(net: KernelNet, server: HttpServer) -> None:
        big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
        assert (await _raw(net, server.port, big)).startswith(b"HTTP/1.1 431 ")
        declared = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
        assert (await _raw(net, server.port, declared)).startswith(b"HTTP/1.1 413 ")
        async with HttpClient(net, HOST, server.port) as client:
            r = await client.request("POST", "/echo", body=iter([b"z" * 3000, b"z" * 3000]))
            assert r.status == 413 and r.header("connection") == "close"
            r = await client.request("POST", "/echo", body=b"z" * 4096)
            assert r.status == 200 and len(r.body or b"") == 4096

    _run(scenario, max_header_bytes=4096, max_body_bytes=4096)


def test_run_client_options_and_json_result() -> None:
    async def scenario(net: KernelNet, server: HttpServer) -> dict[str, Any]:
        opts = HttpClientOptions(host=HOST, port=server.port, method="POST", path="/echo", body="hi", count=3)
        return (await run_client(net, opts)).to_dict()

    result = _run(scenario)
    assert result["ok"] and result["connections"] == 1 and len(result["responses"]) == 3
    assert result["responses"][2]["sha256"] == hashlib.sha256(b"hi").hexdigest()
    assert "body" not in result["responses"][0]


async def _curl(*args: str) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "20", *args, stdout=asyncio.subprocess.PIPE
    )  # fmt: skip
    stdout, _ = await proc.communicate()
    return proc.returncode or 0, stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_against_our_server(tmp_path: Path) -> None:
    out, upload, echoed = tmp_path / "out.bin", tmp_path / "up.bin", tmp_path / "echoed.bin"
    upload.write_bytes(payload.payload(1_500_000, seed=2))

    async def scenario(net: KernelNet, server: HttpServer) -> None:
        base = f"http://{HOST}:{server.port}"
        rc, code = await _curl("-o", str(out), "-w", "%{http_code}", f"{base}/bytes/300000")
        assert rc == 0 and code == b"200"
        # A large POST makes curl send "Expect: 100-continue"; the server must answer it.
        rc, code = await _curl("--data-binary", f"@{upload}", "-o", str(echoed), "-w", "%{http_code}",
                               f"{base}/echo")  # fmt: skip
        assert rc == 0 and code == b"200"

    _run(scenario)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == payload.sha256(300_000)
    assert echoed.read_bytes() == upload.read_bytes()


def test_client_fetches_from_python_http_server(tmp_path: Path) -> None:
    body = payload.payload(123_457, seed=4)
    (tmp_path / "blob.bin").write_bytes(body)

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-u", "-m", "http.server", "--bind", HOST, "--directory", str(tmp_path), "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            banner = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            port = int(banner.split(" port ")[1].split()[0])
            async with HttpClient(KernelNet(), HOST, port, timeout=20) as client:
                r = await client.request("GET", "/blob.bin")
                assert r.status == 200 and r.body_length == len(body)
                assert r.sha256 == hashlib.sha256(body).hexdigest()
                r = await client.request("GET", "/nope")
                assert r.status == 404
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), 20)

    asyncio.run(main())


def test_ipv6_literal_goes_in_brackets_in_host() -> None:
    """RFC 9110 7.2: the Host of an IPv6 literal is [addr]:port; the server and client work on ::1."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    seen: list[bytes] = []

    async def main() -> tuple[int, int]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "::1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with HttpClient(KernelNet(), "::1", port) as client:
                return (await client.request("GET", "/")).status, port
        finally:
            server.close()

    try:
        status, port = asyncio.run(main())
    except OSError as exc:  # a machine whose loopback has no ::1
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert status == 204
    host = [line for line in seen[0].split(b"\r\n") if line.lower().startswith(b"host:")]
    assert host == [f"Host: [::1]:{port}".encode()]
