"""Carry out a LabPlan in the kernel with pyroute2: namespaces, veth pairs, tun0, addresses, routes,
sysctls. No `ip` subprocesses, and nothing is created in (or leaks into) the caller's namespace:
veth pairs are created from inside one end's namespace with the peer placed straight into the other.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pyroute2 import IPRoute, netns

from lab.kernel.ownership import NETNS_DIR, lab_of_mark, mark
from lab.model.plan import IfacePlan, LinkPlan, NodePlan, RoutePlan, TunPlan

CLONE_NEWNET = 0x40000000


class RealiseError(RuntimeError):
    """A kernel step failed; the message names the namespace and the object."""


def privilege_problem() -> str | None:
    """Why the lab cannot run here, in one line, or None when it can."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, veth, tun): run as root or in the container"
    if not Path("/dev/net/tun").exists():
        return "the lab needs /dev/net/tun (TUN/TAP): load the tun module or pass --device /dev/net/tun"
    return None


def namespace_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create_namespace(name: str) -> None:
    if namespace_exists(name):
        raise RealiseError(f"namespace {name} already exists: is the lab already up? (tcplab down)")
    netns.create(name)


def attach_namespace(name: str, pid: int) -> None:
    """Name the network namespace of `pid` (a container's) like one of ours: /run/netns/NAME."""
    if namespace_exists(name):
        raise RealiseError(f"namespace {name} already exists: is the lab already up? (tcplab down)")
    try:
        netns.attach(name, pid)
    except OSError as exc:
        raise RealiseError(f"naming the namespace of pid {pid} {name}: {exc}") from exc


def remove_namespace(name: str) -> None:
    """Remove a named namespace; absent is fine (teardown is idempotent)."""
    if not namespace_exists(name):
        return
    try:
        netns.remove(name)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def _ipr(ns: str) -> IPRoute:
    # IPRoute(netns=NAME) silently *creates* a missing namespace: never let teardown resurrect one.
    if not namespace_exists(ns):
        raise RealiseError(f"namespace {ns} does not exist")
    return IPRoute(netns=ns)


def _index(ipr: IPRoute, ifname: str, ns: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise RealiseError(f"{ns}: no interface {ifname}")
    return int(found[0])


def set_sysctls(ns: str, values: Mapping[str, str]) -> None:
    """Write /proc/sys entries inside `ns` from a short-lived forked child.

    /proc/sys/net shows the namespace of the process that opens it, so the child setns()es first;
    the parent's own namespace is never touched.
    """
    fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # child: only async-signal-safe-ish work, then _exit
            os.close(read_end)
            code = 0
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
                for key, value in values.items():
                    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                        f.write(value)
            except BaseException as exc:
                os.write(write_end, f"{type(exc).__name__}: {exc}".encode()[:4000])
                code = 1
            os._exit(code)
        os.close(write_end)
        write_end = -1
        message = b""
        while chunk := os.read(read_end, 4096):
            message += chunk
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RealiseError(f"{ns}: setting sysctls failed: {message.decode(errors='replace')}")
    finally:
        os.close(fd)
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def forwarding_sysctls(ifnames: Iterable[str]) -> dict[str, str]:
    """Forward between links and tun0; no reverse-path filter (routes may be asymmetric)."""
    values = {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.conf.all.rp_filter": "0",
        "net.ipv4.conf.default.rp_filter": "0",
    }
    for ifname in ifnames:
        values[f"net.ipv4.conf.{ifname}.rp_filter"] = "0"
    return values


def bring_up_lo(ns: str) -> None:
    with _ipr(ns) as ipr:
        ipr.link("set", index=_index(ipr, "lo", ns), state="up")


def create_veth(link: LinkPlan, a_ns: str, b_ns: str) -> None:
    """One veth pair, end a created in `a_ns` with its peer placed directly into `b_ns`."""
    try:
        with _ipr(a_ns) as ipr:
            ipr.link(
                "add", ifname=link.a.ifname, kind="veth", peer={"ifname": link.b.ifname, "net_ns_fd": b_ns}
            )
    except Exception as exc:
        raise RealiseError(
            f"{a_ns}: creating veth {link.a.ifname} <-> {b_ns}:{link.b.ifname}: {exc}"
        ) from exc


def configure_iface(ns: str, lab: str, iface: IfacePlan) -> None:
    """Mark, MTU, address and up: the ownership mark first, so a half-made link is still found."""
    try:
        with _ipr(ns) as ipr:
            idx = _index(ipr, iface.ifname, ns)
            ipr.link("set", index=idx, ifalias=mark(lab), mtu=iface.mtu)
            ipr.addr(
                "add", index=idx, address=str(iface.address.ip), prefixlen=iface.address.network.prefixlen
            )
            ipr.link("set", index=idx, state="up")
    except RealiseError:
        raise
    except Exception as exc:
        raise RealiseError(f"{ns}: configuring {iface.ifname} ({iface.address}): {exc}") from exc


def create_tun(ns: str, lab: str, tun: TunPlan) -> None:
    """A persistent tun0 the node daemon attaches to; point-to-point, the stack address as peer.

    The kernel side's address with the stack address as peer also installs the route to the stack
    address via tun0 (it works before the daemon attaches: the route is just link-down until then).
    """
    try:
        with _ipr(ns) as ipr:
            ipr.link("add", ifname=tun.ifname, kind="tuntap", mode="tun")
            idx = _index(ipr, tun.ifname, ns)
            ipr.link("set", index=idx, ifalias=mark(lab), mtu=tun.mtu)
            ipr.addr("add", index=idx, local=str(tun.local), address=str(tun.peer), prefixlen=32)
            ipr.link("set", index=idx, state="up")
    except RealiseError:
        raise
    except Exception as exc:
        raise RealiseError(f"{ns}: creating {tun.ifname} ({tun.local} peer {tun.peer}): {exc}") from exc


def add_routes(ns: str, routes: Iterable[RoutePlan]) -> None:
    with _ipr(ns) as ipr:
        for route in routes:
            try:
                ipr.route(
                    "add", dst=str(route.dst), gateway=str(route.gateway), oif=_index(ipr, route.dev, ns)
                )
            except Exception as exc:
                raise RealiseError(
                    f"{ns}: route {route.dst} via {route.gateway} dev {route.dev}: {exc}"
                ) from exc


def node_ifnames(node: NodePlan) -> list[str]:
    return [i.ifname for i in node.interfaces] + ([node.tun.ifname] if node.tun else [])


def remove_marked_links(lab: str | None = None, ns: str | None = None) -> list[str]:
    """Delete interfaces marked for `lab` (any lab if None) in `ns` (None: the caller's namespace).

    Interfaces inside a lab namespace go with it; this finds strays elsewhere, e.g. a veth end
    left in the root namespace by an interrupted creation.
    """
    removed: list[str] = []
    with _ipr(ns) if ns else IPRoute() as ipr:
        for msg in ipr.get_links():
            owner = lab_of_mark(msg.get("ifalias"))
            if owner is None or (lab is not None and owner != lab):
                continue
            try:
                ipr.link("del", index=msg["index"])
                removed.append(str(msg.get("ifname")))
            except Exception as exc:  # already gone with its peer: fine
                if getattr(exc, "code", None) not in (errno.ENODEV, None):
                    raise
    return removed


def link_names(ns: str) -> list[str]:
    with _ipr(ns) as ipr:
        return [str(m.get("ifname")) for m in ipr.get_links()]
