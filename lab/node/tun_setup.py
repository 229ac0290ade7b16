"""What a node daemon does to its namespace before the stack runs: enter the network namespace and
give tun0 its MTU and point-to-point addresses (IPv4 and, when the stack speaks it, IPv6).

`lab.node.daemon` calls these; the lab may have configured tun0 already, so each step is done only
if it is missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from stack.host import Host

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000


class DaemonError(RuntimeError):
    """The daemon cannot start; the message says why."""


def enter_netns(name: str) -> None:
    """setns(2) the calling thread into network namespace `name`. Call before starting threads:
    threads started later inherit it."""
    path = NETNS_DIR / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DaemonError(f"no network namespace {name} ({path} is missing)") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise DaemonError(f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class TunSettings:
    ifname: str
    address: str  # the kernel's side
    peer: str  # the stack's address
    mtu: int
    address6: str | None = None  # the kernel's side, IPv6
    peer6: str | None = None  # the stack's IPv6 address


def stack_speaks_ipv6() -> bool:
    """Whether this tree's `stack.host.Host` takes an IPv6 address (`address6=`)."""
    return "address6" in inspect.signature(Host).parameters


def configure_tun(tun: TunSettings) -> None:
    """Give tun0 its MTU, the point-to-point address (which also routes the peer via tun0) and
    bring it up, doing only what the lab did not do already. The device must exist (open it first)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=tun.ifname)
        if not found:
            raise DaemonError(f"no interface {tun.ifname} in this namespace")
        idx = found[0]
        link = ipr.get_links(idx)[0]
        if link.get_attr("IFLA_MTU") != tun.mtu:
            ipr.link("set", index=idx, mtu=tun.mtu)
        have = {a.get_attr("IFA_LOCAL") for a in ipr.get_addr(index=idx, family=2)}
        if tun.address not in have:
            ipr.addr("add", index=idx, local=tun.address, address=tun.peer, prefixlen=32)
        ipr.link("set", index=idx, state="up")
        if tun.address6 and tun.peer6 and stack_speaks_ipv6():
            have6 = {a.get_attr("IFA_LOCAL") for a in ipr.get_addr(index=idx, family=socket.AF_INET6)}
            if tun.address6 not in have6:  # after up, as lab.kernel.netns.create_tun says; IFA_F_NODAD
                ipr.addr("add", index=idx, local=tun.address6, address=tun.peer6, prefixlen=128, flags=0x02)
    if not (tun.address6 and stack_speaks_ipv6()):
        # A stack without IPv6: keep the kernel's IPv6 chatter (router solicitations, MLD) off
        # tun0; the lab's IPv6 route to the stack address goes with it, so senders get unreachable.
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{tun.ifname}/disable_ipv6").write_text("1")
