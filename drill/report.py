"""What running a script gives: an outcome (pass, fail, or unsupported naming the construct),
the first failure with its line, expected and actual, and notes on what the runner skipped."""

from __future__ import annotations

from dataclasses import asdict, dataclass

PASS, FAIL, UNSUPPORTED = "pass", "fail", "unsupported"


@dataclass(frozen=True)
class Failure:
    line: int  # 0 when the problem is not tied to a line (a script that does not parse: see message)
    message: str
    expected: str | None = None
    actual: str | None = None


class ScriptFailed(Exception):
    """Ends a run: the script's first failure."""

    def __init__(self, line: int, message: str, expected: str | None = None, actual: str | None = None):
        super().__init__(message)
        self.failure = Failure(line, message, expected, actual)


class ScriptUnsupported(ScriptFailed):
    """The script needs `construct`, which the runner or the stack does not have."""

    def __init__(self, line: int, construct: str) -> None:
        super().__init__(line, f"unsupported: {construct}")
        self.construct = construct


def usecs_text(usecs: float) -> str:
    """A script time in messages: seconds with microseconds."""
    return f"{usecs / 1e6:.6f}"


@dataclass(frozen=True)
class ScriptResult:
    name: str
    passed: bool
    failure: Failure | None = None
    events: int = 0  # events executed (all of them when the script passed)
    virtual_seconds: float = 0.0  # the virtual time the run ended at
    unsupported: str | None = None  # the construct the runner or the stack lacks (outcome unsupported)
    notes: tuple[str, ...] = ()  # shell lines skipped or ignored, with their line

    @property
    def outcome(self) -> str:
        if self.passed:
            return PASS
        return UNSUPPORTED if self.unsupported is not None else FAIL

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "script": self.name,
            "outcome": self.outcome,
            "passed": self.passed,
            "events": self.events,
            "virtual_seconds": round(self.virtual_seconds, 6),
        }
        if self.unsupported is not None:
            data["unsupported"] = self.unsupported
        data["failure"] = asdict(self.failure) if self.failure else None
        if self.notes:
            data["notes"] = list(self.notes)
        return data

    def text(self) -> str:
        """One line for a pass; for a failure the line number, the message, expected and actual."""
        if self.passed or self.failure is None:
            return f"PASS {self.name}"
        f = self.failure
        where = f"{self.name}:{f.line}" if f.line else self.name
        word = "UNSUPPORTED" if self.unsupported is not None else "FAIL"
        lines = [f"{word} {where}: {f.message}"]
        if f.expected is not None:
            lines.append(f"  expected: {f.expected}")
        if f.actual is not None:
            lines.append(f"  actual:   {f.actual}")
        return "\n".join(lines)


def summary(results: list[ScriptResult]) -> dict[str, object]:
    passed = sum(r.outcome == PASS for r in results)
    unsupported = sum(r.outcome == UNSUPPORTED for r in results)
    return {
        "scripts": len(results),
        "passed": passed,
        "failed": len(results) - passed - unsupported,
        "unsupported": unsupported,
    }
