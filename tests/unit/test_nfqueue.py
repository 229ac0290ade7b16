"""The NFQUEUE client's messages and its verdict batching, without root or a kernel queue."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from lab.kernel.impair import nfqueue
from lab.kernel.impair.nfqueue import NF_ACCEPT, NF_DROP, VerdictPlan


def _decode(datagram: bytes) -> list[tuple[str, int, int, bytes | None]]:
    """(kind, verdict, id, payload) of each verdict message in a datagram."""
    out = []
    for kind, _seq, body in nfqueue.parse_messages(datagram):
        assert kind >> 8 == nfqueue.NFNL_SUBSYS_QUEUE
        name = {nfqueue.NFQNL_MSG_VERDICT: "one", nfqueue.NFQNL_MSG_VERDICT_BATCH: "upto"}[kind & 0xFF]
        family, version, queue = struct.unpack_from("!BBH", body)
        assert (family, version, queue) == (0, 0, 7)
        attrs = nfqueue.parse_attrs(body, 4)
        verdict, packet_id = struct.unpack("!II", attrs[nfqueue.NFQA_VERDICT_HDR])
        payload = attrs.get(nfqueue.NFQA_PAYLOAD)
        out.append((name, verdict, packet_id, bytes(payload) if payload is not None else None))
    return out


def _plan(*ids: int) -> VerdictPlan:
    plan = VerdictPlan(7)
    for packet_id in ids:
        plan.received(packet_id)
    return plan


Verdict = tuple[str, int, int, bytes | None]


def _send(plan: VerdictPlan, verdicts: list[tuple[int, int, bytes | None]]) -> list[Verdict]:
    return _decode(b"".join(nfqueue.chunks(plan.messages(verdicts))))


def test_oldest_packets_accepted_together_take_one_batch_message() -> None:
    plan = _plan(1, 2, 3, 4, 5)
    assert _send(plan, [(1, NF_ACCEPT, None), (2, NF_ACCEPT, None), (3, NF_ACCEPT, None)]) == [
        ("upto", NF_ACCEPT, 3, None)]
    assert _send(plan, [(4, NF_ACCEPT, None), (5, NF_ACCEPT, None)]) == [("upto", NF_ACCEPT, 5, None)]


def test_a_packet_still_held_in_front_prevents_the_batch() -> None:
    """Jitter released 2 and 3 before 1: a batch up to 3 would release 1 too early."""
    plan = _plan(1, 2, 3, 4)
    assert _send(plan, [(2, NF_ACCEPT, None), (3, NF_ACCEPT, None)]) == [
        ("one", NF_ACCEPT, 2, None), ("one", NF_ACCEPT, 3, None)]
    # Once 1 goes, the already-settled 2 and 3 no longer stand in the way of 4.
    assert _send(plan, [(1, NF_ACCEPT, None), (4, NF_ACCEPT, None)]) == [("upto", NF_ACCEPT, 4, None)]


def test_drops_and_changed_payloads_get_their_own_messages() -> None:
    plan = _plan(10, 11, 12, 13)
    sent = _send(plan, [(10, NF_DROP, None), (11, NF_ACCEPT, b"\x45abc"), (12, NF_ACCEPT, None)])
    assert ("one", NF_DROP, 10, None) in sent
    assert ("one", NF_ACCEPT, 11, b"\x45abc") in sent
    assert ("one", NF_ACCEPT, 12, None) in sent and len(sent) == 3
    assert _send(plan, [(13, NF_ACCEPT, None)]) == [("upto", NF_ACCEPT, 13, None)]


def test_chunks_split_long_verdict_trains() -> None:
    plan = _plan(*range(1, 1001))
    msgs = plan.messages([(i, NF_DROP, None) for i in range(1, 1001)])
    datagrams = list(nfqueue.chunks(msgs, limit=4096))
    assert all(len(d) <= 4096 for d in datagrams) and len(datagrams) > 1
    assert [v[2] for d in datagrams for v in _decode(d)] == list(range(1, 1001))


def test_parse_packet_reads_id_length_and_gso_flags() -> None:
    header = nfqueue.attr(nfqueue.NFQA_PACKET_HDR, struct.pack("!IHB", 42, 0x0800, 0))
    attrs = (header + nfqueue.attr(nfqueue.NFQA_PAYLOAD, b"\x45" + bytes(63))
             + nfqueue.attr(nfqueue.NFQA_CAP_LEN, struct.pack("!I", 65226))
             + nfqueue.attr(nfqueue.NFQA_SKB_INFO, struct.pack("!I", nfqueue.NFQA_SKB_GSO | 1)))
    datagram = nfqueue.message(nfqueue.NFQNL_MSG_PACKET, 7, attrs)
    [(_kind, _seq, body)] = list(nfqueue.parse_messages(datagram))
    packet = nfqueue.parse_packet(body)
    assert packet is not None
    assert (packet.id, packet.hw_protocol, packet.length, len(packet.payload)) == (42, 0x0800, 65226, 64)
    assert packet.gso and packet.csum_not_ready


def test_malformed_messages_are_skipped_not_fatal() -> None:
    assert nfqueue.parse_packet(memoryview(bytes(4))) is None  # no packet header
    truncated = nfqueue.message(nfqueue.NFQNL_MSG_PACKET, 7, b"")[:-2] + struct.pack("=I", 999)
    assert list(nfqueue.parse_messages(truncated[:10])) == []


def test_config_sets_or_clears_gso_through_its_mask() -> None:
    for gso in (True, False):
        [(_kind, seq, body)] = list(nfqueue.parse_messages(nfqueue.config_message(7, 128, 4096, gso, seq=5)))
        attrs = nfqueue.parse_attrs(body, 4)
        assert seq == 5
        assert struct.unpack("!I", attrs[nfqueue.NFQA_CFG_MASK])[0] == nfqueue.NFQA_CFG_F_GSO
        assert struct.unpack("!I", attrs[nfqueue.NFQA_CFG_FLAGS])[0] == (nfqueue.NFQA_CFG_F_GSO if gso else 0)
        assert struct.unpack("!IB", attrs[nfqueue.NFQA_CFG_PARAMS]) == (128, nfqueue.NFQNL_COPY_PACKET)
        assert struct.unpack("!I", attrs[nfqueue.NFQA_CFG_QUEUE_MAXLEN])[0] == 4096


# -- the emulator's verdict flow, with a stand-in for the kernel queue (no root) -----------------
WALL = 1_700_000_000.0  # wall clock minus monotonic clock, in these tests


class _FakeQueue:
    """Records the datagrams the emulator would send, built by the real VerdictPlan."""

    def __init__(self) -> None:
        self.plan = VerdictPlan(7)
        self.datagrams: list[bytes] = []

    def arrive(self, emulator: Any, packet_id: int, now: float, stamp: float | None = None) -> None:
        """Packet `packet_id` read at `now` (monotonic), stamped by the kernel at `stamp` (also
        monotonic here; the wall clock runs WALL seconds ahead), as the emulator's loop admits it."""
        from lab.kernel.impair.pacer import arrival

        self.plan.received(packet_id)
        wall = None if stamp is None else stamp + WALL
        packet = nfqueue.QueuedPacket(packet_id, 0x0800, b"\x45" + bytes(59), 1500, timestamp=wall)
        emulator.on_packet(packet, arrival(packet.timestamp, WALL, now))

    def prepare(self, verdicts: list[tuple[int, int, bytes | None]]) -> list[bytes]:
        return list(nfqueue.chunks(self.plan.messages(verdicts)))

    def send(self, datagrams: list[bytes]) -> int:
        self.datagrams += datagrams
        return len(datagrams)

    def take(self) -> list[list[Verdict]]:
        out = [_decode(d) for d in self.datagrams]
        self.datagrams = []
        return out


def _emulator(tmp_path: Path, **profile: str) -> Any:
    from lab.kernel.impair.emulator import Emulator, Hook
    from lab.model.impairment import Impairment

    return Emulator("ns-a", "eth0", 7, 1, Impairment.model_validate(profile), tmp_path,
                    Hook("PREROUTING", "ns-b", "eth0"))


def test_a_delay_only_link_releases_each_wakeups_packets_in_one_batch_verdict(tmp_path: Path) -> None:
    emulator, queue = _emulator(tmp_path, delay="10ms"), _FakeQueue()
    for packet_id in range(1, 6):  # one packet per millisecond
        queue.arrive(emulator, packet_id, now=packet_id / 1000)
    emulator.flush(queue)
    assert queue.take() == []  # nothing is due yet
    emulator.release_due(0.0135)  # due at 11, 12, 13 ms
    emulator.flush(queue)
    assert queue.take() == [[("upto", NF_ACCEPT, 3, None)]]  # one sendmsg, one message
    emulator.release_due(0.020)
    emulator.flush(queue)
    assert queue.take() == [[("upto", NF_ACCEPT, 5, None)]]
    assert emulator.sendmsgs == 2 and emulator.schedule.held == 0


def test_losses_are_dropped_at_once_and_every_packet_gets_one_verdict(tmp_path: Path) -> None:
    emulator, queue = _emulator(tmp_path, delay="5ms", loss="30%"), _FakeQueue()
    for packet_id in range(1, 201):
        queue.arrive(emulator, packet_id, now=packet_id / 1e5)
    emulator.flush(queue)
    drops = [v for datagram in queue.take() for v in datagram]
    assert drops and all(kind == "one" and verdict == NF_DROP for kind, verdict, _, _ in drops)
    emulator.release_due(1.0)
    emulator.flush(queue)
    [accepts] = queue.take()
    assert accepts == [("upto", NF_ACCEPT, 200, None)]  # the drops no longer stand in the way
    assert len(drops) == emulator.schedule.counters.lost


def test_the_delay_counts_from_the_kernel_receive_stamp(tmp_path: Path) -> None:
    """A packet stamped 3 ms before the emulator read it leaves 3 ms earlier than one read at once."""
    emulator, queue = _emulator(tmp_path, delay="10ms"), _FakeQueue()
    queue.arrive(emulator, 1, now=0.005, stamp=0.002)
    emulator.release_due(0.0119)
    emulator.flush(queue)
    assert queue.take() == []
    emulator.release_due(0.0121)
    emulator.flush(queue)
    assert queue.take() == [[("upto", NF_ACCEPT, 1, None)]]
