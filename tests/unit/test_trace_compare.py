"""The trace comparison tool (tests/trace_compare.py) that proves a refactoring changed nothing."""

from __future__ import annotations

from pathlib import Path

from tests import trace_compare

SCRIPTS = [trace_compare.DRILL_DIR / n for n in ("handshake-active.pkt", "close-closing.pkt")]


def _record(out: Path) -> None:
    trace_compare.record_lossy(out / "lossy.jsonl", nbytes=20_000)
    trace_compare.record_drill(out / "drill", SCRIPTS)


def test_two_recordings_of_the_same_code_are_identical(tmp_path: Path) -> None:
    _record(tmp_path / "a")
    _record(tmp_path / "b")
    assert trace_compare.compare(tmp_path / "a", tmp_path / "b") == []
    lossy = (tmp_path / "a" / "lossy.jsonl").read_text().splitlines()
    assert '"kind":"StateChange"' in lossy[0]
    assert lossy[-1] == '{"result": [20000, 20000]}'  # both directions delivered in full
    drill = (tmp_path / "a" / "drill" / "close-closing.jsonl").read_text().splitlines()
    assert any('"new":"CLOSING"' in line for line in drill)
    assert drill[-1].startswith('{"passed": true')


def test_compare_names_the_differing_line_and_missing_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "t.jsonl").write_text("x\ny\n")
    (b / "t.jsonl").write_text("x\nz\n")
    (a / "only.jsonl").write_text("")
    assert trace_compare.compare(a, b) == [
        f"only in {a}: only.jsonl",
        "t.jsonl: line 2 differs (2 vs 2 lines)",
    ]
    assert trace_compare.main(["compare", str(a), str(b)]) == 1
    assert trace_compare.main(["compare", str(a), str(a)]) == 0
