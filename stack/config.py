"""Every tunable of the stack in one place, with defaults close to Linux where the issue asks.

`TcpConfig` is per connection (a listener's copy is inherited by what it accepts; socket options
override fields of a connection's copy). `linux_profile()` is the profile packetdrill scripts assume.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class TcpConfig:
    # Segment size: our MSS option is the interface MTU minus 40 over IPv4 (RFC 9293 3.7.1), minus
    # 60 over IPv6 (RFC 8200 8.3).
    mtu: int = 1500
    default_peer_mss: int = 536  # RFC 9293 3.7.1: when the peer sends no MSS option

    # Buffers (SO_SNDBUF / SO_RCVBUF), in octets.
    sndbuf: int = 256 * 1024
    rcvbuf: int = 256 * 1024
    rcvbuf_locked: bool = False  # SO_RCVBUF was set: the buffer will not grow (Linux SOCK_RCVBUF_LOCK)
    # The window scale we offer covers this many octets unless SO_RCVBUF fixed the buffer: Linux
    # (tcp_select_initial_window) scales for the largest buffer autotuning may reach,
    # net.ipv4.tcp_rmem[2] (6 MB: wscale 7). None: scale for rcvbuf alone (RFC 7323 2.3).
    wscale_space: int | None = None
    ooo_limit: int = 256 * 1024  # bytes kept out of order (bounded memory)

    # Options offered on SYN.
    window_scaling: bool = True  # RFC 7323
    sack: bool = True  # RFC 2018
    timestamps: bool = True  # RFC 7323

    # Timers (seconds).
    msl: float = 30.0  # TIME_WAIT lasts 2*MSL = 60 s
    rto_initial: float = 1.0  # RFC 6298 2.1
    rto_min: float = 0.2  # Linux's TCP_RTO_MIN
    rto_max: float = 120.0
    rto_min_in_variance: bool = False  # RTO = SRTT + max(4*RTTVAR, rto_min), as Linux
    clock_granularity: float = 0.001  # G of RFC 6298
    syn_retries: int = 6  # Linux tcp_syn_retries
    synack_retries: int = 5  # Linux tcp_synack_retries
    data_retries: int = 15  # Linux tcp_retries2: about 15 minutes with the RTO capped at 120 s
    delack_timeout: float = 0.2  # RFC 1122 4.2.3.2 / RFC 9293 3.8.6.3 (at most 500 ms)
    delack_segments: int = 2  # ACK at least every second full-sized segment
    quickack_segments: int = 0  # ACK the first N data segments at once (Linux quick-ack; 0 = off)
    # A read sends a window update only if the window at least doubles (Linux tcp_cleanup_rbuf),
    # beyond the SWS rule of RFC 9293 3.8.6.2.2 that always applies.
    window_update_doubling: bool = False
    persist_min: float = 0.2
    persist_max: float = 60.0
    # Zero-window probe: an empty segment at SND.UNA - 1, the timer restarted by each answer
    # (Linux); else one octet of data beyond the window (RFC 9293 3.8.6.1), timed from the probe.
    zero_window_probe_empty: bool = False
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    fin_wait_2_timeout: float | None = 60.0  # orphaned FIN_WAIT_2 (Linux tcp_fin_timeout)

    # Sender behaviour.
    nagle: bool = True  # TCP_NODELAY clears it
    nagle_minshall: bool = False  # hold a small segment only behind an unACKed small one (Linux)
    initial_window_segments: int = 10  # RFC 6928
    congestion_control: str = "cubic"
    limited_transmit: bool = True  # RFC 3042
    dupack_threshold: int = 3  # RFC 5681

    # RFC 5961 challenge ACKs: at most this many per second per host (Linux: 1000).
    challenge_ack_limit: int = 1000

    # Listener.
    syn_backlog: int = 128  # half-open connections per listener
    default_backlog: int = 128

    def with_(self, **changes: object) -> TcpConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def mss(self) -> int:
        """Our MSS over IPv4: the MTU less the IPv4 and TCP headers (RFC 9293 3.7.1). Over IPv6
        a connection offers the MTU less 60 (`stack.inet.tcp_overhead`)."""
        return self.mtu - 40


def linux_profile(**changes: object) -> TcpConfig:
    """Behave like Linux 6.x where the RFCs leave a choice, so that packetdrill scripts written on
    Linux pass and the stack can stand in for a Linux host: quick-ACK mode and a 40 ms delayed-ACK
    timer, window updates after a read only when the window doubles, Linux's window scale, RTO =
    SRTT + max(4*RTTVAR, rto_min), Minshall's Nagle, empty zero-window probes. README.md, "The two
    profiles", lists each difference from TcpConfig() and why."""
    linux = TcpConfig(
        delack_timeout=0.04,
        window_update_doubling=True,
        rto_min_in_variance=True,
        wscale_space=6 * 1024 * 1024,
        quickack_segments=16,  # TCP_MAX_QUICKACKS
        nagle_minshall=True,
        zero_window_probe_empty=True,
        persist_max=120.0,  # TCP_RTO_MAX
    )
    return linux.with_(**changes)
