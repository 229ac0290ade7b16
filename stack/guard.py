"""Host-wide bounds on what peers can make a host hold or send; a counter names each one that bites.

- Orphans (Linux tcp_max_orphans): connections the application has closed that are not yet
  CLOSED or in TIME_WAIT. Past the bound the newest is reset, as Linux's "too many orphaned
  sockets" does: a peer that never acknowledges our FIN cannot pile them up.
- TIME_WAIT buckets (Linux tcp_max_tw_buckets): orphaned connections in TIME_WAIT. Past the bound
  one is closed at once without TIME_WAIT ("time wait bucket table overflow").
- RSTs for segments that match no connection, and ICMP messages: token buckets (Linux
  icmp_msgs_per_sec / icmp_msgs_burst), so a flood of spoofed segments cannot be turned into a
  flood of answers at a victim.

The other bounds live with what they bound: the SYN and accept queues in the listener (SYN cookies
past the SYN queue), out-of-order data within the receive buffer (stack.tcp.reassembly), challenge
ACKs (stack.tcp.ratelimit).
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from stack.config import TcpConfig
from stack.tcp.ratelimit import TokenBucket
from stack.tcp.state import State


class Tracked(Protocol):
    """A connection or a TIME_WAIT record, as the bounds see it."""

    @property
    def app_closed(self) -> bool: ...

    @property
    def state(self) -> State: ...

    def abort(self, now: float, cause: str = "call:abort") -> None: ...

ORPHAN_STATES = frozenset({State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING, State.LAST_ACK})
TOO_MANY_ORPHANS = "max_orphans"
TOO_MANY_TIME_WAIT = "max_tw_buckets"


class Bounds:
    def __init__(self, config: TcpConfig) -> None:
        self.max_orphans = config.max_orphans
        self.max_tw_buckets = config.max_tw_buckets
        self.rst = TokenBucket(config.rst_per_second, config.rst_burst)
        self.icmp = TokenBucket(config.icmp_per_second, config.icmp_burst)
        self.orphans: set[Tracked] = set()
        self.time_wait: set[Tracked] = set()

    def replace(self, old: Tracked, new: Tracked) -> None:
        """new stands for old from now on (a TIME_WAIT record for its connection)."""
        if old in self.time_wait:
            self.time_wait.discard(old)
            self.time_wait.add(new)

    def enforce(self, conn: Tracked, now: float, counters: Counter[str]) -> None:
        """Track conn after anything happened to it; if it breaks a bound, count the bound and
        end conn now (an orphan is reset; a TIME_WAIT entry just ends)."""
        bound = self.note(conn)
        if bound is not None:
            counters[bound] += 1
            conn.abort(now, f"bound:{bound}")
            self.note(conn)

    def note(self, conn: Tracked) -> str | None:
        """Track conn after anything happened to it; the bound it breaks (it must be closed
        now, by the caller), or None."""
        orphaned = conn.app_closed
        if orphaned and conn.state in ORPHAN_STATES:
            self.time_wait.discard(conn)
            if conn not in self.orphans:
                if len(self.orphans) >= self.max_orphans:
                    return TOO_MANY_ORPHANS
                self.orphans.add(conn)
            return None
        self.orphans.discard(conn)
        if orphaned and conn.state is State.TIME_WAIT:
            if conn not in self.time_wait:
                if len(self.time_wait) >= self.max_tw_buckets:
                    return TOO_MANY_TIME_WAIT
                self.time_wait.add(conn)
            return None
        self.time_wait.discard(conn)
        return None
