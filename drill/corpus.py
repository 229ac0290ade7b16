"""Run a directory tree of packetdrill scripts (a public corpus) and summarise the outcomes.

Scripts run in worker processes (`jobs`), each on its own virtual clock, so the order and the
number of workers change nothing but the wall time. A result's name is the script's path
relative to the corpus root, which is what an expectations file lists.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from drill.report import FAIL, PASS, UNSUPPORTED, Failure, ScriptResult
from drill.runner import run_file

TOP = 10  # how many constructs / failure reasons a summary lists


def find_scripts(root: Path) -> list[Path]:
    """Every `.pkt` file under root, in a stable order."""
    return sorted(p for p in root.rglob("*.pkt") if p.is_file())


def _run_one(args: tuple[Path, str, str, int | None, frozenset[str], str | None]) -> ScriptResult:
    path, name, profile, tolerance_usecs, defines, ip_version = args
    try:
        return run_file(
            path, profile=profile, tolerance_usecs=tolerance_usecs, defines=defines, name=name,
            ip_version=ip_version,
        )  # fmt: skip
    except Exception as e:  # a runner bug: one script's failure, never the whole corpus run's end
        return ScriptResult(name, False, Failure(0, f"the runner raised {type(e).__name__}: {e}"))


def run_corpus(
    root: Path,
    *,
    profile: str = "linux",
    tolerance_usecs: int | None = None,
    defines: frozenset[str] = frozenset(),
    jobs: int | None = None,
    scripts: list[Path] | None = None,
    ip_version: str | None = None,
) -> list[ScriptResult]:
    """Run every script under root (or the given subset), `jobs` processes at a time
    (default: the number of CPUs); results in the order of the scripts. Each script runs over
    its own --ip_version unless ip_version overrides it (as packetdrill's command line does)."""
    paths = find_scripts(root) if scripts is None else scripts
    work = [(p, p.relative_to(root).as_posix(), profile, tolerance_usecs, defines, ip_version) for p in paths]
    workers = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    if workers == 1 or len(work) < 2:
        return [_run_one(w) for w in work]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_run_one, work, chunksize=8))


def failure_reason(result: ScriptResult) -> str:
    """A failure message with its numbers masked, so that like failures count together."""
    if result.failure is None:
        return ""
    return re.sub(r"\d+", "N", result.failure.message.split(": expected")[0])[:120]


def corpus_summary(results: list[ScriptResult]) -> dict[str, object]:
    """Counts (overall and per directory), the top unsupported constructs, the top failure reasons."""
    counts = Counter(r.outcome for r in results)
    by_dir: dict[str, Counter[str]] = {}
    for r in results:
        by_dir.setdefault(str(Path(r.name).parent), Counter())[r.outcome] += 1
    constructs = Counter(r.unsupported for r in results if r.unsupported is not None)
    reasons = Counter(failure_reason(r) for r in results if r.outcome == FAIL)
    return {
        "scripts": len(results),
        "passed": counts[PASS],
        "failed": counts[FAIL],
        "unsupported": counts[UNSUPPORTED],
        "by_directory": {
            d: {"passed": c[PASS], "failed": c[FAIL], "unsupported": c[UNSUPPORTED]}
            for d, c in sorted(by_dir.items())
        },
        "top_unsupported": [{"construct": k, "scripts": n} for k, n in constructs.most_common(TOP)],
        "top_failures": [{"reason": k, "scripts": n} for k, n in reasons.most_common(TOP)],
    }


def summary_text(summary: dict[str, object]) -> str:
    lines = [
        f"{summary['passed']} passed, {summary['failed']} failed, {summary['unsupported']} unsupported "
        f"of {summary['scripts']} scripts"
    ]
    for key, label, field in (
        ("top_unsupported", "top unsupported constructs", "construct"),
        ("top_failures", "top failure reasons", "reason"),
    ):
        entries = summary[key]
        assert isinstance(entries, list)
        if entries:
            lines.append(f"{label}:")
            lines += [f"  {e['scripts']:5d}  {e[field]}" for e in entries]
    return "\n".join(lines)
