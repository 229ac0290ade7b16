"""The netem path's exact tc requests, checked without a kernel (this one has no sch_netem)."""

from __future__ import annotations

import pytest

from lab.kernel.impair.netem import netem_remove_requests, netem_requests
from lab.model.impairment import Impairment

sched_netem = pytest.importorskip("pyroute2.netlink.rtnl.tcmsg.sched_netem")


def test_full_profile() -> None:
    imp = Impairment.model_validate(
        {"delay": "20ms", "jitter": "5ms", "loss": "2%", "duplicate": "1%", "reorder": "25%",
         "corrupt": "0.1%", "rate": "10mbit", "limit": 500}
    )
    [(command, kind, kwargs)] = netem_requests(7, imp)
    assert (command, kind) == ("replace", "netem")
    assert kwargs == pytest.approx({
        "index": 7, "handle": "1:", "delay": 20000, "jitter": 5000, "loss": 2.0, "duplicate": 1.0,
        "limit": 500, "prob_reorder": 25.0, "prob_corrupt": 0.1, "rate": 1_250_000,
    })
    assert isinstance(kwargs["rate"], int)  # pyroute2 passes an int through as bytes/s


def test_delay_only_sends_no_optional_attributes() -> None:
    [(_, _, kwargs)] = netem_requests(3, Impairment.model_validate({"delay": "250us"}))
    assert kwargs == {"index": 3, "handle": "1:", "delay": 250, "jitter": 0, "loss": 0.0,
                      "duplicate": 0.0, "limit": 1000}


def test_pyroute2_encodes_them() -> None:
    """pyroute2's own netem plugin accepts the keywords and yields the kernel's fields."""
    imp = Impairment.model_validate({"delay": "20ms", "loss": "10%", "reorder": "5%", "rate": "8mbit",
                                     "corrupt": "1%"})
    [(_, _, kwargs)] = netem_requests(1, imp)
    opts = sched_netem.get_parameters(dict(kwargs))
    assert opts["limit"] == 1000
    assert opts["loss"] == int((2**32 - 1) * 0.1)
    assert opts["gap"] == 1  # pyroute2 sets it for reorder, as tc does
    attrs = dict((name, value) for name, value in opts["attrs"])
    assert attrs["TCA_NETEM_RATE"]["rate"] == 1_000_000
    assert attrs["TCA_NETEM_REORDER"]["prob_reorder"] == int((2**32 - 1) * 0.05)
    assert attrs["TCA_NETEM_CORRUPT"]["prob_corrupt"] == int((2**32 - 1) * 0.01)


def test_remove() -> None:
    assert netem_remove_requests(9) == [("del", "netem", {"index": 9, "handle": "1:"})]
