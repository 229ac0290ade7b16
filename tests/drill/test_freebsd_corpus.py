"""The FreeBSD TCP test suite (1,103 packetdrill scripts) run whole under the freebsd profile.

The whole corpus runs, not a sample: it takes seconds on virtual time (two processes). Every
script that does not pass is listed in freebsd-expectations.txt with its outcome, the line it
stops at and the reason; any other outcome or line is a red test: a new failure, a script that
now fails elsewhere (a new bug hiding behind a listed platform choice), or an unexpected pass
(strict, as the xfail scripts of this directory: delete the entry, and raise the floor).
The corpus is test data beside the project, never in it: see freebsd_expectations.corpus_dir.
"""

from __future__ import annotations

import pytest

from drill.corpus import corpus_summary, run_corpus, summary_text
from tests.drill.freebsd_expectations import CORPUS_ENV, EXPECTATIONS, PROFILE, corpus_dir, read

PASS_FLOOR = 913  # scripts that pass today; raise it as the stack and the runner grow
CORPUS_SIZE = 1103


def test_the_expectations_file_reads_and_gives_reasons() -> None:
    entries = read(EXPECTATIONS)
    assert 0 < len(entries) <= CORPUS_SIZE - PASS_FLOOR  # every other script must pass
    assert all(e.reason and not e.reason.startswith("unclassified") for e in entries.values())


def test_the_freebsd_corpus_meets_its_expectations() -> None:
    root = corpus_dir()
    if root is None:
        pytest.skip(f"no FreeBSD corpus: set {CORPUS_ENV} or keep shared/conformance beside the project")
    expected = read(EXPECTATIONS)
    results = run_corpus(root, profile=PROFILE, jobs=2)
    assert len(results) == CORPUS_SIZE
    print(summary_text(corpus_summary(results)))
    problems: list[str] = []
    for r in results:
        want = expected.get(r.name)
        if r.outcome == "pass":
            if want is not None:
                problems.append(f"unexpected pass (delete its entry, raise PASS_FLOOR): {r.name}")
            continue
        got_line = r.failure.line if r.failure is not None else 0
        if want is None:
            problems.append(f"new {r.outcome}: {r.text()}")
        elif (want.outcome, want.line) != (r.outcome, got_line):
            problems.append(f"was {want.outcome} at line {want.line} ({want.reason}), now: {r.text()}")
    missing = set(expected) - {r.name for r in results}
    problems += [f"listed but not in the corpus: {name}" for name in sorted(missing)]
    assert not problems, "\n".join(problems)
    passed = sum(r.outcome == "pass" for r in results)
    assert passed >= PASS_FLOOR
