"""The transition table (stack.tcp.transitions) against RFC 9293 figure 5, and proof that the
segment-level tests reach every entry the stack takes. This file sorts last in tests/tcp: the
coverage check reads what the earlier tests recorded (tests/tcp/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.tcp.state import State
from stack.tcp.transitions import TRANSITIONS, UNTAKEN, Event, TransitionError, next_state
from tests.tcp.conftest import TAKEN

# RFC 9293 figure 5, edge by edge as drawn (from state, label, to state), with note 2's edge.
FIGURE_5 = [
    ("CLOSED", "passive OPEN", "LISTEN"),
    ("CLOSED", "active OPEN", "SYN_SENT"),
    ("LISTEN", "CLOSE", "CLOSED"),
    ("LISTEN", "rcv SYN", "SYN_RECEIVED"),
    ("LISTEN", "SEND", "SYN_SENT"),
    ("SYN_SENT", "CLOSE", "CLOSED"),
    ("SYN_SENT", "rcv SYN", "SYN_RECEIVED"),
    ("SYN_SENT", "rcv SYN,ACK", "ESTABLISHED"),
    ("SYN_RECEIVED", "rcv RST", "LISTEN"),  # note 1: after a passive OPEN
    ("SYN_RECEIVED", "rcv ACK of SYN", "ESTABLISHED"),
    ("SYN_RECEIVED", "CLOSE", "FIN_WAIT_1"),
    ("ESTABLISHED", "CLOSE", "FIN_WAIT_1"),
    ("ESTABLISHED", "rcv FIN", "CLOSE_WAIT"),
    ("FIN_WAIT_1", "rcv ACK of FIN", "FIN_WAIT_2"),
    ("FIN_WAIT_1", "rcv FIN", "CLOSING"),
    ("FIN_WAIT_1", "rcv FIN, ACK of FIN", "TIME_WAIT"),  # note 2
    ("FIN_WAIT_2", "rcv FIN", "TIME_WAIT"),
    ("CLOSE_WAIT", "CLOSE", "LAST_ACK"),
    ("CLOSING", "rcv ACK of FIN", "TIME_WAIT"),
    ("LAST_ACK", "rcv ACK of FIN", "CLOSED"),
    ("TIME_WAIT", "timeout 2MSL", "CLOSED"),
]


@pytest.mark.parametrize(("old", "label", "new"), FIGURE_5)
def test_every_edge_of_rfc9293_figure_5_is_in_the_table(old: str, label: str, new: str) -> None:
    assert TRANSITIONS[(State(old), Event(label))] is State(new)


def test_the_table_adds_abort_rst_and_timeouts_beyond_the_figure() -> None:
    figure = {(State(o), Event(e)) for o, e, _ in FIGURE_5}
    extra = {pair: new for pair, new in TRANSITIONS.items() if pair not in figure}
    open_states = set(State) - {State.CLOSED, State.LISTEN}
    # ABORT (RFC 9293 3.10.5) closes from every state with a TCB.
    assert {st for (st, ev), new in extra.items() if ev is Event.ABORT and new is State.CLOSED} == open_states
    # An acceptable RST closes every synchronized state and SYN_SENT (3.10.7.3, 3.10.7.4).
    assert {st for (st, ev) in extra if ev is Event.RCV_RST} == open_states - {State.SYN_RECEIVED}
    assert extra[(State.SYN_RECEIVED, Event.RCV_RST_ACTIVE_OPEN)] is State.CLOSED
    assert extra[(State.SYN_RECEIVED, Event.RCV_SYN)] is State.LISTEN  # 3.10.7.4 fourth check
    assert extra[(State.FIN_WAIT_2, Event.TIMEOUT_FIN_WAIT_2)] is State.CLOSED
    assert all(new is State.CLOSED for (_, ev), new in extra.items() if ev is Event.USER_TIMEOUT)
    assert set(UNTAKEN) <= set(TRANSITIONS)


def test_a_pair_not_in_the_table_raises() -> None:
    with pytest.raises(TransitionError, match="no transition from TIME_WAIT on 'rcv SYN,ACK'"):
        next_state(State.TIME_WAIT, Event.RCV_SYN_ACK)
    assert next_state(State.CLOSE_WAIT, Event.CLOSE) is State.LAST_ACK


def test_tests_tcp_reach_every_entry_the_stack_takes(request: pytest.FixtureRequest) -> None:
    here = Path(__file__).parent
    paths = [Path(str(item.path)) for item in request.session.items]
    selected = {p.name for p in paths if p.parent == here}
    files = {p.name for p in here.glob("test_*.py")}
    if selected != files or request.config.getoption("keyword") or request.config.getoption("markexpr"):
        pytest.skip("run the whole of tests/tcp to check the transition coverage")
    expected = set(TRANSITIONS) - set(UNTAKEN)
    missing = sorted(f"{st.value} --{ev.value}--> {TRANSITIONS[st, ev].value}" for st, ev in expected - TAKEN)
    assert missing == [], "\n".join(missing)
    # The entries declared untaken are truly never taken.
    assert not TAKEN & set(UNTAKEN)
