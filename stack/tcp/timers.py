"""The connection's timers: six named deadlines, one earliest(), one firing order.

Each timer is an absolute deadline attribute (`rto_at`, ...) or None. The host keeps one heap
entry per connection, for `deadline()`, the earliest of them; when it comes, `on_timer` fires
every due timer in the order of `Timer` (a TIME_WAIT or FIN_WAIT_2 end first: it cancels the
others), each through its handler `_on_<name>`.
"""

from __future__ import annotations

import enum
import errno

from stack import seq
from stack.compiled import mypyc_attr
from stack.errors import socket_error
from stack.tcp.state import State
from stack.tcp.tcb import TIMER_SLACK, Tcb
from stack.tcp.transitions import Event
from stack.trace import TimerEvent
from stack.wire.tcp import ACK


class Timer(enum.Enum):
    """The timers in firing order; the value names the deadline attribute (value + "_at")."""

    TIME_WAIT = "time_wait"  # 2*MSL (RFC 9293 3.10.7.4, figure 5)
    FIN_WAIT_2 = "fin_wait_2"  # an orphaned FIN_WAIT_2 ends (as Linux's tcp_fin_timeout)
    DELACK = "delack"  # delayed ACK (RFC 9293 3.8.6.3)
    RTO = "rto"  # retransmission (RFC 6298)
    PERSIST = "persist"  # zero-window probe (RFC 9293 3.8.6.1)
    KEEPALIVE = "keepalive"  # RFC 9293 3.8.4, RFC 1122 4.2.3.6


FIRING_ORDER = tuple((t, t.value + "_at", "_on_" + t.value) for t in Timer)
_OPENING = (State.SYN_SENT, State.SYN_RECEIVED)


def keepinit_deadline(tcb: Tcb) -> float | None:
    """When an active open still short of ESTABLISHED gives up (TcpConfig.keepinit, counted
    from connect() as FreeBSD's TT_KEEP in SYN-SENT); None when no such limit applies. A passive
    open has none: synack_retries bounds it (FreeBSD's syncache ignores TCP_KEEPINIT too)."""
    keepinit = tcb.config.keepinit
    if keepinit is None or tcb.listener is not None or tcb.state not in _OPENING:
        return None
    return tcb.created + keepinit


@mypyc_attr(allow_interpreted_subclasses=True)
class Timers(Tcb):
    def deadline(self) -> float | None:
        return self._deadline

    def earliest(self) -> float | None:
        """The earliest armed deadline, or None (a loop, not a list: this runs after every event)."""
        best = None
        for t in (self.rto_at, self.persist_at, self.delack_at, self.keepalive_at, self.time_wait_at,
                  self.fin_wait_2_at):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def _update_deadline(self) -> None:
        d = self.earliest()
        if d != self._deadline:
            self._deadline = d
            self._sched(self)

    def _cancel_all_timers(self) -> None:
        self.rto_at = self.persist_at = self.delack_at = None
        self.keepalive_at = self.time_wait_at = self.fin_wait_2_at = None

    def on_timer(self, now: float) -> None:
        """The second way in: fire every timer that is due, in FIRING_ORDER."""
        t = now + TIMER_SLACK
        for timer, attr, handler in FIRING_ORDER:
            at = getattr(self, attr)
            if at is not None and at <= t:
                setattr(self, attr, None)
                if self.trace.enabled:
                    self.trace.emit(TimerEvent(now, self.id, timer.value, "fired"))
                getattr(self, handler)(now)
        self._update_deadline()

    # ------------------------------------------------------------------ arming

    def _arm_rto(self, now: float, restart: bool = False) -> None:
        if self.rto_at is None or restart:
            rto = self.rtt.rto * (1 << self.backoff)
            if self.backoff or self.rtt.srtt is not None:
                rto += self.config.rto_slop  # FreeBSD's TCPT_RANGESET: all but the initial RTO
            self.rto_at = now + min(rto, self.config.rto_max)
            if self.config.keepinit is not None:  # the SYN's last timeout ends at keepinit
                limit = keepinit_deadline(self)
                if limit is not None and limit < self.rto_at:
                    self.rto_at = max(limit, now)

    def _arm_persist(self, now: float) -> None:
        base = max(self.rtt.rto, self.config.persist_min)
        self.persist_at = now + min(base * (1 << min(self.persist_backoff, 20)), self.config.persist_max)

    def _start_keepalive(self, now: float) -> None:
        if self.keepalive:
            self.keepalive_at = now + self.config.keepalive_idle

    def _restart_time_wait(self, now: float) -> None:
        self.time_wait_at = now + 2 * self.config.msl

    def _enter_time_wait(self, now: float, cause: str, event: Event) -> None:
        self._transition(event, cause, now)
        self.rto_at = self.persist_at = self.keepalive_at = self.fin_wait_2_at = self.delack_at = None
        self._restart_time_wait(now)

    def set_keepalive(self, on: bool, now: float) -> None:
        self.keepalive = on
        if on and self.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            self.keepalive_at = self.last_recv_time + self.config.keepalive_idle
        elif not on:
            self.keepalive_at = None
        self._update_deadline()

    # ------------------------------------------------------------------ handlers (_on_rto: recovery.py,
    # _on_persist: sender.py)

    def _on_time_wait(self, now: float) -> None:
        self._transition(Event.TIMEOUT_2MSL, "timer:time_wait", now)

    def _on_fin_wait_2(self, now: float) -> None:
        self._transition(Event.TIMEOUT_FIN_WAIT_2, "timer:fin_wait_2", now)

    def _on_delack(self, now: float) -> None:
        self.pingpong = False  # the reply did not come in time: no longer interactive (Linux)
        self._send_ack(now)

    def _on_keepalive(self, now: float) -> None:
        """Keepalive (RFC 9293 3.8.4, RFC 1122 4.2.3.6): probe with SEG.SEQ = SND.NXT - 1."""
        if not self.keepalive or self.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
            return
        idle = now - self.last_recv_time
        if self.keepalive_probes == 0 and idle + TIMER_SLACK < self.config.keepalive_idle:
            self.keepalive_at = self.last_recv_time + self.config.keepalive_idle
            return
        if self.keepalive_probes >= self.config.keepalive_count:
            self._fail(self.soft_error or socket_error(errno.ETIMEDOUT, "keepalive: peer did not answer"),
                       Event.KEEPALIVE_TIMEOUT, "timer:keepalive", now)
            return
        self.keepalive_probes += 1
        self.stats.keepalive_probes += 1
        self._emit(ACK, seq.add(self.snd_una, -1), now)
        self.keepalive_at = now + self.config.keepalive_interval
