"""ByteQueue, the send and receive buffers' octets, held to a plain bytearray call for call."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stack.tcp.bytequeue import ByteQueue

op = st.one_of(
    st.tuples(st.just("append"), st.binary(max_size=300), st.sampled_from(["bytes", "bytearray", "view"])),
    st.tuples(st.just("read"), st.integers(0, 1200), st.integers(0, 1200)),
    st.tuples(st.just("drop"), st.integers(0, 700)),
    st.tuples(st.just("take"), st.integers(0, 700)),
    st.tuples(st.just("clear")),
)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.lists(op, max_size=150))
def test_a_byte_queue_behaves_as_a_bytearray(ops: list[tuple[object, ...]]) -> None:
    q, ref = ByteQueue(), bytearray()
    for o in ops:
        if o[0] == "append":
            data = o[1]
            assert isinstance(data, bytes)
            q.append({"bytes": data, "bytearray": bytearray(data), "view": memoryview(data)}[str(o[2])])
            ref += data
        elif o[0] == "read":
            off, n = int(o[1]), int(o[2])  # type: ignore[call-overload]
            assert q.read(off, n) == bytes(ref[off : off + n])
        elif o[0] == "drop":
            q.drop(int(o[1]))  # type: ignore[call-overload]
            del ref[: int(o[1])]  # type: ignore[call-overload]
        elif o[0] == "take":
            n = int(o[1])  # type: ignore[call-overload]
            assert q.take(n) == bytes(ref[:n])
            del ref[:n]
        else:
            q.clear()
            ref.clear()
        assert len(q) == len(ref) and bool(q) == bool(ref) and bytes(q) == bytes(ref)


def test_appended_data_is_kept_as_it_was_when_the_caller_changes_its_buffer() -> None:
    q, buf = ByteQueue(), bytearray(b"abc")
    q.append(buf)
    buf[0] = ord("z")
    assert bytes(q) == b"abc"


def test_many_small_chunks_dropped_from_the_front_keep_reads_right() -> None:
    """Past the compaction of dead chunks, positions still count from the front."""
    q = ByteQueue()
    for i in range(1000):
        q.append(bytes([i % 251]) * 7)
    q.drop(7 * 900 + 3)
    assert len(q) == 7 * 100 - 3
    assert q.read(0, 4) == bytes([900 % 251]) * 4 and q.read(4, 7) == bytes([901 % 251]) * 7
