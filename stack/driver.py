"""The pump rule, written down once: how any driver (TUN, simulation, tests) runs a Host.

A Host is sans-I/O. It has three ways in and one way out:

  in:  host.receive(packet, now)      a packet arrived (loopback=True: from the host itself)
       host.receive_batch(packets, now)  packets read together (one ACK of in-order data each)
       host.on_timer(now)             the deadline it asked for has come
       application calls              through `stack.socket` (connect, send, recv, close, ...)
  out: host.take_packets()            IP packets to transmit now, in order
       host.deadline()                the earliest time it next needs on_timer (None: no timer)
       host.take_app_events()         connections/listeners whose application-visible status changed

After *every* input, the driver pumps: (1) transmit everything take_packets() returns, (2) wake the
application waiters of every object take_app_events() names, (3) re-arm its single timer for
deadline(). `StackRuntime` does exactly that on an asyncio loop whose `time()` is the host's clock:
a real loop for TUN, a virtual-time loop for the simulated network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stack.host import Host


class StackRuntime:
    """Binds one Host to an asyncio loop and a transmit function."""

    def __init__(
        self, host: Host, loop: asyncio.AbstractEventLoop, transmit: Callable[[bytes], None]
    ) -> None:
        self.host = host
        self.loop = loop
        self.transmit = transmit
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._waiters: dict[object, list[asyncio.Future[None]]] = {}
        self._watchers: dict[object, Callable[[], None]] = {}
        self._pumping = False
        self._again = False

    def now(self) -> float:
        return self.loop.time()

    def deliver(self, packets: Sequence[bytes], loopback: bool = False) -> None:
        """Feed received packets to the host, then pump once. Several packets are one batch
        (`Host.receive_batch`); a single packet is received alone (the simulated network).
        `loopback`: they come from the host itself (see Host.receive)."""
        now = self.loop.time()
        if loopback:
            for packet in packets:
                self.host.receive(packet, now, loopback=True)
        elif len(packets) == 1:
            self.host.receive(packets[0], now)
        else:
            self.host.receive_batch(packets, now)
        self.pump()

    def pump(self) -> None:
        """Transmit, wake, re-arm: see the module docstring. Re-entrant calls (a watcher that
        writes, say) are folded into the running pump, which loops until nothing is left."""
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        try:
            self._again = True
            while self._again:
                self._again = False
                for packet in self.host.take_packets():
                    self.transmit(packet)
                for obj in self.host.take_app_events():
                    self._wake(obj)
                    self._again = True
            self._rearm()
        finally:
            self._pumping = False

    def _wake(self, obj: object) -> None:
        waiters = self._waiters.pop(obj, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        watcher = self._watchers.get(obj)
        if watcher is not None:
            watcher()

    def _rearm(self) -> None:
        deadline = self.host.deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = deadline
            if deadline is not None:
                self._timer = self.loop.call_at(deadline, self._on_timer)

    def watch(self, obj: object, callback: Callable[[], None]) -> None:
        """Call callback (inside pump) whenever the host reports a change of obj."""
        self._watchers[obj] = callback

    def unwatch(self, obj: object) -> None:
        self._watchers.pop(obj, None)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.host.on_timer(self.loop.time())
        self.pump()

    async def wait_for_change(self, obj: object) -> None:
        """Sleep until the host reports an application-visible change of obj (see pump)."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiters.setdefault(obj, []).append(fut)
        await fut
