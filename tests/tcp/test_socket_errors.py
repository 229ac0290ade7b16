"""The errors a connection reports to the application carry their errno and message as a kernel
socket's do (`except OSError as e: e.errno`): ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE, both
through the socket API and the asyncio streams, on the simulated network."""

from __future__ import annotations

import asyncio
import errno
import os
import struct

import pytest

from stack.config import TcpConfig
from stack.sim import LinkProfile
from stack.socket import SHUT_WR, SO_ERROR, SO_LINGER, SOL_SOCKET, Socket
from tests.two_hosts import B_ADDR, TwoHosts, two_hosts

PORT = 80


def assert_kernel_error(exc: BaseException, cls: type[OSError], code: int) -> None:
    """What Python's socket module raises for a kernel error: the subclass, errno, strerror."""
    assert type(exc) is cls, exc
    assert isinstance(exc, OSError) and exc.errno == code
    assert exc.strerror is not None and exc.strerror.startswith(os.strerror(code)), exc.strerror
    assert str(exc).startswith(f"[Errno {code}] {os.strerror(code)}")


async def listener_and_client(net: TwoHosts) -> tuple[Socket, Socket]:
    """b listens on PORT; a's socket connects to it."""
    srv = net.stack_b.socket()
    srv.bind(("", PORT))
    srv.listen(1)
    cli = net.stack_a.socket()
    await cli.aconnect((B_ADDR, PORT))
    return srv, cli


def test_connect_to_a_closed_port_is_econnrefused() -> None:
    net = two_hosts(1)

    async def main() -> tuple[BaseException, BaseException, int]:
        sock = net.stack_a.socket()
        with pytest.raises(ConnectionRefusedError) as by_socket:
            await sock.aconnect((B_ADDR, 9))
        so_error = sock.getsockopt(SOL_SOCKET, SO_ERROR)
        with pytest.raises(ConnectionRefusedError) as by_stream:
            await net.stack_a.open_connection(B_ADDR, 9)
        return by_socket.value, by_stream.value, int(so_error)

    by_socket, by_stream, so_error = net.run(main())
    assert_kernel_error(by_socket, ConnectionRefusedError, errno.ECONNREFUSED)
    assert_kernel_error(by_stream, ConnectionRefusedError, errno.ECONNREFUSED)
    assert so_error == errno.ECONNREFUSED


def test_a_peer_reset_is_econnreset() -> None:
    net = two_hosts(2)

    async def main() -> BaseException:
        srv, cli = await listener_and_client(net)
        conn, _ = await srv.aaccept()
        conn.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # linger 0: an RST
        with pytest.raises(ConnectionResetError) as err:
            await cli.arecv(100)
        srv.close()
        return err.value

    assert_kernel_error(net.run(main()), ConnectionResetError, errno.ECONNRESET)


def test_sending_after_shutdown_is_epipe() -> None:
    net = two_hosts(3)

    async def main() -> BaseException:
        srv, cli = await listener_and_client(net)
        cli.shutdown(SHUT_WR)
        with pytest.raises(BrokenPipeError) as err:
            await cli.asend(b"late")
        cli.close()
        srv.close()
        return err.value

    assert_kernel_error(net.run(main()), BrokenPipeError, errno.EPIPE)


def test_an_unanswered_connect_is_etimedout() -> None:
    """Every SYN lost: after syn_retries retransmissions the connect fails as Linux's does."""
    net = two_hosts(4, LinkProfile(delay=0.01, loss=1.0), config=TcpConfig(syn_retries=2))

    async def main() -> BaseException:
        with pytest.raises(TimeoutError) as err:
            await net.stack_a.open_connection(B_ADDR, PORT)
        return err.value

    assert_kernel_error(net.run(main()), TimeoutError, errno.ETIMEDOUT)


def test_a_closed_connection_during_connect_is_an_oserror_with_errno() -> None:
    """The application closes the socket while connect() waits: ECONNABORTED, not a bare
    ConnectionError without an errno."""
    net = two_hosts(5, LinkProfile(delay=0.5))

    async def main() -> BaseException:
        sock = net.stack_a.socket()
        task = asyncio.ensure_future(sock.aconnect((B_ADDR, PORT)))
        await asyncio.sleep(0.1)
        sock.close()
        with pytest.raises(OSError) as err:
            await task
        return err.value

    assert_kernel_error(net.run(main()), ConnectionAbortedError, errno.ECONNABORTED)
