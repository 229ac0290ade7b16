"""Every tunable of the stack in one place, with defaults close to Linux where the issue asks.

`TcpConfig` is per connection (a listener's copy is inherited by what it accepts; socket options
override fields of a connection's copy). `linux_profile()` is the profile packetdrill scripts assume;
`freebsd_profile()` the one the FreeBSD TCP test suite's scripts assume. The stack's role modules
read only these fields, never a profile's name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True, slots=True)
class TcpConfig:
    # Segment size: our MSS option is the interface MTU minus 40 over IPv4 (RFC 9293 3.7.1), minus
    # 60 over IPv6 (RFC 8200 8.3).
    mtu: int = 1500
    default_peer_mss: int = 536  # RFC 9293 3.7.1: when the peer sends no MSS option

    # Buffers (SO_SNDBUF / SO_RCVBUF), in octets.
    sndbuf: int = 256 * 1024
    rcvbuf: int = 256 * 1024  # also bounds the out-of-order queue (stack.tcp.reassembly)
    rcvbuf_locked: bool = False  # SO_RCVBUF was set: the buffer will not grow (Linux SOCK_RCVBUF_LOCK)
    sndbuf_locked: bool = False  # SO_SNDBUF was set (Linux SOCK_SNDBUF_LOCK)
    # Buffer autotuning, as Linux (net.ipv4.tcp_moderate_rcvbuf, tcp_rmem[2], tcp_wmem[2]): the
    # receive buffer grows to about twice what the application read in a round trip (Dynamic
    # Right-Sizing), the send buffer to twice the congestion window, up to these maxima; never a
    # buffer SO_RCVBUF/SO_SNDBUF fixed. None: the buffer stays as set (the default: a window that
    # only changes as the application reads is the one a lesson on flow control shows).
    rcvbuf_max: int | None = None
    sndbuf_max: int | None = None
    # The window scale we offer covers this many octets unless SO_RCVBUF fixed the buffer: Linux
    # (tcp_select_initial_window) scales for the largest buffer autotuning may reach,
    # net.ipv4.tcp_rmem[2] (6 MB: wscale 7). None: scale for rcvbuf alone (RFC 7323 2.3).
    wscale_space: int | None = None
    # Scale for wscale_space even when SO_RCVBUF fixed the buffer (FreeBSD scales for
    # kern.ipc.maxsockbuf whatever the socket's buffer: syncache_add, tcp_connect).
    wscale_space_always: bool = False
    # Once the MSS is known, round the receive buffer up to a multiple of it (FreeBSD's
    # tcp_mss(): 65536 -> 65700 with MSS 1460), so that the window is whole segments.
    rcvbuf_round_to_mss: bool = False
    # Accept and keep text up to the free buffer space even past the right edge advertised, as
    # FreeBSD (tcp_input: RCV.WND = max(sbspace, RCV.ADV - RCV.NXT)); RCV.WND is the receiver's
    # own variable (RFC 9293 3.3.1), the advertised edge only what it could say in 16 bits.
    rcv_wnd_is_free_space: bool = False
    # Every segment advertises the free buffer space (0 below min(RCV.BUFF/4, MSS); the right
    # edge never moves left), as FreeBSD's tcp_output; else the right edge moves only by the
    # SWS amount (RFC 9293 3.8.6.2.2). Either way a read sends a window update only for that.
    advertise_free_space: bool = False
    rst_window_zero: bool = False  # the window field of a RST we send (no receiver reads it)

    # Options offered on SYN, and their layout, which RFC 9293 3.1 leaves to the sender:
    # "linux" (MSS, SACK-permitted, timestamps, NOP, window scale: tcp_options_write) or "bsd"
    # (MSS, NOP + window scale, SACK-permitted, NOPs + timestamps, EOL padding: tcp_addoptions).
    syn_option_layout: Literal["linux", "bsd"] = "linux"
    # TCP_NOOPT (FreeBSD): our SYN and SYN-ACK carry no option at all, not even the MSS, and
    # none of the peer's is taken but its MSS (window scale, SACK, timestamps stay off).
    noopt: bool = False
    window_scaling: bool = True  # RFC 7323
    sack: bool = True  # RFC 2018
    timestamps: bool = True  # RFC 7323

    # Timers (seconds).
    msl: float = 30.0  # TIME_WAIT lasts 2*MSL = 60 s
    rto_initial: float = 1.0  # RFC 6298 2.1
    # RFC 6298 2.4 (SHOULD): 1 s, so that a delayed ACK (up to 500 ms, RFC 9293 3.8.6.3; 200 ms
    # here) is never taken for a loss. 200 ms with a 200 ms delayed ACK made every lone last
    # segment of a reply time out before its ACK came. The linux profile keeps TCP_RTO_MIN.
    rto_min: float = 1.0
    rto_max: float = 120.0
    rto_slop: float = 0.0  # added to every RTO but the initial one (FreeBSD's rexmit_slop)
    rto_min_in_variance: bool = False  # RTO = SRTT + max(4*RTTVAR, rto_min), as Linux
    clock_granularity: float = 0.001  # G of RFC 6298
    syn_retries: int = 6  # Linux tcp_syn_retries
    # From this retransmission of a SYN on, offer only the MSS, in case a middlebox drops SYNs
    # with options (FreeBSD's rexmit_drop_options: the third); 0: never.
    syn_drop_options_after: int = 0
    synack_retries: int = 5  # Linux tcp_synack_retries
    # An active open that is not ESTABLISHED this many seconds after connect() fails with
    # ETIMEDOUT, whatever syn_retries allows (FreeBSD's TCP_KEEPINIT, net.inet.tcp.keepinit;
    # 75 s there). None: syn_retries alone bounds it.
    keepinit: float | None = None
    data_retries: int = 15  # Linux tcp_retries2: about 15 minutes with the RTO capped at 120 s
    delack_timeout: float = 0.2  # RFC 1122 4.2.3.2 / RFC 9293 3.8.6.3 (at most 500 ms)
    delack_segments: int = 2  # ACK at least every second full-sized segment
    delack_any_size: bool = False  # count every data segment toward that, whatever its size (FreeBSD)
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
    # Simultaneous close: the ACK of the peer's FIN that takes us to CLOSING re-sends our FIN
    # with it (FreeBSD's tcp_output); else a pure ACK at SND.NXT (RFC 9293 3.10.7.4, eighth step).
    closing_ack_resends_fin: bool = False
    # TIME-WAIT answers any segment but an exact duplicate ACK with an ACK, whatever the window,
    # and drops one without ACK (FreeBSD's tcp_twcheck); else RFC 9293 3.10.7.4's checks.
    time_wait_acks_all: bool = False
    # An acceptable RST in CLOSING or LAST-ACK reports ECONNRESET (FreeBSD); RFC 9293 3.10.7.4
    # only closes the connection.
    rst_error_when_closing: bool = False
    fin_wait_2_timeout: float | None = 60.0  # orphaned FIN_WAIT_2 (Linux tcp_fin_timeout)

    # Header prediction (stack.tcp.connection._predicted): the common in-order data segment and
    # ACK of new data skip the checks they would pass. The same segments, states and events either
    # way (tests/tcp/test_header_prediction.py); off, every segment takes RFC 9293 3.10.7.4 step by step.
    header_prediction: bool = True

    # Sender behaviour.
    nagle: bool = True  # TCP_NODELAY clears it
    nagle_minshall: bool = False  # hold a small segment only behind an unACKed small one (Linux)
    initial_window_segments: int = 10  # RFC 6928
    congestion_control: str = "cubic"
    limited_transmit: bool = True  # RFC 3042
    dupack_threshold: int = 3  # RFC 5681

    # ICMP protocol or port unreachable abort a connection in SYN-SENT (RFC 1122 4.2.3.9,
    # RFC 5461 section 4); administratively prohibited and TTL exceeded too with the second.
    icmp_hard_errors: bool = True
    icmp_prohibited_ttl_hard: bool = False  # FreeBSD's tcp_ctlinput with icmp_may_rst=1

    # RFC 5961: a RST elsewhere than RCV.NXT in the window (section 3.2) and a SYN in a
    # synchronized state (section 4.2) draw a challenge ACK. Off (FreeBSD's insecure_rst,
    # insecure_syn): an in-window RST resets, an in-window SYN is answered with a reset and
    # aborts the connection (RFC 9293 3.10.7.4 without RFC 5961).
    rfc5961_rst: bool = True
    rfc5961_syn: bool = True
    # The IP header of the connection's packets (IP_TTL, IP_TOS; IPV6_UNICAST_HOPS, IPV6_TCLASS):
    # TTL / hop limit 64 (RFC 1700's recommendation, Linux's default), DSCP 0 (RFC 2474).
    ip_ttl: int = 64
    ip_tos: int = 0
    ipv6_hops: int = 64
    ipv6_tclass: int = 0

    # Drop every segment with both SYN and FIN set, in any state and for any port, without an
    # answer (FreeBSD's net.inet.tcp.drop_synfin); off, RFC 9293 3.10.7 processes it as a SYN
    # (and its FIN). Host-wide: the host's config decides, as a sysctl does.
    drop_synfin: bool = False

    # A SYN-ACK to a listener: RFC 9293 3.10.7.2 answers any ACK in LISTEN with <SEQ=SEG.ACK>
    # <CTL=RST>. On, it is dropped and counted (`listen_syn_ack`) with no reply, as current
    # FreeBSD does and its test suite expects (tcp_input_with_port(): "SYN|ACK invalid, segment
    # ignored", goto dropunlock; older releases sent the RST, BANDLIM_RST_OPENPORT).
    listen_drop_syn_ack: bool = False

    # RFC 5961 challenge ACKs: about this many per second per host, the budget of each second
    # drawn at random from [limit/2, 3*limit/2) (Linux's tcp_challenge_ack_limit; 0: none).
    challenge_ack_limit: int = 1000
    # At most one ACK per this many seconds per connection in answer to out-of-window, PAWS-failed
    # or bad-ACK segments and challenges (Linux tcp_invalid_ratelimit, 500 ms; 0: no limit).
    invalid_ratelimit: float = 0.5

    # Host-wide bounds on what peers can make the host hold or send (see stack.guard).
    syncookies: int = 1  # 0 never, 1 when a SYN queue is full, 2 always (Linux tcp_syncookies)
    max_orphans: int = 131072  # closed by the application, not yet CLOSED (tcp_max_orphans)
    max_tw_buckets: int = 131072  # orphaned connections in TIME_WAIT (tcp_max_tw_buckets)
    rst_per_second: int = 1000  # RSTs for segments that match no connection (0: no limit)
    rst_burst: int = 50
    icmp_per_second: int = 1000  # ICMP messages sent (Linux icmp_msgs_per_sec; 0: no limit)
    icmp_burst: int = 50  # Linux icmp_msgs_burst

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
    SRTT + max(4*RTTVAR, rto_min), Minshall's Nagle, empty zero-window probes. README.md, "The
    profiles", lists each difference from TcpConfig() and why."""
    linux = TcpConfig(
        delack_timeout=0.04,
        rto_min=0.2,  # TCP_RTO_MIN (with the 40 ms ACK delay and the RTO below: no spurious RTO)
        window_update_doubling=True,
        rto_min_in_variance=True,
        wscale_space=6 * 1024 * 1024,
        quickack_segments=16,  # TCP_MAX_QUICKACKS
        nagle_minshall=True,
        zero_window_probe_empty=True,
        persist_max=120.0,  # TCP_RTO_MAX
    )
    return linux.with_(**changes)


def freebsd_profile(**changes: object) -> TcpConfig:
    """Behave like FreeBSD 13/14 where the RFCs leave a choice, so that the FreeBSD TCP test
    suite's scripts pass: its defaults (recvspace 64 KB, sendspace 32 KB, delacktime 100 ms,
    rexmit_min 30 ms, rexmit_slop 200 ms, keepcnt 8, keepinit 75 s), the BSD SYN option layout, a window
    scale for kern.ipc.maxsockbuf (2 MB: wscale 6), a receive buffer rounded to whole segments,
    RCV.WND and the window advertised as the free buffer space, a zero RST window, a delayed
    ACK for every second segment of any size, hard ICMP errors as icmp_may_rst=1 takes them, a
    SYN-ACK to a listener dropped (current FreeBSD). README.md, "The profiles", lists each."""
    freebsd = TcpConfig(
        rcvbuf=65536,
        sndbuf=32768,
        delack_timeout=0.1,
        rto_min=0.03,
        rto_slop=0.2,
        keepalive_count=8,
        keepinit=75.0,
        syn_retries=12,  # TCP_MAXRXTSHIFT: keepinit ends an open first
        rto_max=64.0,  # TCPTV_REXMTMAX
        syn_option_layout="bsd",
        wscale_space=2 * 1024 * 1024,
        wscale_space_always=True,
        rcvbuf_round_to_mss=True,
        rcv_wnd_is_free_space=True,
        advertise_free_space=True,
        rst_window_zero=True,
        delack_any_size=True,
        closing_ack_resends_fin=True,
        time_wait_acks_all=True,
        rst_error_when_closing=True,
        icmp_prohibited_ttl_hard=True,
        listen_drop_syn_ack=True,
    )
    return freebsd.with_(**changes)
