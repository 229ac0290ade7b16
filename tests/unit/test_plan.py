"""The plan: names, addresses, MTUs and shortest-path routes, resolved without touching the kernel."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from lab.model.addressing import LINK_POOL6, STACK_POOL6, TUN_POOL6
from lab.model.build import build_plan
from lab.model.names import lab_of_netns
from lab.model.plan import LabPlan
from lab.model.topology import TopologyError, load_topology, topology_from_data

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def plan_of(name: str) -> LabPlan:
    return build_plan(load_topology(TOPOLOGIES / f"{name}.yaml"))


def routes(plan: LabPlan, node: str) -> dict[str, tuple[str, str]]:
    return {str(r.dst): (str(r.gateway), r.dev) for r in plan.node(node).routes}


def test_two_node_names_and_addresses() -> None:
    plan = plan_of("two-node")
    client, server = plan.node("client"), plan.node("server")
    assert client.netns == "tcplab-two-node-client" and lab_of_netns(client.netns) == "two-node"
    assert [i.ifname for i in client.interfaces] == ["eth0"]
    assert str(client.interfaces[0].address) == "10.1.0.1/24"
    assert str(server.interfaces[0].address) == "10.1.0.2/24"
    # The stack answers on an address no kernel owns; tun0's kernel side is a different one.
    assert client.tun is not None and server.tun is not None
    assert plan.address_of("client") == client.tun.peer != client.tun.local
    assert routes(plan, "client") == {f"{server.tun.peer}/32": ("10.1.0.2", "eth0")}
    assert plan.hosts() == {"client": str(client.tun.peer), "server": str(server.tun.peer)}


def test_daemon_config_carries_stack_settings() -> None:
    plan = plan_of("two-node")
    config = plan.daemon_config("server", "/run/x")
    assert config["tun"]["peer"] == config["stack_address"] == str(plan.address_of("server"))
    assert config["tcp_config"]["msl"] == pytest.approx(0.5)
    assert [a["name"] for a in config["apps"]] == ["http-server", "echo-server"]
    assert config["hosts"]["client"] == str(plan.address_of("client"))


def test_chain_routes_through_the_router_and_takes_the_small_mtu() -> None:
    plan = plan_of("chain")
    left, r1, right = plan.node("left"), plan.node("r1"), plan.node("right")
    assert right.tun is not None and left.tun is not None
    r1_left_side = str(r1.interfaces[0].address.ip)
    assert routes(plan, "left") == {
        "10.1.1.0/24": (r1_left_side, "eth0"),
        f"{right.tun.peer}/32": (r1_left_side, "eth0"),
    }
    assert routes(plan, "r1") == {
        f"{left.tun.peer}/32": (str(left.interfaces[0].address.ip), "eth0"),
        f"{right.tun.peer}/32": (str(right.interfaces[0].address.ip), "eth1"),
    }
    assert plan.links[1].mtu == 1280 and right.tun.mtu == 1280 and left.tun.mtu == 1500
    assert plan.address_of("r1") == r1.interfaces[0].address.ip


def test_dumbbell_multi_hop_routes() -> None:
    plan = plan_of("dumbbell")
    ra, rb = plan.node("ra"), plan.node("rb")
    d2 = plan.node("d2")
    assert d2.tun is not None
    ra_to_rb = next(i for i in ra.interfaces if i.peer_node == "rb")
    s1_routes = routes(plan, "s1")
    s1_gw = str(plan.node("s1").interfaces[0].peer_address)
    # s1 reaches everything through ra; ra sends d2's traffic over the bottleneck to rb.
    assert s1_routes[f"{d2.tun.peer}/32"] == (s1_gw, "eth0")
    assert routes(plan, "ra")[f"{d2.tun.peer}/32"] == (str(ra_to_rb.peer_address), ra_to_rb.ifname)
    rb_to_d2 = next(i for i in rb.interfaces if i.peer_node == "d2")
    assert routes(plan, "rb")[f"{d2.tun.peer}/32"] == (str(rb_to_d2.peer_address), rb_to_d2.ifname)
    # Every node has a route to every subnet it is not on and to every other stack address.
    stack_nodes = [n for n in plan.nodes.values() if n.tun]
    for node in plan.nodes.values():
        attached = {i.address.network for i in node.interfaces}
        dsts = {r.dst for r in node.routes}
        for link in plan.links:
            assert (link.subnet in attached) != (link.subnet in dsts)
        for other in stack_nodes:
            if other.name != node.name:
                assert other.tun is not None
                assert ipaddress.IPv4Network(f"{other.tun.peer}/32") in dsts
    # The bottleneck carries the impairment both ways.
    bottleneck = plan.link("ra-rb")
    assert bottleneck.a.egress is not None and bottleneck.a.egress.rate == pytest.approx(10e6)
    assert bottleneck.b.egress is not None and bottleneck.b.egress.limit == 100


def test_interop_keeps_given_addresses() -> None:
    plan = plan_of("interop")
    assert plan.address_of("linux") == ipaddress.IPv4Address("10.0.0.2")
    assert plan.node("stack").interfaces[0].address == ipaddress.IPv4Interface("10.0.0.1/24")


def data(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "t",
        "nodes": {"a": {"kind": "kernel"}, "b": {"kind": "kernel"}, "c": {"kind": "kernel"}},
        "links": [{"endpoints": ["a", "b"]}, {"endpoints": ["b:up0", "c"]}, {"endpoints": ["a", "c"]}],
    }
    base.update(extra)
    return base


def test_interface_names_explicit_and_automatic() -> None:
    plan = build_plan(topology_from_data(data()))
    assert [i.ifname for i in plan.node("b").interfaces] == ["eth0", "up0"]
    assert [i.ifname for i in plan.node("a").interfaces] == ["eth0", "eth1"]
    for node in plan.nodes.values():
        for iface in node.interfaces:
            assert len(iface.ifname) <= 15


def test_auto_subnets_avoid_explicit_ones() -> None:
    links = [
        {"endpoints": ["a", "b"]},
        {"endpoints": ["b", "c"], "addresses": ["10.1.0.1/24", "10.1.0.2/24"]},
    ]
    plan = build_plan(topology_from_data(data(links=links)))
    assert plan.links[0].subnet != plan.links[1].subnet


def test_overlapping_or_reserved_subnets_are_refused() -> None:
    links = [
        {"endpoints": ["a", "b"], "addresses": ["10.9.0.1/24", "10.9.0.2/24"]},
        {"endpoints": ["b", "c"], "addresses": ["10.9.0.5/16", "10.9.0.6/16"]},
    ]
    with pytest.raises(TopologyError, match=r"links\[1\].addresses"):
        build_plan(topology_from_data(data(links=links)))
    reserved = [{"endpoints": ["a", "b"], "addresses": ["10.2.0.1/24", "10.2.0.2/24"]}]
    with pytest.raises(TopologyError, match="reserved"):
        build_plan(topology_from_data(data(links=reserved)))


def test_triangle_prefers_the_direct_link() -> None:
    plan = build_plan(topology_from_data(data()))
    # a and c share a link: a's route to the b-c subnet may go either way, but never a hop further.
    r = routes(plan, "a")
    assert set(r) == {str(plan.links[1].subnet)}


def test_renamed_lab_changes_every_namespace() -> None:
    topo = load_topology(TOPOLOGIES / "two-node.yaml").renamed("second")
    plan = build_plan(topo)
    assert {n.netns for n in plan.nodes.values()} == {"tcplab-second-client", "tcplab-second-server"}


def test_lab_of_netns_is_unambiguous() -> None:
    assert lab_of_netns("tcplab-two-node-client") == "two-node"
    assert lab_of_netns("tcplab-two-client") == "two"
    assert lab_of_netns("other-ns") is None
    assert lab_of_netns("tcplab-nolab") is None  # no node part


def test_offload_is_a_per_node_stack_setting_off_by_default() -> None:
    topo = {
        "name": "off",
        "defaults": {"stack": {"offload": True}},
        "nodes": {"a": {"kind": "stack"}, "b": {"kind": "stack", "stack": {"offload": False}},
                  "c": {"kind": "stack", "stack": {"offload": "checksum"}}},
        "links": [{"endpoints": ["a", "b"]}, {"endpoints": ["a", "c"]}],
    }
    plan = build_plan(topology_from_data(topo))
    modes = {n: (plan.daemon_config(n, "/run/x")["offload"], plan.daemon_config(n, "/run/x")["tso"])
             for n in "abc"}
    assert modes == {"a": (True, True), "b": (False, True), "c": (True, False)}
    assert plan_of("two-node").daemon_config("server", "/run/x")["offload"] is False
    with pytest.raises(TopologyError, match="offload"):
        topology_from_data({**topo, "nodes": {"a": {"kind": "stack", "stack": {"offload": "fast"}}}})


# -- IPv6: every lab is dual-stack, numbered like IPv4 (see lab.plan's docstring) ---------------


@pytest.mark.parametrize("path", sorted(TOPOLOGIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_topology_gets_ipv6_beside_ipv4(path: Path) -> None:
    plan = build_plan(load_topology(path))
    seen: list[ipaddress.IPv6Address] = []
    for link in plan.links:
        assert link.subnet6.subnet_of(LINK_POOL6) and link.subnet6.prefixlen == 64
        assert (link.a.address6.ip, link.b.address6.ip) == (link.subnet6[1], link.subnet6[2])
        assert link.a.peer_address6 == link.b.address6.ip and link.b.peer_address6 == link.a.address6.ip
        seen += [link.a.address6.ip, link.b.address6.ip]
    for node in plan.nodes.values():
        if node.tun is not None:
            assert node.tun.peer6 in STACK_POOL6 and node.tun.local6 in TUN_POOL6
            assert node.address6 == str(node.tun.peer6) == str(plan.address6_of(node.name))
            seen.append(node.tun.peer6)
        else:
            assert node.address6 is None
        # The same shortest paths in both families: one IPv6 route per IPv4 route, same device.
        assert [r.dev for r in node.routes6] == [r.dev for r in node.routes]
        assert all(r.dst.version == r.gateway.version == 6 for r in node.routes6)
    assert len(set(seen)) == len(seen)
    assert set(plan.hosts6()) == set(plan.hosts())


def test_two_node_ipv6_addresses_are_derived_from_the_link_and_node_order() -> None:
    plan = plan_of("two-node")
    client, server = plan.node("client"), plan.node("server")
    assert str(client.interfaces[0].address6) == "fd00::1/64"
    assert str(server.interfaces[0].address6) == "fd00::2/64"
    assert (client.address6, server.address6) == ("fd00:0:2::1", "fd00:0:2::2")
    assert client.tun is not None and str(client.tun.local6) == "fd00:0:254::1"
    assert {str(r.dst): (str(r.gateway), r.dev) for r in client.routes6} == {
        "fd00:0:2::2/128": ("fd00::2", "eth0")
    }
    assert plan.hosts6() == {"client": "fd00:0:2::1", "server": "fd00:0:2::2"}
    config = plan.daemon_config("server", "/run/x")
    assert config["stack_address6"] == config["tun"]["peer6"] == "fd00:0:2::2"
    assert config["tun"]["address6"] == "fd00:0:254::2"
    assert config["hosts6"] == plan.hosts6()
    summary = plan.summary()
    assert summary["nodes"]["client"]["address6"] == "fd00:0:2::1"
    assert summary["nodes"]["client"]["interfaces6"] == {"eth0": "fd00::1/64"}
    assert summary["nodes"]["client"]["routes6"] == ["fd00:0:2::2/128 via fd00::2 dev eth0"]
    assert summary["links"][0]["subnet6"] == "fd00::/64"


def test_ipv6_routes_cross_the_router() -> None:
    plan = plan_of("chain")
    r1 = plan.node("r1")
    assert {str(r.dst): (str(r.gateway), r.dev) for r in plan.node("left").routes6} == {
        "fd00:0:0:1::/64": ("fd00::2", "eth0"),
        "fd00:0:2::2/128": ("fd00::2", "eth0"),
    }
    assert {str(r.dst): (str(r.gateway), r.dev) for r in r1.routes6} == {
        "fd00:0:2::1/128": ("fd00::1", "eth0"),
        "fd00:0:2::2/128": ("fd00:0:0:1::2", "eth1"),
    }
    assert plan.address6_of("r1") == ipaddress.IPv6Address("fd00::2")  # a router's first link


def test_given_ipv6_addresses_are_kept_and_automatic_ones_avoid_them() -> None:
    links = [
        {"endpoints": ["a", "b"]},
        {"endpoints": ["b", "c"], "addresses6": ["fd00::a/64", "fd00::b/64"]},
    ]
    nodes = {
        "a": {"kind": "kernel"},
        "b": {"kind": "kernel"},
        "c": {"kind": "stack", "address6": "fd00:0:2::1"},
        "d": {"kind": "stack"},
    }
    plan = build_plan(topology_from_data(data(nodes=nodes, links=links)))
    assert str(plan.links[1].a.address6) == "fd00::a/64"
    assert str(plan.links[0].subnet6) == "fd00:0:0:1::/64"  # fd00::/64 is taken by the file
    assert plan.node("c").address6 == "fd00:0:2::1" and plan.node("d").address6 == "fd00:0:2::2"


def _refused(match: str, **extra: object) -> None:
    with pytest.raises(TopologyError, match=match):
        build_plan(topology_from_data(data(**extra), "t.yaml"))


def test_bad_ipv6_addresses_are_refused_naming_the_field() -> None:
    def link(*addresses: str) -> list[dict[str, object]]:
        return [{"endpoints": ["a", "b"], "addresses6": list(addresses)}]

    apart = link("fd00:9::1/64", "fd00:8::2/64")
    _refused(r"t.yaml: links\[0\].addresses6: .* are not in one subnet", links=apart)
    _refused(r"links\[0\].addresses6: .*fe80::1 is not a unicast", links=link("fe80::1/64", "fe80::2/64"))
    _refused(r"links\[0\].addresses6\[0\]: .*IPv6", links=link("10.0.0.1/24", "fd00::2/64"))
    _refused(r"links\[0\].addresses6: both ends", links=link("fd00:9::1/64", "fd00:9::1/64"))
    reserved = link("fd00:0:2::a/64", "fd00:0:2::b/64")
    _refused(r"links\[0\].addresses6: fd00:0:2::/64 overlaps .* reserved", links=reserved)
    overlapping = [
        {"endpoints": ["a", "b"], "addresses6": ["fd00:9::1/64", "fd00:9::2/64"]},
        {"endpoints": ["b", "c"], "addresses6": ["fd00:9::5/48", "fd00:9::6/48"]},
    ]
    _refused(r"links\[1\].addresses6: .* overlaps links\[0\].addresses6", links=overlapping)


def test_bad_stack_address6_is_refused_naming_the_node() -> None:
    def nodes(a: dict[str, str], b: dict[str, str] | None = None) -> dict[str, object]:
        return {"a": a, "b": b or {"kind": "kernel"}, "c": {"kind": "kernel"}}

    _refused(r"nodes.a.address6: only stack nodes", nodes=nodes({"kind": "kernel", "address6": "fd00:2::9"}))
    on_a_link = nodes({"kind": "stack", "address6": "fd00::7"})
    _refused(r"nodes.a.address6: fd00::7 is inside fd00::/64", nodes=on_a_link)
    _refused(r"nodes.a.address6: .*not a unicast", nodes=nodes({"kind": "stack", "address6": "ff02::1"}))
    twin = {"kind": "stack", "address6": "fd00:5::1"}
    _refused(r"share one address", nodes=nodes(twin, twin))


def test_too_many_stack_nodes_is_a_topology_error() -> None:
    nodes = {f"s{i}": {"kind": "stack"} for i in range(255)}
    with pytest.raises(TopologyError, match=r"nodes.s254: no free stack address left in 10.2.0.0/24"):
        build_plan(topology_from_data({"name": "many", "nodes": nodes}))


def test_hosts_file_names_every_node_in_both_families_first() -> None:
    from lab.kernel.netns import hosts_file, with_hosts

    text = hosts_file(plan_of("interop"))
    lines = text.splitlines()
    assert lines[1:5] == ["10.2.0.1 stack", "10.0.0.2 linux", "fd00:0:2::1 stack", "fd00::2 linux"]
    assert text.endswith(Path("/etc/hosts").read_text())  # the machine's names still resolve
    argv = with_hosts(Path("/run/x/hosts"), ["curl", "http://linux/"])
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"] and argv[-3:] == [
        "/run/x/hosts", "curl", "http://linux/"
    ]


def test_offloads_from_the_defaults_autotune_a_node_without_settings_of_its_own() -> None:
    nodes = {"a": {"kind": "stack"}, "b": {"kind": "stack", "stack": {"sack": True}}}
    topo = topology_from_data({"name": "bare", "defaults": {"stack": {"offload": True}}, "nodes": nodes,
                               "links": [{"endpoints": ["a", "b"]}]})
    for node in ("a", "b"):
        config = build_plan(topo).daemon_config(node, "/run/x")["tcp_config"]
        assert (config["rcvbuf_max"], config["sndbuf_max"]) == (6 << 20, 4 << 20)
