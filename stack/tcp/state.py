"""The eleven connection states of RFC 9293 section 3.3.2."""

from __future__ import annotations

import enum


class State(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"

    def __str__(self) -> str:
        return self.value


# States in which the connection is synchronized (RFC 9293 3.5.2, "synchronized states").
SYNCHRONIZED = frozenset(
    {
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.CLOSE_WAIT,
        State.CLOSING,
        State.LAST_ACK,
        State.TIME_WAIT,
    }
)
# States in which the application may still queue data to send.
CAN_SEND = frozenset({State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT})
# States in which received text is delivered (RFC 9293 3.10.7.4, seventh step).
CAN_RECEIVE_TEXT = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
