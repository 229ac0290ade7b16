"""Container nodes in the model (no Docker, no root): fields validated with the field path and the
fix, planned like a kernel node with the image carried through to the plan and the status summary."""

from __future__ import annotations

from typing import Any

import pytest

from lab.model.build import build_plan
from lab.model.container import ContainerPlan
from lab.model.topology import TopologyError, topology_from_data


def topo(**web: Any) -> dict[str, Any]:
    return {
        "name": "ct",
        "nodes": {"client": {"kind": "stack"}, "web": {"kind": "container", "image": "nginx:alpine", **web}},
        "links": [{"endpoints": ["client", "web"]}],
    }


def error(data: dict[str, Any]) -> str:
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, "t.yaml")
    return str(info.value)


def test_container_node_is_planned_like_a_kernel_node_with_its_image() -> None:
    plan = build_plan(topology_from_data(topo(
        command=["python3", "-m", "http.server", "80"], env={"PORT": 80}, ports=[80], binds=["srv:/srv:ro"],
    )))  # fmt: skip
    web = plan.node("web")
    assert web.kind == "container" and web.tun is None
    assert web.container == ContainerPlan(
        "nginx:alpine", ("python3", "-m", "http.server", "80"), {"PORT": "80"}, (80,), ("srv:/srv:ro",)
    )
    assert str(plan.address_of("web")) == "10.1.0.2"  # its link address, like a kernel node
    assert [str(r.dst) for r in web.routes] == ["10.2.0.1/32"]  # the stack's address, via the link
    assert plan.summary()["nodes"]["web"]["image"] == "nginx:alpine"
    assert plan.node("client").container is None


def test_a_container_needs_an_image() -> None:
    data = topo()
    del data["nodes"]["web"]["image"]
    assert "t.yaml: nodes.web.image: a container node needs an image" in error(data)


def test_container_fields_belong_to_container_nodes_only() -> None:
    data = topo()
    data["nodes"]["client"]["image"] = "nginx:alpine"
    assert "nodes.client.image: only container nodes take image, not kind: stack" in error(data)


def test_a_container_runs_its_own_command_not_apps() -> None:
    message = error(topo(apps=[{"name": "echo-server"}]))
    assert "nodes.web.apps: a container runs its own command" in message


@pytest.mark.parametrize("bind", ["srv", "srv:relative", "srv:/srv:rx"])
def test_binds_are_source_colon_absolute_target(bind: str) -> None:
    assert "nodes.web.binds[0]" in error(topo(binds=[bind]))


def test_ports_are_tcp_ports() -> None:
    assert "nodes.web.ports[0]" in error(topo(ports=[70000]))


def test_a_container_removed_while_listed_is_gone_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """`down` lists a lab's containers while another `down` (or a rolled-back `up`) removes them:
    one listed then gone before it is inspected is left out, with the real SDK's list."""
    docker = pytest.importorskip("docker")
    from docker.models.containers import ContainerCollection

    from lab.kernel import container

    class Api:
        def containers(self, **_: object) -> list[dict[str, str]]:
            return [{"Id": "gone"}, {"Id": "here"}]

        def inspect_container(self, cid: str) -> dict[str, object]:
            if cid == "gone":
                raise docker.errors.NotFound("No such container: gone")
            return {"Id": cid, "Name": "/here", "Config": {"Labels": {}}}

    class Client:
        api = Api()

    class Reachable:
        containers = ContainerCollection(client=Client())

    monkeypatch.setattr(container, "_reachable_client", lambda: Reachable())
    assert [c.id for c in container.lab_containers("lab1")] == ["here"]
