"""How explore classifies what a played example raised: a timed verdict the harness could
not have observed in time is indeterminate (re-run), never a counterexample."""

from __future__ import annotations

from harness.checks import CheckFailed
from harness.explore.host import Status, classify
from harness.timing import Indeterminate


def test_the_runners_indeterminate_is_explores_indeterminate() -> None:
    """A check shared with the catalogue (ctx.checks) raises harness.timing.Indeterminate:
    explore must re-run it, not report it as an error or a failure."""
    group = BaseExceptionGroup("example", [Indeterminate("late by a stall")])
    assert classify(group, 10.0) == (Status.INDETERMINATE, "late by a stall")
    assert classify(CheckFailed("stuck"), 10.0)[0] is Status.FAILED
