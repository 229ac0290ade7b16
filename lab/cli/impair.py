"""`tcplab impair LINK ...`: change a running link's impairments, per direction, live.

With no impairment option it shows what each direction of the link suffers now (the emulator's
counters included when the user-space backend is in effect). Values take the topology files'
spelled-out units (`20ms`, `1%`, `10mbit`); `--clear` removes every impairment.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError

from lab.cli import root as cli


def _record(running: Any, index: int, side: str, key: str, used: str, described: str) -> None:
    """Keep `tcplab status` true: the state file carries what each direction suffers now."""
    from lab.kernel.state import write_state

    state = running.state
    links = state.plan.get("links", [])
    if index < len(links):
        links[index][side] = described
    state.impairments[f"{key} ({links[index]['name'] if index < len(links) else index})"] = used
    write_state(state)


def register(app: typer.Typer) -> None:
    @app.command()
    def impair(
        link: Annotated[str, typer.Argument(help="Link name as `tcplab status` shows it: client-server.")],
        lab: Annotated[str | None, typer.Option(help="Lab name (default: the only running lab).")] = None,
        direction: Annotated[str, typer.Option(help="both, a_to_b or b_to_a (a: first endpoint).")] = "both",
        delay: Annotated[str | None, typer.Option(help="e.g. 20ms")] = None,
        jitter: Annotated[str | None, typer.Option(help="e.g. 5ms")] = None,
        loss: Annotated[str | None, typer.Option(help="e.g. 2%")] = None,
        duplicate: Annotated[str | None, typer.Option(help="e.g. 1%")] = None,
        reorder: Annotated[str | None, typer.Option(help="e.g. 10% (needs a delay)")] = None,
        corrupt: Annotated[str | None, typer.Option(help="e.g. 0.1%")] = None,
        rate: Annotated[str | None, typer.Option(help="e.g. 10mbit")] = None,
        limit: Annotated[int | None, typer.Option(help="queue limit in packets")] = None,
        clear: Annotated[bool, typer.Option("--clear", help="Remove every impairment.")] = False,
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Change (or show) the impairments of a running lab's link."""
        cli.require_lab_privileges()
        from lab.kernel.impair import backend
        from lab.lab import Lab
        from lab.model.impairment import Impairment

        running = Lab.attach(cli.pick_lab(lab))
        try:
            plan_link = running.plan.link(link)
        except KeyError as exc:
            cli.fail(str(exc).strip("'\""))
        if direction not in ("both", "a_to_b", "b_to_a"):
            cli.fail(f"--direction must be both, a_to_b or b_to_a, not {direction!r}")
        ends = {"a_to_b": [plan_link.a], "b_to_a": [plan_link.b]}.get(direction, [plan_link.a, plan_link.b])
        given = {
            k: v
            for k, v in dict(delay=delay, jitter=jitter, loss=loss, duplicate=duplicate, reorder=reorder,
                             corrupt=corrupt, rate=rate, limit=limit).items()
            if v is not None
        }
        report: dict[str, Any] = {"lab": running.name, "link": plan_link.name, "directions": {}}
        if given or clear:
            try:
                profile = Impairment() if clear else Impairment.model_validate(given)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                cli.fail(f"--{field}: {first['msg']}")
        for end in ends:
            netns = running.plan.node(end.node).netns
            key = f"{end.node}->{end.peer_node}"
            if given or clear:
                seed = running.plan.seed_for(plan_link.index, end is plan_link.a)
                used = backend.update(netns, end.ifname, profile, seed, running.run_dir)
                report["directions"][key] = {"backend": used, "profile": profile.describe() or "none"}
                _record(running, plan_link.index, "a_to_b" if end is plan_link.a else "b_to_a", key, used,
                        profile.describe() or "none")
            else:
                stats = backend.read_stats(running.run_dir, netns, end.ifname)
                report["directions"][key] = {
                    "backend": backend.running_backend(netns, end.ifname, running.run_dir) or "none",
                    "stats": stats,
                }
        if json_out:
            cli.print_json(report)
            return
        for key, info in report["directions"].items():
            line = f"{plan_link.name} {key}: backend {info['backend']}"
            if "profile" in info:
                line += f", now {info['profile']}"
            elif info.get("stats"):
                line += f", {info['stats']}"
            cli.stdout.print(line, markup=False, highlight=False)
