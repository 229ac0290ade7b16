"""The echo apps on the real stack over the simulated network: 1 byte to 10 MB, many clients."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lab.node.apps.echo import EchoClientOptions, EchoResult, EchoServer, run_client
from lab.node.apps.payload import payload
from tests.two_hosts import TwoHosts

from .helpers import PROFILES, assert_all_finished, connections, make_lab

PORT = 7
ACTIVE_CLOSE = ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
PASSIVE_CLOSE = ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]


def _echo(lab: TwoHosts, options: list[EchoClientOptions]) -> tuple[list[EchoResult], EchoServer]:
    async def scenario() -> tuple[list[EchoResult], EchoServer]:
        server = await EchoServer().start(lab.stack_b, "0.0.0.0", PORT)
        results = await asyncio.gather(*(run_client(lab.stack_a, o) for o in options))
        await lab.settle()  # TIME_WAIT waited out on the virtual clock
        server.close()
        await server.wait_closed()
        return list(results), server

    return lab.run(scenario(), timeout=900)


def _check_paths(lab: TwoHosts, profile: str, n: int) -> None:
    client_paths = assert_all_finished(lab.sink_a, expect=n)
    server_paths = assert_all_finished(lab.sink_b, expect=n)
    if profile == "clean":
        assert all(p == ACTIVE_CLOSE for p in client_paths), client_paths
        assert all(p == PASSIVE_CLOSE for p in server_paths), server_paths
    else:  # a lost FIN or ACK may take the other closing paths, never an abort
        assert all("TIME_WAIT" in p for p in client_paths), client_paths
        assert all(p[-2] == "LAST_ACK" for p in server_paths), server_paths


SIZES = {
    "clean": [1, 1460, 1461, 65_536, 1_000_000, 10_000_000],
    "lossy": [1, 1461, 300_000, 10_000_000],
}


@pytest.mark.parametrize(
    ("profile", "size"), [(p, n) for p, sizes in SIZES.items() for n in sizes]
)
def test_echo_returns_every_byte(profile: str, size: int) -> None:
    lab = make_lab(seed=size % 997, profile=PROFILES[profile])
    with lab.net:
        [result], server = _echo(lab, [EchoClientOptions(host="server", port=PORT, size=size, seed=3)])
    assert result.ok, result
    assert (result.bytes_sent, result.bytes_received) == (size, size)
    assert server.connections == 1
    _check_paths(lab, profile, 1)
    # The client's data segments carried at least the whole message (more with retransmissions).
    sent = sum(s.len for s in lab.sink_a.segments("out"))
    assert sent >= size
    if size >= 300_000:
        lab.assert_impaired()


@pytest.mark.parametrize("profile", ["clean", "lossy"])
def test_fifty_concurrent_echo_clients(profile: str) -> None:
    lab = make_lab(seed=50, profile=PROFILES[profile])
    # Different sizes and payload streams, so a byte delivered to the wrong client would show.
    options = [EchoClientOptions(host="server", port=PORT, size=1000 + 997 * i, seed=i) for i in range(50)]
    with lab.net:
        results, server = _echo(lab, options)
    assert [r.ok for r in results] == [True] * 50, [r for r in results if not r.ok]
    assert [r.bytes_received for r in results] == [o.size for o in options]
    assert server.connections == 50
    _check_paths(lab, profile, 50)
    lab.assert_impaired()
    # Fifty distinct connections (client ports) on each side.
    assert len({c.split(">")[0] for c in connections(lab.sink_a)}) == 50


def test_echo_of_a_file_and_a_message(tmp_path: Path) -> None:
    lab = make_lab(seed=7)
    body = payload(123_457, seed=9)
    path = tmp_path / "msg.bin"
    path.write_bytes(body)

    async def scenario() -> list[EchoResult]:
        server = await EchoServer().start(lab.stack_b, "0.0.0.0", PORT)
        from_file = EchoClientOptions(host="server", port=PORT, file=path)
        message = EchoClientOptions(host="server", port=PORT, message="hello, stack")
        results = [await run_client(lab.stack_a, from_file), await run_client(lab.stack_a, message)]
        server.close()
        await server.wait_closed()
        return results

    with lab.net:
        results = lab.run(scenario())
    assert [(r.ok, r.bytes_received) for r in results] == [(True, len(body)), (True, 12)]
