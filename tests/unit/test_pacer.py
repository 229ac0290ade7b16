"""Releasing on time (lab.kernel.impair.pacer): the emulator's wake-ups on a simulated clock whose
sleeps come back late, as a real machine's do. No root, no real time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lab.kernel.impair import nfqueue
from lab.kernel.impair.pacer import SPIN_LIMIT, SPIN_SHARE, Pacer

OVERSLEEP = 150e-6  # how late every simulated timed sleep returns (a VM measured 35 to 210 µs)
WAKE = 30e-6  # how long after a packet's arrival a sleeping select returns
TICK = 1e-6  # the simulated time each clock read takes (the Python around it is not free)
READ_COST = 10e-6  # the simulated time reading one packet takes
WALL = 1_700_000_000.0  # wall clock minus monotonic clock
FD = 3


class SimClock:
    """A monotonic clock, a wall clock and a select() that only move simulated time. Sleeps end
    OVERSLEEP late, or WAKE after the next packet arrival when that comes first."""

    def __init__(self) -> None:
        self.now = 100.0
        self.arrivals: list[float] = []  # when packets reach the queue, in order
        self.timeouts: list[float] = []  # every timeout asked of select

    def clock(self) -> float:
        self.now += TICK
        return self.now

    def wall(self) -> float:
        return self.now + WALL

    def select(self, rlist: Sequence[int], wlist: Sequence[int], xlist: Sequence[int],
               timeout: float) -> tuple[list[int], list[int], list[int]]:
        self.timeouts.append(timeout)
        if FD in rlist and self.arrivals and self.arrivals[0] <= self.now + timeout:
            self.now = max(self.now, self.arrivals[0] + WAKE)
            return [FD], [], []
        if timeout > 0:
            self.now += timeout + OVERSLEEP
        return [], [], []


class SimQueue:
    """The kernel queue: hands out the packets that have arrived, stamped with their arrival as
    the kernel stamps them; notes when each verdict reaches the kernel."""

    def __init__(self, sim: SimClock) -> None:
        self.sim = sim
        self.plan = nfqueue.VerdictPlan(7)
        self.arrived_at: dict[int, float] = {}  # packet id -> when it reached the queue
        self.sent_at: dict[int, float] = {}  # packet id -> when its verdict went to the kernel

    def receive(self, limit: int = 1024, until: float = math.inf) -> list[nfqueue.QueuedPacket]:
        """As NfQueue.receive: what has arrived, up to `limit`, stopping once `until` has come."""
        out = []
        while self.sim.arrivals and self.sim.arrivals[0] <= self.sim.now and len(out) < limit:
            packet_id = len(self.arrived_at) + 1
            self.arrived_at[packet_id] = self.sim.arrivals.pop(0)
            self.plan.received(packet_id)
            out.append(nfqueue.QueuedPacket(packet_id, 0x0800, b"\x45" + bytes(59), 1500,
                                            timestamp=self.arrived_at[packet_id] + WALL))
            self.sim.now += READ_COST
            if self.sim.now >= until:
                break
        return out

    def prepare(self, verdicts: list[tuple[int, int, bytes | None]]) -> list[bytes]:
        return list(nfqueue.chunks(self.plan.messages(verdicts)))

    def send(self, datagrams: list[bytes]) -> int:
        for datagram in datagrams:
            for _kind, _seq, body in nfqueue.parse_messages(datagram):
                verdict = nfqueue.parse_attrs(body, 4)[nfqueue.NFQA_VERDICT_HDR]
                last = int.from_bytes(verdict[4:8], "big")
                for packet_id in range(1, last + 1):  # a batch verdict settles every id up to it
                    self.sent_at.setdefault(packet_id, self.sim.now)
        return len(datagrams)

    def lateness(self, delay: float) -> list[float]:
        """How long after its due time (arrival + delay) each packet's verdict was sent."""
        return [self.sent_at[i] - self.arrived_at[i] - delay for i in sorted(self.sent_at)]


def _emulator(tmp_path: Path, delay: str, arrivals: list[float]) -> tuple[SimClock, SimQueue, Any]:
    from lab.kernel.impair.emulator import Emulator, Hook
    from lab.model.impairment import Impairment

    sim = SimClock()
    sim.arrivals = [sim.now + t for t in arrivals]
    emulator = Emulator("ns-a", "eth0", 7, 1, Impairment.model_validate({"delay": delay}), tmp_path,
                        Hook("PREROUTING", "ns-b", "eth0"))
    emulator.pacer = Pacer(sim.clock, sim.select, sim.wall)
    return sim, SimQueue(sim), emulator


def _run(tmp_path: Path, delay: str, arrivals: list[float]) -> tuple[SimQueue, Any]:
    """Wake-ups until every packet has arrived and left."""
    sim, queue, emulator = _emulator(tmp_path, delay, arrivals)
    while sim.arrivals or emulator.heap:
        emulator.step(queue, [FD], limit=sim.now + 0.5)
    return queue, emulator


def test_the_sleep_asked_of_select_is_not_rounded_to_a_millisecond() -> None:
    """epoll would sleep a 4.3 ms wait for 5 ms; select is asked for 4.3 ms less the margin."""
    sim = SimClock()
    pacer = Pacer(sim.clock, sim.select, sim.wall)
    start = sim.now
    pacer.wait([FD], release=start + 0.0043, limit=start + 0.5)
    assert sim.timeouts == [pytest.approx(0.0043 - pacer.margin - TICK, abs=1e-9)]
    assert pacer.timeout(None, start + 0.0123456, start) == pytest.approx(0.0123456)  # no release: the limit


def test_releases_leave_on_time_though_every_sleep_comes_back_late(tmp_path: Path) -> None:
    """One packet every 7 ms over a 4.3 ms link: each release needs a sleep that comes back
    OVERSLEEP late. Once the pacer has learned that, every verdict reaches the kernel within a
    few microseconds of its due time, and never before it."""
    queue, emulator = _run(tmp_path, "4.3ms", [i * 0.007 for i in range(60)])
    late = queue.lateness(0.0043)
    assert len(late) == 60 and min(late) >= 0  # never early
    assert late[0] < OVERSLEEP  # even before learning, the first margin helps
    assert max(late[20:]) < 10e-6  # on time (sleeping until the due time itself: OVERSLEEP late)
    assert emulator.pacer.spun < 60 * SPIN_LIMIT  # any spin is only the last stretch of each


def test_a_dense_stream_is_released_no_later_than_a_plain_sleep_would(tmp_path: Path) -> None:
    """Packets 50 µs apart after a burst of five, each due 1 ms after its arrival: too dense to
    spin before each (see the next test), so some leave up to one sleep's lateness late, never early."""
    queue, _ = _run(tmp_path, "1ms", [0.0] * 5 + [i * 50e-6 for i in range(1, 40)])
    late = queue.lateness(0.001)
    assert len(late) == 44 and min(late) >= 0 and max(late) < OVERSLEEP + 10e-6


def test_a_due_release_does_not_wait_for_a_long_read(tmp_path: Path) -> None:
    """Packet 1 is due 1 ms after it came; 500 packets (5 ms of reading) arrive just before that.
    Reading stops for the release, which leaves on time; the rest are read after it."""
    queue, _ = _run(tmp_path, "1ms", [0.0] + [0.0009] * 500)
    late = queue.lateness(0.001)
    assert len(late) == 501 and late[0] < 20e-6


def test_spinning_takes_at_most_a_tenth_of_the_time_when_releases_are_dense(tmp_path: Path) -> None:
    """A packet every 120 µs (100 Mbit/s of full-sized frames): 2,000 releases, each too close to
    the last to sleep well before it. Spinning to each would keep a core busy; the spin is rationed
    to SPIN_SHARE of the time, the rest slept (and a little late, as a plain sleep is)."""
    queue, emulator = _run(tmp_path, "5ms", [i * 120e-6 for i in range(2000)])
    assert len(queue.sent_at) == 2000 and min(queue.lateness(0.005)) >= 0
    assert emulator.pacer.spun <= SPIN_SHARE * 2000 * 120e-6


def test_the_wait_beyond_the_spin_limit_is_slept_not_spun() -> None:
    """After a stall taught a large margin, the early wake-up sleeps again, spinning at most
    SPIN_LIMIT before the release."""
    sim = SimClock()
    pacer = Pacer(sim.clock, sim.select, sim.wall)
    pacer.margin = 0.001
    release = sim.now + 0.0015
    pacer.wait([], release, limit=sim.now + 0.5)  # wakes 1 ms early, plus OVERSLEEP
    sim.timeouts.clear()
    pacer.hold(release)
    assert len(sim.timeouts) == 1 and sim.timeouts[0] > 0.0007  # the rest of the way is slept
    assert sim.now >= release and pacer.spun <= SPIN_LIMIT


def test_nothing_is_spun_while_no_release_is_near(tmp_path: Path) -> None:
    sim, queue, emulator = _emulator(tmp_path, "20ms", [0.001])
    emulator.step(queue, [FD], limit=sim.now + 0.5)  # the packet arrives
    emulator.step(queue, [FD], limit=sim.now + 0.005)  # housekeeping before its release
    assert sim.timeouts[-1] == pytest.approx(0.005 - TICK)
    assert emulator.pacer.spun == 0 and queue.sent_at == {}
