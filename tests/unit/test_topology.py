"""Topology files: every shipped one validates; bad ones name the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.model.topology import TopologyError, load_topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
SHIPPED = sorted(TOPOLOGIES.glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    message = str(info.value)
    assert str(path) in message
    return message


GOOD = """
name: t
nodes:
  a: {kind: stack}
  b: {kind: kernel}
links:
  - endpoints: [a, b]
"""


def test_all_shipped_topologies_are_present() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"two-node", "lossy", "interop", "chain", "dumbbell"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_topology_validates(path: Path) -> None:
    topo = load_topology(path)
    assert topo.nodes


def test_two_node_has_short_time_wait_and_lossy_its_profile() -> None:
    two = load_topology(TOPOLOGIES / "two-node.yaml")
    assert two.defaults.stack is not None and two.defaults.stack.time_wait == pytest.approx(1.0)
    assert set(two.nodes) == {"client", "server"}
    lossy = load_topology(TOPOLOGIES / "lossy.yaml")
    imp = lossy.links[0].impairments
    assert imp is not None
    for a_to_b in (True, False):
        one_way = imp.direction(a_to_b)
        assert one_way is not None
        assert one_way.delay == pytest.approx(0.02) and one_way.loss == pytest.approx(0.02)


def test_good_minimal(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, GOOD))
    assert topo.nodes["a"].kind == "stack"


def test_bare_number_names_field_and_fix(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD + "    impairments: {both: {delay: 20}}\n")
    assert "links[0].impairments.both.delay" in msg
    assert "write 20ms" in msg


def test_bare_number_in_stack_settings(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace("a: {kind: stack}", "a: {kind: stack, stack: {time_wait: 1}}"))
    assert "nodes.a.stack.time_wait" in msg and "bare number" in msg


def test_unknown_node_in_link(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace("[a, b]", "[a, c]"))
    assert "links[0].endpoints[1]" in msg and "unknown node 'c'" in msg and "a, b" in msg


def test_unknown_kind(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace("kind: kernel", "kind: switch"))
    assert "nodes.b.kind" in msg and "'stack', 'kernel', 'router' or 'container'" in msg


def test_extra_field_lists_valid_ones(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD + "    latency: 5ms\n")
    assert "links[0].latency" in msg and "unknown field 'latency'" in msg and "impairments" in msg


def test_extra_field_inside_impairment(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD + "    impairments: {both: {lag: 5ms}}\n")
    assert "links[0].impairments.both.lag" in msg and "delay" in msg


def test_duplicate_node(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace("  b: {kind: kernel}", "  b: {kind: kernel}\n  a: {kind: router}"))
    assert "duplicate key 'a'" in msg


def test_bad_names(tmp_path: Path) -> None:
    assert "name" in error_of(tmp_path, GOOD.replace("name: t", "name: Bad_Lab"))
    msg = error_of(
        tmp_path, GOOD.replace("a: {kind: stack}", "my-node: {kind: stack}").replace("[a, b]", "[my-node, b]")
    )
    assert "nodes" in msg and "no dashes" in msg


def test_interface_name_too_long(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace("[a, b]", "[a:averyveryverylongname, b]"))
    assert "links[0].endpoints" in msg and "1-15" in msg


def test_stack_settings_only_on_stack_nodes(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace("b: {kind: kernel}", "b: {kind: kernel, stack: {sack: false}}"))
    assert "nodes.b.stack" in msg


def test_unknown_congestion_control(tmp_path: Path) -> None:
    msg = error_of(
        tmp_path, GOOD.replace("a: {kind: stack}", "a: {kind: stack, stack: {congestion_control: bbr9}}")
    )
    assert "nodes.a.stack.congestion_control" in msg and "cubic" in msg


def test_addresses_must_share_a_subnet(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD + "    addresses: [10.0.0.1/24, 10.0.1.2/24]\n")
    assert "links[0].addresses" in msg and "one subnet" in msg


def test_direction_overrides_both_field_by_field(tmp_path: Path) -> None:
    topo = load_topology(
        write(tmp_path, GOOD + "    impairments: {both: {delay: 10ms, loss: 1%}, a_to_b: {delay: 30ms}}\n")
    )
    imp = topo.links[0].impairments
    assert imp is not None
    a_to_b, b_to_a = imp.direction(True), imp.direction(False)
    assert a_to_b is not None and b_to_a is not None
    assert (a_to_b.delay, a_to_b.loss) == pytest.approx((0.03, 0.01))
    assert (b_to_a.delay, b_to_a.loss) == pytest.approx((0.01, 0.01))


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    assert "mapping" in error_of(tmp_path, "- just a list\n")
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "absent.yaml")


def test_stack_settings_become_tcp_config() -> None:
    from stack.config import TcpConfig

    topo = load_topology(TOPOLOGIES / "two-node.yaml")
    assert topo.defaults.stack is not None
    changes = topo.defaults.stack.tcp_config_changes(1500)
    config = TcpConfig().with_(**changes)
    assert config.msl == pytest.approx(0.5) and config.mtu == 1500


@pytest.mark.parametrize(
    ("settings", "rcvbuf_max", "sndbuf_max"),
    [
        ({}, None, None),  # per segment: off by default
        ({"offload": True}, 6 << 20, 4 << 20),  # with offloads: on, to tcp_rmem[2] / tcp_wmem[2]
        ({"offload": True, "rcvbuf": "64kb"}, None, 4 << 20),  # a buffer given a size keeps it
        ({"offload": True, "rcvbuf": "64kb", "sndbuf": "64kb"}, None, None),
        ({"offload": True, "rcvbuf": "64kb", "autotune": True}, 6 << 20, 4 << 20),  # ... unless asked
        ({"offload": True, "autotune": False}, None, None),
        ({"offload": "checksum"}, None, None),  # segment by segment: off, as without offloads
        ({"autotune": True}, 6 << 20, 4 << 20),
    ],
)
def test_buffer_autotuning_is_on_with_offloads_unless_a_size_or_the_setting_says_otherwise(
        settings: dict[str, object], rcvbuf_max: int | None, sndbuf_max: int | None) -> None:
    from lab.model.topology import StackSettings
    from stack.config import TcpConfig

    config = TcpConfig().with_(**StackSettings.model_validate(settings).tcp_config_changes(1500))
    assert (config.rcvbuf_max, config.sndbuf_max) == (rcvbuf_max, sndbuf_max)
    # An autotuned receive window is updated after reads as Linux does (only when it doubles).
    assert config.window_update_doubling == (rcvbuf_max is not None)
    if "rcvbuf" in settings:
        assert config.rcvbuf == 64 * 1024
