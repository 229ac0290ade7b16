"""A small local image for the container-node tests, made without any registry.

Debian's minbase with python3 (debootstrap, about a minute on a fresh machine), imported through
the Docker SDK under a fixed tag, so later runs find it and reuse it. `docker_problem()` says why
Docker cannot run here (the tests skip with that reason); as root it starts `dockerd` itself when
the package is installed and no daemon answers.

    python -m tests.lab.container_image      # build it now (root), print the tag and the time taken
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Bump the version when the recipe changes, so a cached image from an older recipe is not reused.
IMAGE = "tcplab-test-python:1"
SUITE = "bookworm"
MIRROR = os.environ.get("TCPLAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DOCKERD_LOG = Path("/var/log/tcplab-dockerd.log")
_started_dockerd = False


def _client(timeout: float = 30) -> Any:
    import docker

    return docker.from_env(timeout=timeout)


def _ping() -> str | None:
    try:
        import docker
    except ImportError:
        return "the Docker SDK is not installed: pip install 'tcplab[lab]'"
    try:
        docker.from_env(timeout=10).ping()
    except Exception as exc:
        return f"no Docker daemon answers ({type(exc).__name__})"
    return None


def _start_dockerd() -> None:
    """Start dockerd in the background (it outlives the tests, as a system daemon would)."""
    global _started_dockerd
    if _started_dockerd:
        return
    _started_dockerd = True
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.Popen(
            ["dockerd"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _ping() is not None:
        time.sleep(0.5)


def docker_problem() -> str | None:
    """Why container nodes cannot run here, in one line, or None when they can."""
    problem = _ping()
    if problem is None or "SDK" in problem:
        return problem
    if os.geteuid() == 0 and shutil.which("dockerd") and "DOCKER_HOST" not in os.environ:
        _start_dockerd()
        problem = _ping()
        if problem is None:
            return None
        return f"dockerd was started but does not answer (see {DOCKERD_LOG})"
    return problem + ": install docker.io and start dockerd"


def image_present(tag: str = IMAGE) -> bool:
    import docker

    try:
        _client().images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_image(tag: str = IMAGE) -> str:
    """Make the image unless it is present; returns its tag. Raises RuntimeError saying why not."""
    if image_present(tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="tcplab-image-") as tmp:
        rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        made = subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3", SUITE, str(rootfs), MIRROR],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"debootstrap failed: {(made.stdout + made.stderr)[-2000:]}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        repository, _, version = tag.partition(":")
        _client(timeout=600).api.import_image_from_file(
            str(tarball), repository=repository, tag=version or "latest",
            changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]'],
        )  # fmt: skip
    return tag


if __name__ == "__main__":
    problem = docker_problem()
    if problem:
        sys.exit(f"container_image: {problem}")
    started = time.monotonic()
    print(build_image(), f"{time.monotonic() - started:.1f}s")
