"""A listening socket's two bounded queues (RFC 9293 3.10.7.2; the backlog of listen(2)).

Half-open connections (SYN_RECEIVED) wait in `half_open`; established ones wait in `accept_queue`
for the application's accept(). A SYN beyond either bound is dropped and counted, as Linux does,
so the peer retries rather than being refused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from stack.config import TcpConfig

if TYPE_CHECKING:
    from stack.tcp.connection import TcpConnection


class Listener:
    def __init__(
        self,
        ip: str,
        port: int,
        backlog: int,
        config: TcpConfig,
        notify: Callable[[Listener], None],
    ) -> None:
        self.ip = ip
        self.port = port
        self.backlog = max(backlog, 1)
        self.config = config
        self._notify = notify
        self.half_open: dict[str, TcpConnection] = {}
        self.accept_queue: deque[TcpConnection] = deque()
        self.closed = False
        self.overflows = 0
        self.keepalive = False
        self.nodelay = not config.nagle

    def has_room_for_syn(self) -> bool:
        return len(self.half_open) < self.config.syn_backlog and len(self.accept_queue) < self.backlog

    def overflow(self) -> None:
        """A completed handshake found the accept queue full (counted like Linux's ListenOverflows)."""
        self.overflows += 1

    def can_accept(self) -> bool:
        return len(self.accept_queue) < self.backlog

    def add_half_open(self, conn: TcpConnection) -> None:
        self.half_open[conn.id] = conn

    def established(self, conn: TcpConnection) -> None:
        self.half_open.pop(conn.id, None)
        self.accept_queue.append(conn)
        self._notify(self)

    def forget(self, conn: TcpConnection) -> None:
        self.half_open.pop(conn.id, None)
        try:
            self.accept_queue.remove(conn)
        except ValueError:
            pass

    def accept(self) -> TcpConnection | None:
        while self.accept_queue:
            conn = self.accept_queue.popleft()
            conn.accepted_by_application()
            return conn
        return None
