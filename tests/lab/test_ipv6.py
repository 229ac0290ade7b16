"""Dual-stack labs on real namespaces: every address, route and forwarding switch of IPv6 beside
IPv4, ping -6 through a router, the link emulator delaying and dropping IPv6, apps over IPv6
between kernel nodes, captures of it, `status` showing both families, and nothing left after down.

Node names resolve to both families inside the lab (commands run through `Lab.exec` see the
lab's hosts file). One lab per module (unique name) serves most tests: kernel `a` - router `r` -
kernel `b`, plus a stack node `s` on the router (no daemon: its tun0 is checked as the lab
planned it), with 20 ms each way on the r-b link (the user-space emulator is forced, as this
kernel has no netem).
ICMP echo comes from tests/lab/support.py (the machines have no ping binary). Measured figures
are printed (-s shows them).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import lab.cli
from lab.inventory import leftovers
from lab.kernel import capture, tshark
from lab.kernel.impair import backend
from lab.lab import Lab
from lab.model.impairment import Impairment
from lab.model.topology import topology_from_data
from lab.node.tun_setup import stack_speaks_ipv6
from lab.scenarios import kernel_server

from .support import PING

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

DELAY = 0.020  # each way on r-b


def _name(stem: str) -> str:
    return f"v6{os.getpid() % 100000}{stem}"


def _topology(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": {"a": {"kind": "kernel"}, "r": {"kind": "router"}, "b": {"kind": "kernel"},
                  "s": {"kind": "stack"}},
        "links": [
            {"endpoints": ["a", "r"]},
            {"endpoints": ["r", "b"], "impairments": {"both": {"delay": "20ms"}}},
            {"endpoints": ["r", "s"]},
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def run_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    runs = tmp_path_factory.mktemp("v6runs")
    saved = {k: os.environ.get(k) for k in ("TCPLAB_RUN_DIR", backend.ENV_BACKEND)}
    os.environ["TCPLAB_RUN_DIR"] = str(runs)
    os.environ[backend.ENV_BACKEND] = "userspace"
    yield runs
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def dual(run_root: Path) -> Iterator[Lab]:
    name = _name("d")
    try:
        yield Lab.up(topology_from_data(_topology(name)), start_daemons=False)
    finally:
        Lab.down(name)
        assert leftovers(name, run_root) == {}


def ping(lab_: Lab, node: str, address: str, count: int = 1, interval: float = 0.01,
         wait: float = 2.0) -> dict[str, Any]:
    done = lab_.exec(node, [sys.executable, "-c", PING, address, str(count), str(interval), str(wait)],
                     check=False)
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def ip_json(lab_: Lab, node: str, *argv: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(lab_.exec(node, ["ip", "-j", *argv]).stdout or "[]")
    return out


def test_every_interface_has_its_ipv6_address_at_once(dual: Lab) -> None:
    for node in dual.plan.nodes.values():
        for iface in node.interfaces:
            infos = ip_json(dual, node.name, "-6", "addr", "show", "dev", iface.ifname)
            mine = [a for a in infos[0]["addr_info"] if a["local"] == str(iface.address6.ip)]
            assert mine, f"{node.name}:{iface.ifname} lacks {iface.address6}: {infos}"
            assert mine[0]["prefixlen"] == iface.address6.network.prefixlen
            # Planned addresses skip duplicate address detection: usable now, not tentative.
            assert mine[0].get("nodad") and not mine[0].get("tentative") and not mine[0].get("dadfailed")
            v4 = ip_json(dual, node.name, "-4", "addr", "show", "dev", iface.ifname)[0]["addr_info"]
            assert [a["local"] for a in v4] == [str(iface.address.ip)]


def test_routes_of_both_families_are_the_plans(dual: Lab) -> None:
    for node in dual.plan.nodes.values():
        for family, planned in (("-4", node.routes), ("-6", node.routes6)):
            have = {(r["dst"], r.get("gateway"), r["dev"]) for r in ip_json(dual, node.name, family, "route")}
            for route in planned:
                dst = str(route.dst.network_address) if route.dst.prefixlen in (32, 128) else str(route.dst)
                assert (dst, str(route.gateway), route.dev) in have, f"{node.name}: {route} not in {have}"
    assert len(dual.plan.node("a").routes6) == 3  # r-b and r-s subnets, s's stack address


def test_forwarding_is_on_for_both_families(dual: Lab) -> None:
    for node in ("r", "s"):
        out = dual.exec(node, ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]).stdout
        assert out.split() == ["1", "1"]


def test_stack_node_tun0_carries_the_planned_ipv6_pair(dual: Lab) -> None:
    s = dual.plan.node("s")
    assert s.tun is not None and s.address6 == str(s.tun.peer6) == "fd00:0:2::1"
    info = ip_json(dual, "s", "-6", "addr", "show", "dev", "tun0")[0]["addr_info"]
    assert [(a["local"], a.get("address")) for a in info if a["scope"] == "global"] == [
        (str(s.tun.local6), str(s.tun.peer6))
    ]
    routes = ip_json(dual, "s", "-6", "route", "show", f"{s.tun.peer6}/128")
    assert [r["dev"] for r in routes] == ["tun0"]
    # The others reach the stack address through the router.
    a_routes = {r["dst"]: r.get("gateway") for r in ip_json(dual, "a", "-6", "route")}
    assert a_routes[str(s.tun.peer6)] == str(dual.plan.node("a").interfaces[0].peer_address6)


def test_ping6_crosses_the_router_and_feels_the_delay(dual: Lab) -> None:
    b6, b4 = dual.address6_of("b"), dual.address_of("b")
    r6 = str(dual.plan.node("a").interfaces[0].peer_address6)
    near = ping(dual, "a", r6, count=5)
    far6 = ping(dual, "a", b6, count=10, interval=0.05)
    far4 = ping(dual, "a", b4, count=10, interval=0.05)
    print(f"\nping -6 a->r (clean): median {statistics.median(near['rtts']) * 1e3:.2f} ms; "
          f"a->b through r, {DELAY * 1e3:.0f} ms each way on r-b: IPv6 median "
          f"{statistics.median(far6['rtts']) * 1e3:.2f} ms (min {min(far6['rtts']) * 1e3:.2f}), "
          f"IPv4 median {statistics.median(far4['rtts']) * 1e3:.2f} ms")
    assert near["received"] == 5
    assert far6["received"] == far4["received"] == 10
    # Delay is a floor the emulator cannot undercut, whatever the machine's load.
    assert min(far6["rtts"]) >= 2 * DELAY
    assert min(far4["rtts"]) >= 2 * DELAY


@contextlib.contextmanager
def r_to_b(dual: Lab, **profile: str) -> Iterator[Callable[[str, int], dict[str, int]]]:
    """Give the r->b direction `profile` (with the module's 20 ms kept) while the block runs;
    yields `since(counter, at_least)`: the emulator's counters since the change, once `counter`
    reaches `at_least` (the emulator writes its stats every 0.1 s; bounded wait)."""
    r_side = next(i for i in dual.plan.node("r").interfaces if i.peer_node == "b")
    netns, run_dir = dual.netns_of("r"), dual.run_dir
    changed = Impairment.model_validate({"delay": "20ms", **profile})
    assert backend.update(netns, r_side.ifname, changed, seed=7, run_dir=run_dir) == "userspace"
    before = backend.read_stats(run_dir, netns, r_side.ifname) or {}

    def since(counter: str, at_least: int) -> dict[str, int]:
        deadline = time.monotonic() + 5.0
        while True:
            now = backend.read_stats(run_dir, netns, r_side.ifname) or {}
            keys = ("seen", "lost", "duplicated", "corrupted")
            delta = {k: now[k] - before[k] for k in keys} | {"kernel_dropped": now["kernel_dropped"]}
            if delta[counter] >= at_least or time.monotonic() > deadline:
                return delta
            time.sleep(0.05)

    try:
        yield since
    finally:
        clean = Impairment.model_validate({"delay": "20ms"})
        backend.update(netns, r_side.ifname, clean, seed=7, run_dir=run_dir)


def icmp6_counters(lab_: Lab, node: str) -> dict[str, int]:
    """The node's ICMPv6 counters (/proc/net/snmp6 in its namespace)."""
    text = lab_.exec(node, ["cat", "/proc/net/snmp6"]).stdout
    return {k: int(v) for k, v in (line.split() for line in text.splitlines()) if k.startswith("Icmp6")}


def test_emulator_drops_ipv6_as_the_profile_says(dual: Lab) -> None:
    total = 80
    with r_to_b(dual, loss="50%") as since:
        result = ping(dual, "a", dual.address6_of("b"), count=total, interval=0.005, wait=1.5)
        stats = since("lost", total - result["received"])
    sigma = (total * 0.25) ** 0.5
    print(f"\nping -6 over 50% loss r->b: {result['received']}/{total} answered "
          f"(expected {total // 2} ± {5 * sigma:.0f} at 5 sigma); emulator {stats}")
    assert stats["kernel_dropped"] == 0
    assert abs(result["received"] - total / 2) <= 5 * sigma
    # Every unanswered request is one the emulator dropped (it may also have dropped a
    # neighbour solicitation, which no ping counts).
    assert stats["lost"] >= total - result["received"]
    assert min(result["rtts"]) >= 2 * DELAY


def test_emulator_duplicates_and_corrupts_ipv6(dual: Lab) -> None:
    """Duplicates are written back through the emulator's IPv6 raw socket; corruption lands past
    the 40-byte IPv6 header, where b's ICMPv6 checksum catches it."""
    count = 10
    before = icmp6_counters(dual, "b")
    with r_to_b(dual, duplicate="100%") as since:
        result = ping(dual, "a", dual.address6_of("b"), count=count, interval=0.05)
        duplicated = since("duplicated", count)["duplicated"]
        deadline = time.monotonic() + 5.0  # the last copy may still be on its way when ping ends
        while (middle := icmp6_counters(dual, "b"))["Icmp6InEchos"] - before["Icmp6InEchos"] < 2 * count:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    with r_to_b(dual, corrupt="100%") as since:
        broken = ping(dual, "a", dual.address6_of("b"), count=count, interval=0.05, wait=1.0)
        corrupted = since("corrupted", count)["corrupted"]
    after = icmp6_counters(dual, "b")
    echoes = middle["Icmp6InEchos"] - before["Icmp6InEchos"]
    bad = after["Icmp6InCsumErrors"] - middle["Icmp6InCsumErrors"]
    print(f"\nduplicate 100% r->b: {count} pings, b received {echoes} echo requests "
          f"(emulator duplicated {duplicated}); corrupt 100%: {broken['received']} answered, "
          f"b counted {bad} ICMPv6 checksum errors (emulator corrupted {corrupted})")
    assert result["received"] == count and duplicated >= count
    assert echoes == 2 * count
    # Each corrupted ping failed b's checksum (so may a neighbour probe corrupted meanwhile).
    assert broken["received"] == 0 and corrupted >= count and bad >= count


def test_status_shows_both_families(dual: Lab) -> None:
    status = dual.status()
    a = status["nodes"]["a"]
    assert a["address6"] == "fd00::1" and a["interfaces6"] == {"eth0": "fd00::1/64"}
    assert status["nodes"]["s"]["address6"] == "fd00:0:2::1"
    subnets6 = [link["subnet6"] for link in status["links"]]
    assert subnets6 == ["fd00::/64", "fd00:0:0:1::/64", "fd00:0:0:2::/64"]
    shown = CliRunner().invoke(lab.cli.app, ["status", dual.name, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)[0]["nodes"]["b"]["address6"] == dual.address6_of("b")
    table = CliRunner().invoke(lab.cli.app, ["status", dual.name])
    for text in ("10.1.0.1", "fd00::1", "fd00:0:2::1", "fd00:0:0:1::/64"):
        assert text in table.output


def test_node_names_resolve_to_both_families_inside_the_lab(dual: Lab) -> None:
    etc_hosts = Path("/etc/hosts").read_bytes()
    for name in ("b", "r", "s"):
        found = dual.exec("a", ["getent", "ahosts", name]).stdout.split()
        assert dual.address6_of(name) in found and dual.address_of(name) in found, found
    # The names are the lab's alone: the machine's /etc/hosts is untouched.
    assert Path("/etc/hosts").read_bytes() == etc_hosts
    assert "fd00:0:2::1" not in subprocess.run(["getent", "ahosts", "s"], capture_output=True,
                                               text=True, check=False).stdout


HTTP_CLIENT = """
import asyncio, json, sys
from lab.node.apps import registry
from lab.node.apps.net import KernelNet
spec = registry.get(sys.argv[1])
options = spec.parse(json.loads(sys.argv[2]))
print(json.dumps(asyncio.run(spec.run(KernelNet(), options)).to_dict()))
"""


def test_apps_and_curl_over_ipv6_between_kernel_nodes(dual: Lab, tmp_path: Path) -> None:
    b6 = dual.address6_of("b")
    # The lab's HTTP, echo and bulk servers on b's Linux TCP, as `tcplab check` runs them.
    server = kernel_server.start(dual, "b", {"http-server": 80, "echo-server": 7})
    cap = capture.LinkCapture.start(dual, "a", "eth0", tmp_path / "a-eth0.pcap")
    try:
        curl = dual.exec("a", ["curl", "-6", "-sS", "-g", "--max-time", "20", "-o", "/dev/null",
                               "-w", "%{http_code} %{size_download}", f"http://[{b6}]/bytes/5000"])
        assert curl.stdout.split() == ["200", "5000"]
        # The same servers answer IPv4 too (what `tcplab check` asks of a kernel node).
        curl4 = dual.exec("a", ["curl", "-4", "-sS", "--max-time", "20", "-o", "/dev/null",
                                "-w", "%{http_code}", f"http://{dual.address_of('b')}/bytes/10"])
        assert curl4.stdout == "200"
        # By name: the lab's hosts file gives b both families; -6 picks IPv6.
        by_name = dual.exec("a", ["curl", "-6", "-sS", "--max-time", "20", "-o", "/dev/null",
                                  "-w", "%{remote_ip}", "http://b/bytes/10"])
        assert by_name.stdout == b6
        get = {"host": b6, "port": 80, "path": "/bytes/20000", "count": 2, "timeout": 20}
        done = dual.exec("a", [sys.executable, "-c", HTTP_CLIENT, "http-client", json.dumps(get)])
        fetched = json.loads(done.stdout)
        assert fetched["ok"] and fetched["connections"] == 1
        assert [r["body_length"] for r in fetched["responses"]] == [20000, 20000]
        echo = {"host": b6, "port": 7, "size": 100000}
        echoed = json.loads(dual.exec("a", [sys.executable, "-c", HTTP_CLIENT, "echo-client",
                                            json.dumps(echo)]).stdout)
        assert echoed["ok"] and echoed["bytes_received"] == 100000
        # The kernel's own view: the end that closed first holds TIME-WAIT sockets named by IPv6.
        sockets = dual.exec("a", ["ss", "-tanH", "-6"]).stdout + dual.exec("b", ["ss", "-tanH", "-6"]).stdout
        assert f"[{b6}]:80" in sockets or f"[{dual.address6_of('a')}]:" in sockets, sockets
    finally:
        stats = cap.stop()
        kernel_server.stop(server)
    # Checksums are judged for no source: a's segments carry the veth offload's partial checksums,
    # and so do b's, since the link emulator on r's ingress hands a delay-only link's GSO packets
    # back to the kernel as they came (lab.kernel.impair.emulator), and r forwards them so.
    report = tshark.analyse(stats.path, checked_sources=[])
    print(f"\ncapture of a:eth0 over IPv6: {report.summary()}")
    assert report.tcp_segments > 0 and report.malformed == []
    # Sources are read from the IPv6 header: both ends show up by their IPv6 addresses.
    assert {dual.address6_of("a"), b6} <= set(report.unchecked_sources)
    assert {s.src for s in report.resets} <= {b6, dual.address6_of("a")}


def test_stack_daemon_keeps_tun0_ipv6_only_when_the_stack_speaks_it(run_root: Path) -> None:
    name = _name("s")
    topo = {"name": name, "nodes": {"s": {"kind": "stack"}, "k": {"kind": "kernel"}},
            "links": [{"endpoints": ["s", "k"]}]}
    try:
        lab_ = Lab.up(topology_from_data(topo))
        config = json.loads((lab_.run_dir / "s.json").read_text())
        assert config["stack_address6"] == config["tun"]["peer6"] == lab_.plan.node("s").address6
        assert config["hosts6"] == {"s": "fd00:0:2::1", "k": "fd00::2"}
        disabled = lab_.exec("s", ["sysctl", "-n", "net.ipv6.conf.tun0.disable_ipv6"]).stdout.strip()
        if stack_speaks_ipv6():
            assert disabled == "0"
            assert ping(lab_, "k", lab_.address6_of("s"))["received"] == 1
        else:
            # A stack without IPv6: no route to its IPv6 address, so senders learn at once.
            assert disabled == "1"
            assert ping(lab_, "k", lab_.address_of("s"))["received"] == 1
    finally:
        Lab.down(name)
        assert leftovers(name, run_root) == {}


def _root_ipv6() -> set[str]:
    """Every IPv6 address and route destination of the caller's (root) namespace."""
    addrs = json.loads(subprocess.run(["ip", "-j", "-6", "addr"], capture_output=True, text=True,
                                      check=True).stdout)
    routes = json.loads(subprocess.run(["ip", "-j", "-6", "route"], capture_output=True, text=True,
                                       check=True).stdout)
    return {a["local"] for link in addrs for a in link["addr_info"]} | {r["dst"] for r in routes}


def test_down_leaves_no_ipv6_address_or_route(run_root: Path) -> None:
    name = _name("t")
    before = _root_ipv6()  # the machine's own network may use fd00:: too: look at what changes
    try:
        plan = Lab.up(topology_from_data(_topology(name)), start_daemons=False).plan
        ours = {str(i.address6.ip) for n in plan.nodes.values() for i in n.interfaces}
        ours |= {str(link.subnet6) for link in plan.links} | {str(plan.address6_of("s"))}
        # Nothing of the lab is in the root namespace while it runs ...
        assert ours.isdisjoint(_root_ipv6() - before)
        namespaces = [n.netns for n in plan.nodes.values()]
    finally:
        Lab.down(name)
    # ... nor after: the namespaces took their addresses and routes with them.
    assert leftovers(name, run_root) == {}
    assert not any(Path("/run/netns", ns).exists() for ns in namespaces)
    assert ours.isdisjoint(_root_ipv6() - before)


def test_a_lab_is_ready_for_ipv6_when_up_returns(run_root: Path) -> None:
    """Right after up, the first ping -6 is answered after one neighbour solicitation: none is
    lost to an interface whose IPv6 is not yet configured (which would cost a 1 s retransmission)."""
    name = _name("r")
    topo = {"name": name, "nodes": {"a": {"kind": "kernel"}, "b": {"kind": "kernel"}},
            "links": [{"endpoints": ["a", "b"]}]}
    try:
        lab_ = Lab.up(topology_from_data(topo))
        assert ping(lab_, "a", lab_.address6_of("b"), wait=3.0)["received"] == 1
        sent, heard = icmp6_counters(lab_, "a"), icmp6_counters(lab_, "b")
        assert sent["Icmp6OutNeighborSolicits"] == 1 and heard["Icmp6InNeighborSolicits"] == 1
    finally:
        Lab.down(name)
        assert leftovers(name, run_root) == {}
