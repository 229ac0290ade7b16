"""The challenge-ACK side channel of CVE-2016-5696, closed (RFC 5961 section 7, done as Linux now
does it): an off-path attacker sends one spoofed in-window RST "from" a guessed victim (a hit
makes the host send the victim a challenge ACK, which uses up one of the host-wide budget), then
counts the challenge ACKs its own connections get in the same second. With a fixed shared budget
the count was one lower on a hit; now it does not tell hits from misses."""

from __future__ import annotations

from stack import seq
from stack.tcp.state import State

from .harness import PLAIN, Peer, established_passive

LIMIT = 100  # challenge ACKs a second, host-wide: each second's budget is drawn from [50, 150)
ATTACKER_IP = "10.0.0.3"


def setup(own: int) -> tuple[Peer, list[Peer]]:
    config = PLAIN.with_(challenge_ack_limit=LIMIT, syn_backlog=1024)
    victim = established_passive(config=config, backlog=1024)
    mine = []
    for i in range(own):
        p = Peer(victim.host, victim.sink, iss=victim.iss, irs=10_000 * i, remote_ip=ATTACKER_IP,
                 remote_port=20_000 + i)
        p.send("S")
        p.segments()
        p.send(".")
        assert victim.listener is not None
        p.conn = victim.listener.accept()
        assert p.conn is not None and p.conn.state is State.ESTABLISHED
        mine.append(p)
    return victim, mine


def trial(victim: Peer, mine: list[Peer], now: float, hit: bool, each: int = 1) -> int:
    """One second of the attack: the spoofed probe, then what the attacker can count after
    sending `each` in-window RSTs on each of its own connections."""
    victim.now = now
    offset = 100 if hit else 1_000_000  # in the victim's window, or far outside it
    victim.send("R", seq=seq.add(victim.seq, offset))
    assert len(victim.segments()) == (1 if hit else 0)  # the victim's challenge ACK, unseen
    count = 0
    for p in mine:
        p.now = now
        for _ in range(each):
            p.send("R", seq=seq.add(p.seq, 5))  # in-window on the attacker's own connection
        count += len(p.segments())
    return count


def test_one_connection_counts_the_same_on_hit_and_miss() -> None:
    """The original attack: 2 * LIMIT RSTs on one connection counted LIMIT challenge ACKs on a
    miss and LIMIT - 1 on a hit. Per connection, at most one challenge ACK per 500 ms: the
    attacker's own connection sees one however many it provokes."""
    victim, mine = setup(1)
    counts: dict[bool, list[int]] = {False: [], True: []}
    for i in range(40):
        hit = i % 2 == 1
        counts[hit].append(trial(victim, mine, 10.0 + i, hit, each=2 * LIMIT))
    assert counts[False] == counts[True] == [1] * 20


def test_many_connections_cannot_tell_hits_from_misses() -> None:
    """With more own connections than the budget, the attacker counts the budget itself: it is
    drawn anew every second, so one challenge ACK more or less does not show."""
    victim, mine = setup(160)
    counts: dict[bool, list[int]] = {False: [], True: []}
    for i in range(120):
        hit = i % 2 == 1
        counts[hit].append(trial(victim, mine, 10.0 + i, hit))
    every = counts[False] + counts[True]
    assert max(every) < LIMIT * 3 // 2  # the host-wide bound: under 1.5 times the limit
    assert min(every) >= LIMIT // 2 - 1
    # The best an attacker can do with these counts: guess "hit" below a threshold.
    def accuracy(threshold: int) -> float:
        right = sum(c < threshold for c in counts[True]) + sum(c >= threshold for c in counts[False])
        return right / len(every)

    best = max(accuracy(t) for t in range(LIMIT // 2 - 1, LIMIT * 3 // 2 + 1))
    assert best < 0.7, best  # with a fixed budget it was 1.0
    assert len(set(counts[False])) > 20 and len(set(counts[True])) > 20
