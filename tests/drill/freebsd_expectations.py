"""The expectations file of the FreeBSD TCP test suite: reading it, and writing it from a run.

`freebsd-expectations.txt` lists every script of the corpus that does not pass under
`tcplab drill --profile freebsd`, one per line: `OUTCOME SCRIPT:LINE REASON`, where LINE is the
line the script stops at (0 for the script as a whole). Regenerate it after a deliberate change:

    .venv/bin/python tests/drill/freebsd_expectations.py --write

which keeps the reason of every entry whose outcome and line did not change and gives new
entries the reason `classify` finds (review those).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
EXPECTATIONS = HERE / "freebsd-expectations.txt"
CORPUS_ENV = "TCPLAB_CONFORMANCE_DIR"  # overrides <project root>/../shared/conformance
CORPUS_NAME = "freebsd-tcp-testsuite"
PROFILE = "freebsd"
HEADER = """\
# The FreeBSD TCP test suite (../shared/conformance/freebsd-tcp-testsuite, BSD-2-Clause) run by
# `tcplab drill --corpus DIR --profile freebsd`: every script that does not pass, with the line it
# stops at and why. A script missing here must pass; tests/drill/test_freebsd_corpus.py fails on
# any other outcome or line. Regenerate: .venv/bin/python tests/drill/freebsd_expectations.py --write
# Reasons: "platform:" a choice FreeBSD makes where the RFCs allow it (the stack makes another);
# "missing feature:" the stack or the runner lacks it; "stack bug:" the RFC section it breaks.
"""


@dataclass(frozen=True)
class Expectation:
    outcome: str  # "fail" or "unsupported"
    line: int
    reason: str


def corpus_dir() -> Path | None:
    """The corpus: $TCPLAB_CONFORMANCE_DIR/freebsd-tcp-testsuite when that variable is set, else
    shared/conformance/freebsd-tcp-testsuite beside the project root (CI keeps shared/ beside the
    clone) or beside one of its ancestors (a git worktree under the main tree); None when absent."""
    base = os.environ.get(CORPUS_ENV)
    if base:
        path = Path(base) / CORPUS_NAME
        return path if path.is_dir() else None
    for ancestor in HERE.resolve().parents[2:]:
        path = ancestor / "shared" / "conformance" / CORPUS_NAME
        if path.is_dir():
            return path
    return None


def read(path: Path = EXPECTATIONS) -> dict[str, Expectation]:
    entries: dict[str, Expectation] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        parts = raw.split(None, 2)
        script, _, line = parts[1].rpartition(":") if len(parts) == 3 else ("", "", "")
        if len(parts) != 3 or parts[0] not in ("fail", "unsupported") or not line.isdigit():
            raise ValueError(f"{path.name}:{number}: expected 'OUTCOME SCRIPT:LINE REASON', got {raw!r}")
        entries[script] = Expectation(parts[0], int(line), parts[2])
    return entries


_UNSUPPORTED = [
    (r"fastopen|'FO'", "missing feature: TCP Fast Open (RFC 7413)"),
    (r"insecure_rst=1", "FreeBSD option: RST accepted anywhere in the window (RFC 5961 section 3 off)"),
    (r"insecure_syn=1", "FreeBSD option: SYN in a synchronized state resets (RFC 5961 section 4 off)"),
    (r"udp|UDP", "missing feature: TCP over UDP encapsulation (FreeBSD's udp_tunneling_port)"),
    (r"ecn", "missing feature: ECN (RFC 3168)"),
    (r"icmp|IP-level", "missing feature (runner): ICMP and IP-level packets in scripts"),
    (r"%\{", "missing feature (runner): %{ }% Python blocks (tcpi_state assertions)"),
    (r"md5|MD5", "missing feature: TCP MD5 signatures (RFC 2385)"),
]

_FAIL = [
    (
        r"rcv-icmp-hard-error-ignored-ipv6.*option 1 is <mss \d+>, expected <mss 1240>",
        "platform: after a Packet Too Big (mtu 1300) FreeBSD's retransmitted SYN offers an MSS from "
        "the path MTU its host cache learnt (1300 - 60); the stack's MSS option stays the interface "
        "MTU less the IPv6 and TCP headers (RFC 9293 3.7.1, RFC 6691 section 2: MMS_R, not the path)",
    ),
    (
        r"expected S?E",
        "missing feature: ECN (RFC 3168): the peer's SYN asks for ECN and FreeBSD (ecn.enable=2) "
        "agrees; the stack never negotiates ECN",
    ),
    (r"parse error", "the upstream script does not parse (a typo in the corpus)"),
]


def classify(name: str, outcome: str, message: str, construct: str | None) -> str:
    """A first reason for a script that does not pass (the file's reasons are reviewed text)."""
    if outcome == "unsupported":
        text = construct or message
        for pattern, reason in _UNSUPPORTED:
            if re.search(pattern, text):
                return reason
        return f"missing feature: {text}"
    for pattern, reason in _FAIL:
        if re.search(pattern, message) or re.search(pattern, f"{name} {message}"):
            return reason
    return f"unclassified: {message}"


def write() -> None:
    from drill.corpus import run_corpus

    root = corpus_dir()
    if root is None:
        sys.exit(f"no corpus: set {CORPUS_ENV} or put shared/conformance beside the project")
    old = read() if EXPECTATIONS.exists() else {}
    lines = [HEADER]
    for r in run_corpus(root, profile=PROFILE):
        if r.outcome == "pass" or r.failure is None:
            continue
        kept = old.get(r.name)
        same = kept is not None and (kept.outcome, kept.line) == (r.outcome, r.failure.line)
        if kept is not None and same and not kept.reason.startswith("unclassified"):
            reason = kept.reason
        else:
            reason = classify(r.name, r.outcome, r.failure.message, r.unsupported)
        lines.append(f"{r.outcome} {r.name}:{r.failure.line} {reason}\n")
    EXPECTATIONS.write_text("".join(lines), encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    write()
