"""VirtualTimeLoop: asyncio on a virtual clock that jumps to the next timer and detects deadlocks."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from stack.sim.loop import SimulationStalled, VirtualTimeLoop, close_loop, new_loop, run


@pytest.fixture
def loop() -> Iterator[VirtualTimeLoop]:
    lp = new_loop()
    yield lp
    close_loop(lp)


def test_clock_starts_at_zero(loop: VirtualTimeLoop) -> None:
    assert loop.time() == 0.0


def test_an_hour_of_sleep_is_instant_and_exact(loop: VirtualTimeLoop) -> None:
    async def main() -> float:
        await asyncio.sleep(3600)
        return asyncio.get_running_loop().time()

    assert run(main(), loop=loop) == 3600.0
    assert loop.time() == 3600.0


def test_call_at_callbacks_run_in_time_order_at_their_exact_times(loop: VirtualTimeLoop) -> None:
    rng = random.Random(7)
    times = [rng.uniform(0, 100) for _ in range(500)]
    fired: list[tuple[float, float]] = []

    def record(when: float) -> None:
        fired.append((when, loop.time()))

    for t in times:
        loop.call_at(t, record, t)
    done = loop.create_future()
    loop.call_at(200.0, done.set_result, None)
    loop.run_until_complete(done)
    assert [t for t, _ in fired] == sorted(times)
    assert all(when == now for when, now in fired)


def test_equal_times_run_in_scheduling_order(loop: VirtualTimeLoop) -> None:
    fired: list[int] = []
    for i in range(100):
        loop.call_at(1.0 if i % 2 else 0.5, fired.append, i)
    done = loop.create_future()
    loop.call_at(2.0, done.set_result, None)
    loop.run_until_complete(done)
    assert fired == list(range(0, 100, 2)) + list(range(1, 100, 2))


def test_timer_a_hair_later_does_not_fire_early(loop: VirtualTimeLoop) -> None:
    # The stock loop runs timers within the monotonic clock's resolution early; this one must not.
    seen: list[float] = []
    loop.call_at(1.0, lambda: seen.append(loop.time()))
    loop.call_at(1.0 + 1e-12, lambda: seen.append(loop.time()))
    done = loop.create_future()
    loop.call_at(2.0, done.set_result, None)
    loop.run_until_complete(done)
    assert seen == [1.0, 1.0 + 1e-12]


def test_call_later_and_cancel(loop: VirtualTimeLoop) -> None:
    fired: list[str] = []
    h = loop.call_later(5, fired.append, "cancelled")
    loop.call_later(3, fired.append, "kept")
    h.cancel()

    async def main() -> None:
        await asyncio.sleep(10)

    run(main(), loop=loop)
    assert fired == ["kept"]


def test_wait_for_times_out_at_exact_virtual_time(loop: VirtualTimeLoop) -> None:
    async def main() -> float:
        lp = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(100), 2.5)
        assert lp.time() == 2.5
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.25):
                await asyncio.Event().wait()
        return lp.time()

    assert run(main(), loop=loop) == 3.75


def test_run_timeout_is_virtual() -> None:
    lp = new_loop()
    try:
        with pytest.raises(TimeoutError):
            run(asyncio.sleep(1000), loop=lp, timeout=30.0)
        assert lp.time() == 30.0
    finally:
        close_loop(lp)


def test_run_timeout_also_ends_a_wait_that_would_stall() -> None:
    with pytest.raises(TimeoutError):
        run(asyncio.Event().wait(), timeout=1.0)


def test_gather_event_queue(loop: VirtualTimeLoop) -> None:
    async def producer(q: asyncio.Queue[int], ev: asyncio.Event) -> None:
        for i in range(5):
            await asyncio.sleep(1)
            await q.put(i)
        ev.set()

    async def consumer(q: asyncio.Queue[int], ev: asyncio.Event) -> list[tuple[int, float]]:
        got: list[tuple[int, float]] = []
        lp = asyncio.get_running_loop()
        while len(got) < 5:
            got.append((await q.get(), lp.time()))
        await ev.wait()
        return got

    async def main() -> list[tuple[int, float]]:
        q: asyncio.Queue[int] = asyncio.Queue()
        ev = asyncio.Event()
        _, got = await asyncio.gather(producer(q, ev), consumer(q, ev))
        return got

    assert run(main(), loop=loop) == [(i, float(i + 1)) for i in range(5)]


def test_tasks_interleave_by_virtual_time(loop: VirtualTimeLoop) -> None:
    log: list[tuple[str, float]] = []

    async def ticker(name: str, period: float, n: int) -> None:
        lp = asyncio.get_running_loop()
        for _ in range(n):
            await asyncio.sleep(period)
            log.append((name, lp.time()))

    async def main() -> None:
        await asyncio.gather(ticker("a", 2.0, 3), ticker("b", 3.0, 2))

    run(main(), loop=loop)
    # At 6.0 both wake; b's timer was scheduled first (at 3.0, a's at 4.0), so b runs first.
    assert log == [("a", 2.0), ("b", 3.0), ("a", 4.0), ("b", 6.0), ("a", 6.0)]


def test_stall_is_detected_with_a_clear_message(loop: VirtualTimeLoop) -> None:
    async def main() -> None:
        await asyncio.sleep(5)
        await loop.create_future()  # nobody will ever complete it

    with pytest.raises(SimulationStalled, match="nothing scheduled"):
        run(main(), loop=loop)
    assert loop.time() == 5.0


def test_stall_in_owned_loop_is_cleaned_up() -> None:
    async def main() -> None:
        await asyncio.Queue().get()

    with pytest.raises(SimulationStalled):
        run(main())


def test_loop_is_usable_after_a_stall(loop: VirtualTimeLoop) -> None:
    with pytest.raises(SimulationStalled):
        run(asyncio.Event().wait(), loop=loop)

    async def main() -> float:
        await asyncio.sleep(1)
        return asyncio.get_running_loop().time()

    assert run(main(), loop=loop) == 1.0


def test_call_soon_threadsafe_still_wakes_the_loop(loop: VirtualTimeLoop) -> None:
    async def main() -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        loop.call_soon_threadsafe(fut.set_result, 42)
        return await fut

    assert run(main(), loop=loop) == 42


def test_two_loops_are_independent() -> None:
    a, b = new_loop(), new_loop()
    try:
        run(asyncio.sleep(10), loop=a)
        assert a.time() == 10.0
        assert b.time() == 0.0
        run(asyncio.sleep(3), loop=b)
        assert (a.time(), b.time()) == (10.0, 3.0)
    finally:
        close_loop(a)
        close_loop(b)


def test_run_closes_the_loop_it_made_and_returns_the_result() -> None:
    seen: list[VirtualTimeLoop] = []

    async def main() -> str:
        lp = asyncio.get_running_loop()
        assert isinstance(lp, VirtualTimeLoop)
        seen.append(lp)
        await asyncio.sleep(1)
        return "ok"

    assert run(main()) == "ok"
    assert seen[0].is_closed()


def test_pending_tasks_are_cancelled_when_an_owned_loop_closes() -> None:
    cancelled: list[bool] = []

    async def background() -> None:
        try:
            await asyncio.sleep(1e9)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        asyncio.get_running_loop().create_task(background())
        await asyncio.sleep(1)

    run(main())
    assert cancelled == [True]


def test_a_failing_callback_stops_the_run_with_its_exception(loop: VirtualTimeLoop) -> None:
    def boom() -> None:
        raise ZeroDivisionError("in a callback")

    loop.call_at(2.0, boom)
    with pytest.raises(ZeroDivisionError, match="in a callback"):
        run(asyncio.sleep(10), loop=loop)
    assert loop.time() == 2.0
    # The loop carries on afterwards; the interrupted sleep is still there to finish.
    run(asyncio.sleep(1), loop=loop)
    assert loop.time() == 3.0


def test_task_exceptions_still_reach_the_awaiter(loop: VirtualTimeLoop) -> None:
    async def failing() -> None:
        await asyncio.sleep(1)
        raise KeyError("task")

    async def main() -> str:
        try:
            await asyncio.get_running_loop().create_task(failing())
        except KeyError:
            return "caught"
        return "not raised"

    assert run(main(), loop=loop) == "caught"
