"""The container: docker-compose.yml and the Dockerfile, checked structurally without Docker, and
(root, with a reachable Docker daemon) an image built from this tree that runs `tcplab --help`.

Without a Docker daemon the build test skips, saying why; CI has one (tests/lab/container_image.py
starts it) but no registry, so it skips there for want of a base image. Base image of that test:
$TCPLAB_BASE, else a local `tcplab-base:bookworm` (docker/make-base-image.sh), else the Dockerfile's
default, pulled if it is not present (skipped when it cannot be).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DEFAULT_BASE = "python:3.11-slim-bookworm"
LOCAL_BASE = "tcplab-base:bookworm"
TEST_IMAGE = "tcplab:pytest"


def _default(value: str) -> str:
    """Compose's `${VAR:-default}` as Compose resolves it with VAR unset."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)


@pytest.fixture(scope="module")
def lab_service() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(compose, dict) and "services" in compose, "docker-compose.yml has no services"
    assert "lab" in compose["services"], "docker-compose.yml has no service `lab`"
    service = compose["services"]["lab"]
    assert isinstance(service, dict)
    return service


def test_compose_builds_the_image_from_this_repository(lab_service: dict[str, Any]) -> None:
    build = lab_service["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert dockerfile == DOCKERFILE and dockerfile.is_file()
    assert _default(build["args"]["BASE"]) == DEFAULT_BASE


def test_compose_grants_what_the_lab_needs_and_no_more(lab_service: dict[str, Any]) -> None:
    caps = {cap.upper().removeprefix("CAP_") for cap in lab_service["cap_add"]}
    assert {"NET_ADMIN", "SYS_ADMIN", "NET_RAW"} <= caps
    assert "ALL" not in caps
    assert "/dev/net/tun" in [device.split(":")[0] for device in lab_service["devices"]]
    assert not lab_service.get("privileged", False), "the lab must run without --privileged"
    assert not any("seccomp" in opt for opt in lab_service.get("security_opt", [])), (
        "Docker's default seccomp profile is enough once SYS_ADMIN is granted"
    )
    command = lab_service["command"]
    argv = command.split() if isinstance(command, str) else command
    assert argv[:2] == ["tcplab", "check"]


def test_dockerfile_takes_its_base_from_a_build_argument() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(rf"^ARG BASE={re.escape(DEFAULT_BASE)}$", text, re.M)
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(base == "${BASE}" for base in froms), froms
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M)
    assert entrypoint, "the image needs its entrypoint (it makes /proc/sys/net writable)"
    script = REPO / entrypoint.group(1).removeprefix("/src/")
    assert script.is_file() and os.access(script, os.X_OK)
    assert os.access(REPO / "docker" / "make-base-image.sh", os.X_OK)


def test_dockerignore_keeps_host_state_out_of_the_image() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv"} <= ignored


# -- with a Docker daemon ------------------------------------------------------------------------


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command on PATH (install Docker to test the image)"
    try:
        info = _docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer within 20 s"
    if info.returncode != 0:
        return "no Docker daemon is reachable (start dockerd to test the image): " + (
            info.stderr.strip().splitlines() or ["docker info failed"]
        )[-1]
    return None


def _base_image() -> str:
    """The base to build on, present locally; skips when there is none."""
    wanted = os.environ.get("TCPLAB_BASE")
    candidates = [wanted] if wanted else [LOCAL_BASE, DEFAULT_BASE]
    for image in candidates:
        if _docker("image", "inspect", image).returncode == 0:
            return image
    pulled = _docker("pull", candidates[-1], timeout=300)
    if pulled.returncode == 0:
        return candidates[-1]
    pytest.skip(
        f"no base image: {' nor '.join(candidates)} is present and {candidates[-1]} cannot be pulled "
        "(make one with docker/make-base-image.sh)"
    )


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    problem = _docker_problem()
    if problem:
        pytest.skip(problem)
    base = _base_image()
    build = _docker("build", "--build-arg", f"BASE={base}", "-t", TEST_IMAGE, str(REPO), timeout=1200)
    assert build.returncode == 0, f"docker build on {base} failed:\n{(build.stdout + build.stderr)[-4000:]}"
    yield TEST_IMAGE
    _docker("image", "rm", TEST_IMAGE)


# The grants of docker-compose.yml, as `docker run` options.
RUN_LIKE_COMPOSE = [
    "run", "--rm", "--init", "--cap-add", "NET_ADMIN", "--cap-add", "SYS_ADMIN", "--cap-add", "NET_RAW",
    "--device", "/dev/net/tun", "--security-opt", "apparmor=unconfined", "--tmpfs", "/run",
]


@pytest.mark.root
@pytest.mark.timeout(1500)
def test_image_builds_and_runs_tcplab(image: str) -> None:
    ran = _docker(*RUN_LIKE_COMPOSE, image, "tcplab", "--help")
    assert ran.returncode == 0, ran.stderr
    assert "Usage" in ran.stdout and "tcplab" in ran.stdout


@pytest.mark.root
@pytest.mark.timeout(1500)
def test_entrypoint_makes_network_sysctls_writable_and_nothing_else(image: str) -> None:
    probe = "test -w /proc/sys/net/ipv4/ip_forward && ! test -w /proc/sys/kernel/hostname"
    ran = _docker(*RUN_LIKE_COMPOSE, image, "sh", "-c", probe)
    assert ran.returncode == 0, ran.stderr
