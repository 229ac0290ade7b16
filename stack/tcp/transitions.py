"""The connection state machine as data: (state, event) -> new state.

It copies RFC 9293 figure 5 (with its notes 1 and 2) and adds the edges the figure leaves out:
RST in every state (RFC 9293 3.10.7.4 second check, RFC 5961 3.2), ABORT (3.10.5), the user
timeout of the retransmission, persist and SYN retries (3.8.3 R2), keepalive (RFC 1122 4.2.3.6),
the FIN_WAIT_2 timeout (as Linux's tcp_fin_timeout), a SYN in a passive SYN_RECEIVED (3.10.7.4
fourth check: back to LISTEN) and a FIN in SYN_RECEIVED (eighth check). Every state change of a
connection goes through `TcpConnection._transition`, which looks the pair up here; a pair that is
not in the table is a bug in the stack and raises TransitionError.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from stack.compiled import mypyc_attr
from stack.tcp.state import State

S = State


class Event(enum.Enum):
    """What makes a connection change state, named as in RFC 9293 figure 5 where it has a name."""

    PASSIVE_OPEN = "passive OPEN"
    ACTIVE_OPEN = "active OPEN"
    SEND = "SEND"
    CLOSE = "CLOSE"
    ABORT = "ABORT"
    RCV_SYN = "rcv SYN"
    RCV_SYN_ACK = "rcv SYN,ACK"
    RCV_ACK_OF_SYN = "rcv ACK of SYN"
    RCV_FIN = "rcv FIN"
    RCV_ACK_OF_FIN = "rcv ACK of FIN"
    RCV_FIN_ACK_OF_FIN = "rcv FIN, ACK of FIN"  # figure 5 note 2: FIN_WAIT_1 straight to TIME_WAIT
    RCV_RST = "rcv RST"
    RCV_RST_ACTIVE_OPEN = "rcv RST after an active OPEN"  # note 1: SYN_RECEIVED not from LISTEN
    TIMEOUT_2MSL = "timeout 2MSL"
    TIMEOUT_FIN_WAIT_2 = "timeout FIN_WAIT_2"
    USER_TIMEOUT = "user timeout"  # retries exhausted (RFC 9293 3.8.3 R2)
    KEEPALIVE_TIMEOUT = "keepalive timeout"


E = Event

# RFC 9293 figure 5, edge by edge (the test suite writes the figure out again and checks it here).
_FIGURE_5: dict[tuple[State, Event], State] = {
    (S.CLOSED, E.PASSIVE_OPEN): S.LISTEN,
    (S.CLOSED, E.ACTIVE_OPEN): S.SYN_SENT,
    (S.LISTEN, E.CLOSE): S.CLOSED,
    (S.LISTEN, E.RCV_SYN): S.SYN_RECEIVED,
    (S.LISTEN, E.SEND): S.SYN_SENT,
    (S.SYN_SENT, E.CLOSE): S.CLOSED,
    (S.SYN_SENT, E.RCV_SYN): S.SYN_RECEIVED,
    (S.SYN_SENT, E.RCV_SYN_ACK): S.ESTABLISHED,
    (S.SYN_RECEIVED, E.RCV_RST): S.LISTEN,  # note 1: reached from LISTEN (passive OPEN)
    (S.SYN_RECEIVED, E.RCV_ACK_OF_SYN): S.ESTABLISHED,
    (S.SYN_RECEIVED, E.CLOSE): S.FIN_WAIT_1,
    (S.ESTABLISHED, E.CLOSE): S.FIN_WAIT_1,
    (S.ESTABLISHED, E.RCV_FIN): S.CLOSE_WAIT,
    (S.FIN_WAIT_1, E.RCV_ACK_OF_FIN): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, E.RCV_FIN): S.CLOSING,
    (S.FIN_WAIT_1, E.RCV_FIN_ACK_OF_FIN): S.TIME_WAIT,  # note 2
    (S.FIN_WAIT_2, E.RCV_FIN): S.TIME_WAIT,
    (S.CLOSE_WAIT, E.CLOSE): S.LAST_ACK,
    (S.CLOSING, E.RCV_ACK_OF_FIN): S.TIME_WAIT,
    (S.LAST_ACK, E.RCV_ACK_OF_FIN): S.CLOSED,
    (S.TIME_WAIT, E.TIMEOUT_2MSL): S.CLOSED,
}

_OPEN = (S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT,
         S.CLOSING, S.LAST_ACK, S.TIME_WAIT)

TRANSITIONS: dict[tuple[State, Event], State] = {
    **_FIGURE_5,
    # RFC 9293 3.10.7.4 fourth check: a SYN in a passive open's SYN_RECEIVED returns it to LISTEN.
    (S.SYN_RECEIVED, E.RCV_SYN): S.LISTEN,
    # Eighth check: SYN_RECEIVED and ESTABLISHED enter CLOSE_WAIT on a FIN.
    (S.SYN_RECEIVED, E.RCV_FIN): S.CLOSE_WAIT,
    # Second check: an acceptable RST ends the connection (RFC 5961 3.2: only an exact match).
    (S.SYN_SENT, E.RCV_RST): S.CLOSED,
    (S.SYN_RECEIVED, E.RCV_RST_ACTIVE_OPEN): S.CLOSED,
    **{(st, E.RCV_RST): S.CLOSED for st in _OPEN if st not in (S.SYN_SENT, S.SYN_RECEIVED)},
    # ABORT (3.10.5), in every state but CLOSED.
    **{(st, E.ABORT): S.CLOSED for st in _OPEN},
    # The user timeout: SYN, data or zero-window probe retries exhausted (3.8.3 R2).
    **{(st, E.USER_TIMEOUT): S.CLOSED for st in (S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1,
                                                  S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK)},
    (S.ESTABLISHED, E.KEEPALIVE_TIMEOUT): S.CLOSED,
    (S.CLOSE_WAIT, E.KEEPALIVE_TIMEOUT): S.CLOSED,
    (S.FIN_WAIT_2, E.TIMEOUT_FIN_WAIT_2): S.CLOSED,
}

# Entries no connection object takes, and why (the coverage test checks all the others are taken).
UNTAKEN: dict[tuple[State, Event], str] = {
    (S.CLOSED, E.PASSIVE_OPEN): "a Listener, not a connection, is in LISTEN; its connections are born "
    "in LISTEN when a SYN arrives (silently: the listener's state, not theirs)",
    (S.LISTEN, E.CLOSE): "closing a listener closes the Listener (stack/host.py), not a connection",
    (S.LISTEN, E.SEND): "a listening socket cannot send (the socket API refuses it)",
    (S.SYN_RECEIVED, E.CLOSE): "the FIN waits until the handshake completes (RFC 9293 3.10.4 queues "
    "it); the connection goes ESTABLISHED -> FIN_WAIT_1 then",
    (S.SYN_RECEIVED, E.RCV_FIN): "the fifth (ACK) check before the eighth always leaves "
    "SYN_RECEIVED or drops the segment first",
}


@mypyc_attr(native_class=False)  # mypyc compiles no native subclass of AssertionError
class TransitionError(AssertionError):
    """A (state, event) pair that is not in TRANSITIONS: a bug in the stack, never a peer's fault."""


# Called with (old state, event) on every transition; empty but for tests that collect coverage.
OBSERVERS: list[Callable[[State, Event], None]] = []


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise TransitionError(f"no transition from {state.value} on {event.value!r}") from None


def take(state: State, event: Event) -> State:
    """The state `event` leads to from `state`, told to the OBSERVERS first: the one way every
    connection object (TcpConnection, the TIME_WAIT record of stack.tcp.time_wait) changes state."""
    for observe in OBSERVERS:
        observe(state, event)
    return next_state(state, event)
