"""Topology files: YAML shaped like containerlab's, validated into an immutable model.

Nothing here touches the kernel. `load_topology(path)` either returns a `Topology` whose every
cross-reference has been checked, or raises `TopologyError` naming the file, the field path
(``links[0].impairments.both.delay``) and what would be valid. The schema is documented for
users in topologies/README.md.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from lab.model.impairment import Impairment
from lab.model.units import parse_duration, parse_size

# Lab names may hold dashes, node names may not: the namespace `tcplab-<lab>-<node>` then splits
# back unambiguously at its last dash (see lab.model.names).
LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")
NODE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
IFNAME = re.compile(r"^[a-z][a-z0-9_]{0,14}$")
RESERVED_IFNAMES = frozenset({"lo", "tun0"})

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Mtu = Annotated[int, Field(ge=576, le=65535)]
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class TopologyError(ValueError):
    """An invalid topology; the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


AUTOTUNE_RCVBUF_MAX = 6 * 1024 * 1024  # Linux's net.ipv4.tcp_rmem[2]
AUTOTUNE_SNDBUF_MAX = 4 * 1024 * 1024  # net.ipv4.tcp_wmem[2]


class StackSettings(_Strict):
    """Per-node tunables of the Python stack; unset fields keep the stack's defaults."""

    time_wait: Duration | None = None  # TIME_WAIT length; the stack's MSL becomes half of it
    congestion_control: str | None = None
    rto_min: Duration | None = None
    rto_initial: Duration | None = None
    initial_window: Annotated[int, Field(ge=1, le=1000)] | None = None  # segments
    sack: bool | None = None
    timestamps: bool | None = None
    window_scaling: bool | None = None
    nagle: bool | None = None
    mtu: Mtu | None = None  # defaults to tun0's MTU
    mss: Annotated[int, Field(ge=536, le=65495)] | None = None  # alternative to mtu: mtu = mss + 40
    sndbuf: Size | None = None
    rcvbuf: Size | None = None
    # Buffer autotuning (stack.tcp.autotune) up to Linux's maxima: the receive buffer to 6 MB
    # (tcp_rmem[2]), with Linux's rule for window updates after a read, the send buffer to 4 MB
    # (tcp_wmem[2]). Unset: on with offloads, where the window is what limits a transfer, but for
    # a buffer given a size here, which keeps it. Per segment the receiving stack's CPU limits it
    # first, and a window grown past what tun0's queue holds (500 packets) only fills the queue
    # until it drops segments on a clean link.
    autotune: bool | None = None
    # TUN checksum/TSO offloads (virtio-net header): data leaves and arrives in super-segments of
    # up to 64 KB. Off by default: the trace, pcap and ladder then show every wire segment.
    # "checksum": the checksum offload alone, so segments stay wire-sized (the kernel completes
    # and checks TCP checksums, which per segment are a fifth of the sender's CPU).
    offload: bool | Literal["checksum"] | None = None

    @field_validator("congestion_control")
    @classmethod
    def _known_cc(cls, name: str | None) -> str | None:
        from stack.tcp.congestion import available

        if name is not None and name not in available():
            raise ValueError(f"unknown congestion control {name!r}; valid: {', '.join(available())}")
        return name

    def merged_over(self, base: StackSettings | None) -> StackSettings:
        """These settings on top of `base` (the topology's defaults), field by field."""
        if base is None:
            return self
        return base.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})

    def tcp_config_changes(self, tun_mtu: int) -> dict[str, object]:
        """The `stack.config.TcpConfig` fields these settings change (what the node daemon applies)."""
        changes: dict[str, object] = {"mtu": tun_mtu}
        if self.mtu is not None:
            changes["mtu"] = self.mtu
        if self.mss is not None:
            changes["mtu"] = self.mss + 40
        if self.time_wait is not None:
            changes["msl"] = self.time_wait / 2  # TIME_WAIT lasts 2*MSL (RFC 9293 3.6.1)
        direct = {
            "congestion_control": "congestion_control",
            "rto_min": "rto_min",
            "rto_initial": "rto_initial",
            "initial_window": "initial_window_segments",
            "sack": "sack",
            "timestamps": "timestamps",
            "window_scaling": "window_scaling",
            "nagle": "nagle",
            "sndbuf": "sndbuf",
            "rcvbuf": "rcvbuf",
        }
        for ours, theirs in direct.items():
            value = getattr(self, ours)
            if value is not None:
                changes[theirs] = value
        if self.autotune or (self.autotune is None and self.offload is True):
            if self.autotune or self.rcvbuf is None:
                changes["rcvbuf_max"] = AUTOTUNE_RCVBUF_MAX
                # With a window of megabytes, a window update after every read (each one that
                # moves the edge by an MSS) is an ACK the sender has no use for: Linux's rule
                # instead (tcp_cleanup_rbuf: only when the window at least doubles from at most
                # half). Measured on a 4 s offload transfer: 30,000 ACKs instead of 52,000, and
                # 1,075 MB/s instead of 910 (`make bench`'s offload row, three runs each).
                changes["window_update_doubling"] = True
            if self.autotune or self.sndbuf is None:
                changes["sndbuf_max"] = AUTOTUNE_SNDBUF_MAX
        return changes


class App(_Strict):
    """An application the node daemon starts, by name, with free-form options for that app."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    options: dict[str, Any] = Field(default_factory=dict)


Port = Annotated[int, Field(ge=1, le=65535)]
Bind = Annotated[str, Field(pattern=r"^[^:]+:/[^:]*(:(ro|rw))?$")]  # SRC:/DST[:ro|rw]
CONTAINER_FIELDS = ("image", "command", "env", "ports", "binds")


class Node(_Strict):
    kind: Literal["stack", "kernel", "router", "container"]
    apps: tuple[App, ...] = ()
    stack: StackSettings | None = None
    address: ipaddress.IPv4Address | None = None  # a stack node's stack address (else automatic)
    address6: ipaddress.IPv6Address | None = None  # its IPv6 twin (else automatic)
    # kind: container (lab.kernel.container): a local image run with its own command; ports are where it
    # listens (`up` waits for them; nothing is published to the host).
    image: str | None = None
    command: str | tuple[str, ...] | None = None
    env: dict[str, Annotated[str, BeforeValidator(str)]] = Field(default_factory=dict)
    ports: tuple[Port, ...] = ()
    binds: tuple[Bind, ...] = ()

    @field_validator("address6")
    @classmethod
    def _unicast6(cls, address: ipaddress.IPv6Address | None) -> ipaddress.IPv6Address | None:
        if address is not None:
            _check_unicast6(address)
        return address


def _check_unicast6(address: ipaddress.IPv6Address) -> None:
    """Lab addresses are global or ULA unicast: link-local ones are the kernel's own (every
    interface makes one), and multicast, loopback and :: are not interface addresses."""
    if address.is_link_local or address.is_multicast or address.is_loopback or address.is_unspecified:
        raise ValueError(f"{address} is not a unicast address a link can use: write e.g. fd00:10::1")


class LinkImpairments(_Strict):
    """`both` applies in both directions; `a_to_b`/`b_to_a` (a = endpoints[0]) override it field by field."""

    both: Impairment | None = None
    a_to_b: Impairment | None = None
    b_to_a: Impairment | None = None

    def direction(self, a_to_b: bool) -> Impairment | None:
        one_way = self.a_to_b if a_to_b else self.b_to_a
        if one_way is None:
            return self.both
        if self.both is None:
            return one_way
        merged = {**self.both.model_dump(), **one_way.model_dump(include=one_way.model_fields_set)}
        return Impairment.from_si(**merged)  # validated again: the combination must make sense too


class Link(_Strict):
    endpoints: tuple[str, str]  # "node" or "node:ifname"
    addresses: tuple[ipaddress.IPv4Interface, ipaddress.IPv4Interface] | None = None
    addresses6: tuple[ipaddress.IPv6Interface, ipaddress.IPv6Interface] | None = None
    mtu: Mtu | None = None
    impairments: LinkImpairments | None = None

    @field_validator("endpoints")
    @classmethod
    def _endpoint_syntax(cls, endpoints: tuple[str, str]) -> tuple[str, str]:
        for ep in endpoints:
            node, _, ifname = ep.partition(":")
            if not NODE_NAME.match(node):
                raise ValueError(f"endpoint {ep!r}: {node!r} is not a node name (lowercase, digits, _)")
            if ifname and (not IFNAME.match(ifname) or ifname in RESERVED_IFNAMES):
                raise ValueError(
                    f"endpoint {ep!r}: interface {ifname!r} must be 1-15 of [a-z0-9_], "
                    "start with a letter, and not be lo or tun0"
                )
        return endpoints

    @field_validator("addresses", "addresses6")
    @classmethod
    def _same_subnet(cls, addrs: tuple[Interface, Interface] | None) -> tuple[Interface, Interface] | None:
        if addrs is not None:
            a, b = addrs
            v4 = a.version == 4
            if a.network != b.network:
                example = "10.0.0.1/24, 10.0.0.2/24" if v4 else "fd00:10::1/64, fd00:10::2/64"
                raise ValueError(f"{a} and {b} are not in one subnet: write e.g. {example}")
            if a.ip == b.ip:
                raise ValueError(f"both ends have the address {a.ip}")
            if a.network.prefixlen > (30 if v4 else 127):  # IPv6 point-to-point /127: RFC 6164
                raise ValueError(f"{a}: a link subnet needs a prefix of /{30 if v4 else 127} or shorter")
            if isinstance(a.ip, ipaddress.IPv6Address):
                _check_unicast6(a.ip)
        return addrs

    def node(self, end: int) -> str:
        return self.endpoints[end].partition(":")[0]

    def ifname(self, end: int) -> str | None:
        return self.endpoints[end].partition(":")[2] or None


class Defaults(_Strict):
    stack: StackSettings | None = None
    mtu: Mtu = 1500
    impairments: LinkImpairments | None = None  # for links that set none of their own


class Topology(_Strict):
    name: str
    defaults: Defaults = Field(default_factory=Defaults)
    nodes: dict[str, Node]
    links: tuple[Link, ...] = ()

    @field_validator("name")
    @classmethod
    def _lab_name(cls, name: str) -> str:
        if not LAB_NAME.match(name):
            raise ValueError(
                f"{name!r} is not a lab name: 1-32 of [a-z0-9-], starting with a letter, "
                "not ending with a dash"
            )
        return name

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, nodes: dict[str, Node]) -> dict[str, Node]:
        if not nodes:
            raise ValueError("a topology needs at least one node")
        for name in nodes:
            if not NODE_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a node name: 1-32 of [a-z0-9_], starting with a letter (no dashes)"
                )
        return nodes

    def renamed(self, name: str) -> Topology:
        """The same topology under another lab name (two labs from one file)."""
        # model_copy skips validation (values are already in SI units), so check the name here.
        return self.model_copy(update={"name": Topology._lab_name(name)})


def _direction_problems(path: str, imp: LinkImpairments | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, a_to_b in (("a_to_b", True), ("b_to_a", False)):
        try:
            if imp is not None:
                imp.direction(a_to_b)
        except ValueError as exc:
            msg = str(exc).splitlines()[-1].strip()
            out.append((f"{path}.{key}", f"combined with 'both': {msg}"))
    return out


def _app_problems(name: str, node: Node) -> list[tuple[str, str]]:
    from lab.node.apps.registry import server_problem  # the apps' own option models

    return [
        (f"nodes.{name}.apps[{i}]", problem)
        for i, app in enumerate(node.apps)
        if (problem := server_problem(app.name, app.options)) is not None
    ]


def _container_problems(name: str, node: Node) -> list[tuple[str, str]]:
    if node.kind != "container":
        return [
            (f"nodes.{name}.{key}", f"only container nodes take {key}, not kind: {node.kind}")
            for key in CONTAINER_FIELDS
            if key in node.model_fields_set
        ]
    out = []
    if not node.image:
        out.append((f"nodes.{name}.image", "a container node needs an image, present locally"))
    if node.apps:
        out.append((f"nodes.{name}.apps", "a container runs its own command: give it `command`"))
    return out


def _problems(topo: Topology) -> list[tuple[str, str]]:
    """Cross-references pydantic cannot see: (field path, message) pairs."""
    out: list[tuple[str, str]] = []
    for name, node in topo.nodes.items():
        if node.kind != "stack" and node.stack is not None:
            out.append((f"nodes.{name}.stack", f"stack settings apply only to kind: stack, not {node.kind}"))
        if node.kind != "stack" and node.address is not None:
            out.append((f"nodes.{name}.address", "only stack nodes take an address (their stack's)"))
        if node.kind != "stack" and node.address6 is not None:
            out.append((f"nodes.{name}.address6", "only stack nodes take an address6 (their stack's)"))
        if node.kind == "router" and node.apps:
            out.append((f"nodes.{name}.apps", "routers only forward: put apps on a stack or kernel node"))
        out += _container_problems(name, node)
        out += _app_problems(name, node)
    out += _direction_problems("defaults.impairments", topo.defaults.impairments)
    seen_ifnames: dict[tuple[str, str], int] = {}
    for i, link in enumerate(topo.links):
        for end in (0, 1):
            who = link.node(end)
            if who not in topo.nodes:
                valid = ", ".join(sorted(topo.nodes))
                out.append((f"links[{i}].endpoints[{end}]", f"unknown node {who!r}; nodes are: {valid}"))
            ifname = link.ifname(end)
            if ifname is not None:
                if (who, ifname) in seen_ifnames:
                    out.append(
                        (
                            f"links[{i}].endpoints[{end}]",
                            f"{who}:{ifname} is already used by links[{seen_ifnames[who, ifname]}]",
                        )
                    )
                seen_ifnames[who, ifname] = i
        out += _direction_problems(f"links[{i}].impairments", link.impairments)
        if link.node(0) == link.node(1):
            out.append((f"links[{i}].endpoints", "a link joins two different nodes"))
    return out


def check_topology(topo: Topology, source: str = "<topology>") -> Topology:
    """Raise TopologyError if cross-references are wrong; return the topology unchanged otherwise."""
    problems = _problems(topo)
    if problems:
        raise TopologyError("\n".join(f"{source}: {path}: {msg}" for path, msg in problems))
    return topo


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class holding the field at `loc`, to list valid field names in messages."""
    current: Any = Topology
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        # Unwrap Optional, tuple[...], dict[str, X] and Annotated until a model (or nothing) remains.
        while get_origin(current) is not None or isinstance(current, UnionType):
            origin = get_origin(current)
            args = [a for a in get_args(current) if a is not type(None) and a is not Ellipsis]
            if origin is dict:
                args = args[1:]
            if origin is Annotated:
                args = args[:1]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if models:
                current = models[0]
                break
            if origin in (Union, UnionType) or origin is Annotated:
                current = args[0] if args else None
            else:
                break
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        valid = f"; valid fields: {', '.join(model.model_fields)}" if model else ""
        return f"unknown field {loc[-1]!r}{valid}"
    if err["type"] == "missing":
        return "this field is required"
    return msg


def topology_from_data(data: object, source: str = "<topology>") -> Topology:
    """Validate already-parsed YAML data; errors name `source` and each field path."""
    if not isinstance(data, dict):
        raise TopologyError(f"{source}: the file must hold a mapping with name, nodes and links")
    try:
        topo = Topology.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {_format_loc(e['loc'])}: {_describe(e)}" for e in exc.errors()]
        raise TopologyError("\n".join(lines)) from None
    return check_topology(topo, source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a duplicate node must be an error instead."""


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (names must be unique)", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TopologyError(f"{path}: not valid YAML: {exc}") from None
    return topology_from_data(data, str(path))
