"""Carry out a LabPlan in the kernel with pyroute2: namespaces, veth pairs, tun0, addresses, routes,
sysctls. No `ip` subprocesses, and nothing is created in (or leaks into) the caller's namespace:
veth pairs are created from inside one end's namespace with the peer placed straight into the other.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pyroute2 import IPRoute, netns

from lab.kernel.ownership import NETNS_DIR, lab_of_mark, mark
from lab.model.plan import IfacePlan, LabPlan, LinkPlan, NodePlan, RoutePlan, TunPlan

CLONE_NEWNET = 0x40000000
IFA_F_NODAD = 0x02  # linux/if_addr.h: the address is usable at once, no duplicate detection
AF_INET6 = 10

# Before any link exists in a node namespace: IPv6 on (a container may turn it off by default) and
# no duplicate address detection (RFC 4862 5.4), so no address waits a second as "tentative". The
# lab plans every address, so there is nothing to detect.
IPV6_SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": "0",
    "net.ipv6.conf.default.disable_ipv6": "0",
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
}


class RealiseError(RuntimeError):
    """A kernel step failed; the message names the namespace and the object."""


def privilege_problem() -> str | None:
    """Why the lab cannot run here, in one line, or None when it can."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, veth, tun): run as root or in the container"
    if not Path("/dev/net/tun").exists():
        return "the lab needs /dev/net/tun (TUN/TAP): load the tun module or pass --device /dev/net/tun"
    if not Path("/proc/sys/net/ipv6").exists():
        return "the lab needs IPv6 in the kernel (/proc/sys/net/ipv6 is missing: booted with ipv6.disable=1?)"
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
    """Forward between links and tun0, both families; no reverse-path filter (routes may be
    asymmetric; IPv6 has none in the kernel, only in netfilter)."""
    values = {
        "net.ipv4.ip_forward": "1",
        "net.ipv6.conf.all.forwarding": "1",
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
            ipr.addr(
                "add", index=idx, address=str(iface.address6.ip), prefixlen=iface.address6.network.prefixlen,
                flags=IFA_F_NODAD,
            )
            ipr.link("set", index=idx, state="up")
    except RealiseError:
        raise
    except Exception as exc:
        raise RealiseError(
            f"{ns}: configuring {iface.ifname} ({iface.address}, {iface.address6}): {exc}"
        ) from exc


def create_tun(ns: str, lab: str, tun: TunPlan) -> None:
    """A persistent tun0 the node daemon attaches to; point-to-point, the stack address as peer.

    The kernel side's address with the stack address as peer also installs the route to the stack
    address via tun0 (it works before the daemon attaches: the route is just link-down until then),
    for each family.
    """
    try:
        with _ipr(ns) as ipr:
            ipr.link("add", ifname=tun.ifname, kind="tuntap", mode="tun")
            idx = _index(ipr, tun.ifname, ns)
            ipr.link("set", index=idx, ifalias=mark(lab), mtu=tun.mtu)
            ipr.addr("add", index=idx, local=str(tun.local), address=str(tun.peer), prefixlen=32)
            ipr.link("set", index=idx, state="up")
            # After up: Linux routes the peer of an IPv6 point-to-point address only when the
            # address arrives on an interface that is up (before, it routes the local side).
            ipr.addr(
                "add", index=idx, local=str(tun.local6), address=str(tun.peer6), prefixlen=128,
                flags=IFA_F_NODAD,
            )
    except RealiseError:
        raise
    except Exception as exc:
        raise RealiseError(
            f"{ns}: creating {tun.ifname} ({tun.local} peer {tun.peer}, {tun.local6} peer {tun.peer6}): {exc}"
        ) from exc


def add_routes(ns: str, routes: Iterable[RoutePlan]) -> None:
    """Routes of either family (each route's destination says which)."""
    with _ipr(ns) as ipr:
        for route in routes:
            family = AF_INET6 if route.dst.version == 6 else 2
            try:
                ipr.route(
                    "add", dst=str(route.dst), gateway=str(route.gateway), oif=_index(ipr, route.dev, ns),
                    family=family,
                )
            except Exception as exc:
                raise RealiseError(
                    f"{ns}: route {route.dst} via {route.gateway} dev {route.dev}: {exc}"
                ) from exc


def solicited_node_group(address: ipaddress.IPv6Address) -> str:
    """The solicited-node multicast group of `address` (RFC 4291 2.7.1) as /proc/net/igmp6 spells
    it: ff02::1:ff00:0/104 plus the address's low 24 bits, 32 hex digits."""
    return f"ff0200000000000000000001ff{int(address) & 0xFFFFFF:06x}"


def _read_in_namespace(ns: str, path: str) -> str:
    """A /proc file as seen from inside `ns`, read by a short-lived thread that setns()es itself
    (setns of a network namespace moves only the calling thread; /proc/thread-self follows it)."""
    found: dict[str, str] = {}

    def work() -> None:
        fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                raise RealiseError(f"{ns}: setns: {os.strerror(ctypes.get_errno())}")
            found["text"] = Path(path.replace("/proc/net/", "/proc/thread-self/net/")).read_text()
        except (OSError, RealiseError) as exc:
            found["error"] = str(exc)
        finally:
            os.close(fd)

    worker = threading.Thread(target=work, name=f"read-{ns}")
    worker.start()
    worker.join()
    if "error" in found:
        raise RealiseError(f"{ns}: reading {path}: {found['error']}")
    return found["text"]


def wait_until_ready(ns: str, ifaces: Iterable[IfacePlan], timeout: float = 3.0) -> list[str]:
    """Wait until the veths `ifaces` in `ns` can carry both families; returns those still not ready.

    Ready means operational state UP, which linkwatch sets up to a second after both ends are up
    (the carrier flag comes earlier); IPv6's address configuration starts only then. Before, a
    neighbour solicitation for the interface's address goes unanswered and the first packet to
    it waits a whole retransmission (1 s, RFC 4861 10). Then the solicited-node group of the
    planned address must be joined (addrconf does it from a work queue), so solicitations for it
    are heard. IPv4 needs only the first; waiting suits both."""
    wanted = {i.ifname: solicited_node_group(i.address6.ip) for i in ifaces}
    deadline = time.monotonic() + timeout
    with _ipr(ns) as ipr:
        while True:
            up = {str(m.get("ifname")) for m in ipr.get_links() if m.get("IFLA_OPERSTATE") == "UP"}
            igmp6 = _read_in_namespace(ns, "/proc/net/igmp6")  # index, ifname, group, ...
            joined = {tuple(line.split()[1:3]) for line in igmp6.splitlines()}
            late = sorted(n for n, group in wanted.items() if n not in up or (n, group) not in joined)
            if not late or time.monotonic() >= deadline:
                return late
            time.sleep(0.02)


HOSTS_FILE = "hosts"  # in the run directory: /etc/hosts for commands run in the lab's nodes


def hosts_file(plan: LabPlan) -> str:
    """Every node's name with its address in both families, then this machine's /etc/hosts, so
    `curl http://server/` (either family) and `curl -6 http://server/` work inside the lab."""
    try:
        base = Path("/etc/hosts").read_text()
    except OSError:
        base = "127.0.0.1 localhost\n::1 localhost\n"
    lines = [f"{address} {name}" for name, address in (*plan.hosts().items(), *plan.hosts6().items())]
    return f"# lab {plan.name}: its nodes first\n" + "".join(line + "\n" for line in lines) + base


def with_hosts(hosts: Path, argv: Sequence[str]) -> list[str]:
    """`argv` run in a private mount namespace with `hosts` over /etc/hosts, as `ip netns exec`
    does with /etc/netns/NAME/hosts. Best effort: the command runs even if the mount is refused."""
    script = 'mount --bind "$0" /etc/hosts 2>/dev/null; exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hosts), *argv]


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
