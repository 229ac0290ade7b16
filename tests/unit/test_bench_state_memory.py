"""The memory benchmark drives each state it reports (so its rows cannot silently measure nothing)."""

from __future__ import annotations

from tests.bench import state_memory


def test_each_row_holds_its_connections_and_cookies_hold_none() -> None:
    result = state_memory.measure(100)
    for state in ("half_open", "established_idle", "time_wait"):
        assert result[state]["connections_held"] == 100
        assert result[state]["bytes_per_connection"] > 500
    assert result["syn_cookie"]["connections_held"] == 0
    assert result["syn_cookie"]["bytes_per_connection"] < 64
    labels = [label for label, _ in state_memory.rows(result)]
    assert "TIME_WAIT (orphaned)" in labels and "SYN answered with a cookie" in labels
