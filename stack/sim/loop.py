"""An asyncio event loop on a virtual clock that never sleeps.

`VirtualTimeLoop.time()` starts at 0.0 and moves only when the loop would otherwise wait: when
nothing is ready, the clock jumps straight to the earliest scheduled timer, so an hour of
`asyncio.sleep` costs nothing and every timer fires with `time()` equal to the time it was
scheduled for. Everything asyncio offers (tasks, futures, call_at, sleep, wait_for, timeout,
gather, Event, Queue) runs unchanged on it, in virtual time.

Three guarantees beyond the stock loop, all for exact and reproducible tests:
- Timers fire at their exact virtual time: the clock lands on the timer's own `when`, and only
  timers whose `when` is <= now are run (the stock loop also runs those within the monotonic
  clock's resolution, i.e. early).
- Timers scheduled for the same time run in the order they were scheduled (FIFO), so a run
  depends only on what was scheduled, not on heap layout.
- An exception raised by a plain callback (a packet delivery, a host timer) stops the run and is
  raised out of `run_until_complete`, instead of being logged while the run carries on: a bug in
  the stack must fail the test that hit it.
- A deadlock fails at once: if nothing is ready, nothing is scheduled and no file descriptor has
  anything to say, while a coroutine still waits, `SimulationStalled` is raised out of
  `run_until_complete` instead of blocking forever.

Waiting for threads (`run_in_executor`, `to_thread`, `getaddrinfo`) is not supported: virtual time
cannot wait for real time, so such a wait is reported as a stall.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import selectors
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextvars import Context
from typing import Any, TypeVar, TypeVarTuple

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

STALL_MESSAGE = "nothing scheduled: every task is waiting for an event that cannot happen"


class SimulationStalled(RuntimeError):
    """Every task waits for something that no timer, callback or file descriptor can cause."""


class _FifoTimerHandle(asyncio.TimerHandle):
    """A timer handle that orders by (when, scheduling order): FIFO among equal times."""

    __slots__ = ("_order",)

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: Context | None,
        seq: int,
    ) -> None:
        super().__init__(when, callback, args, loop, context)
        self._order = (when, seq)  # compared on every heap operation: keep it one tuple

    def __lt__(self, other: asyncio.TimerHandle) -> bool:
        # Hot path of every heap operation. Only this loop's call_at makes timers, so the
        # scheduled heap holds nothing else.
        return self._order < other._order  # type: ignore[attr-defined,no-any-return]

    def __le__(self, other: asyncio.TimerHandle) -> bool:
        return not other < self

    def __gt__(self, other: asyncio.TimerHandle) -> bool:
        return other < self

    def __ge__(self, other: asyncio.TimerHandle) -> bool:
        return not self < other

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real file descriptors without blocking; instead of blocking, advances the clock."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # Real file descriptors are polled, never waited for. The loop's own self-pipe is only a
        # wake-up signal (call_soon_threadsafe queues the callback itself), so skip the system
        # call while it is the only one registered, except before declaring a stall.
        if timeout is None or len(self.get_map()) > 1:
            ready = super().select(0)
            if ready:
                return ready
        if timeout is None:
            raise SimulationStalled(STALL_MESSAGE)
        if timeout > 0 and self.loop is not None:
            self.loop._advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """asyncio.SelectorEventLoop whose clock is virtual: see the module docstring."""

    def __init__(self) -> None:
        selector = _VirtualSelector()
        self._now = 0.0
        self._timer_seq = itertools.count()
        self._callback_error: Exception | None = None
        super().__init__(selector)
        selector.loop = self

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        # Only callback errors ("handle"): task errors are the awaiting code's to handle.
        if isinstance(exc, Exception) and "handle" in context and self._callback_error is None:
            self._callback_error = exc
            self.stop()
            return
        super().call_exception_handler(context)

    def run_until_complete(self, future: Generator[Any, None, _T] | Awaitable[_T]) -> _T:
        try:
            result = super().run_until_complete(future)
        except BaseException:
            error = self._take_callback_error()
            if error is not None:
                raise error from None
            raise
        error = self._take_callback_error()
        if error is not None:
            raise error
        return result

    def _take_callback_error(self) -> Exception | None:
        error, self._callback_error = self._callback_error, None
        return error

    def time(self) -> float:
        return self._now

    # BaseEventLoop._run_once runs every timer with `when < time() + _clock_resolution`. Making
    # the resolution the distance to the next float runs exactly those with `when <= now`.
    @property
    def _clock_resolution(self) -> float:
        return math.ulp(self._now)

    @_clock_resolution.setter
    def _clock_resolution(self, value: float) -> None:
        pass  # BaseEventLoop.__init__ assigns the real clock's resolution; it does not apply here.

    def _advance(self, timeout: float) -> None:
        # _run_once computed timeout = when - now for the earliest timer (capped at a day); land
        # on that timer's own `when` rather than on now + timeout, which may round differently.
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        if scheduled:
            when = scheduled[0].when()
            if when - self._now <= timeout:
                self._now = max(self._now, when)
                return
        self._now += timeout

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()  # type: ignore[attr-defined]
        timer = _FifoTimerHandle(when, callback, args, self, context, next(self._timer_seq))
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer


def new_loop() -> VirtualTimeLoop:
    return VirtualTimeLoop()


def run(
    coro: Coroutine[Any, Any, _T],
    *,
    loop: VirtualTimeLoop | None = None,
    timeout: float | None = None,
) -> _T:
    """Run coro to completion in virtual time and return its result.

    `timeout` is in virtual seconds; when it expires the coroutine is cancelled and TimeoutError
    raised. With `loop=None` a fresh loop is made and closed afterwards (tasks still pending are
    cancelled first); a loop passed in is left open so a test can keep using it.
    """
    own = loop is None
    the_loop = new_loop() if loop is None else loop
    try:
        if timeout is None:
            return the_loop.run_until_complete(coro)
        return the_loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        if own:
            close_loop(the_loop)


def close_loop(loop: VirtualTimeLoop) -> None:
    """Cancel whatever still runs on loop, let it unwind, shut down async generators, close."""
    if loop.is_closed():
        return
    try:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            try:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            except SimulationStalled:
                pass  # a task that swallows cancellation and waits again: nothing more to do
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
