"""What a lab needs beyond the stack, checked before `up` creates anything.

Optional pieces (iptables for the link emulator's NFQUEUE rules, Docker for container
nodes, tcpdump, tshark, iperf3) are missing on a fresh machine more often than anything else; each
gets one line naming what to install instead of a traceback from deep inside `up`.
"""

from __future__ import annotations

import shutil

from lab.model.plan import LabPlan

# Debian packages of the tools the lab runs.
APT_PACKAGE = {"tcpdump": "tcpdump", "tshark": "tshark", "iperf3": "iperf3", "iptables": "iptables"}


def tool_problem(tool: str) -> str | None:
    """One line when `tool` is not on PATH, naming the package that provides it."""
    if shutil.which(tool) is not None:
        return None
    if tool not in APT_PACKAGE:
        return f"{tool}: command not found on PATH"
    return f"{tool} is not installed: apt-get install {APT_PACKAGE[tool]}"


def emulator_problem() -> str | None:
    """Why the user-space link emulator cannot run here, or None. It speaks NFQUEUE netlink itself
    (lab.kernel.impair.nfqueue), so iptables, which installs its rules, is all it needs."""
    problem = tool_problem("iptables")
    if problem is not None:
        return f"impaired links need the link emulator here (this kernel has no netem): {problem}"
    return None


def _impaired(plan: LabPlan) -> bool:
    return any(
        end.egress is not None and not end.egress.is_noop for link in plan.links for end in (link.a, link.b)
    )


def up_problem(plan: LabPlan) -> str | None:
    """The first thing `up` of `plan` would miss, as one line, or None when nothing is missing."""
    if _impaired(plan):
        from lab.kernel.impair.backend import ImpairError, choose_backend

        try:
            backend = choose_backend()
        except ImpairError as exc:
            return str(exc)
        if backend == "userspace" and (problem := emulator_problem()):
            return problem
    containers = {n.name: n.container for n in plan.nodes.values() if n.container is not None}
    if containers:
        from lab.kernel import container

        try:
            container.preflight(containers)
        except container.ContainerError as exc:
            return str(exc)
    return None
