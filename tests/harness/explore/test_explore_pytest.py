"""Explore from a project's own test suite: the plugin's fixture as a hypothesis property,
driven by the plugin's target options and `--hypothesis-seed`."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PROPERTY = """
import pytest
from hypothesis import Phase, given, settings, strategies as st


@pytest.fixture(scope="session", autouse=True)
def quick_shrinking(cancel_harness_explorer):
    cancel_harness_explorer.shrink_budget = 3


@settings(max_examples=12, deadline=None, phases=[Phase.generate, Phase.shrink])
@given(data=st.data())
def test_cancellation_paths(cancel_harness_explorer, data):
    cancel_harness_explorer.check(data.draw(cancel_harness_explorer.schedules()))
"""
OPTIONS = (
    "-p",
    "no:cacheprovider",
    "--hypothesis-seed=3",
    "--cancel-harness-tempo=0.01",
    "--cancel-harness-select=esc.mid-stream",
)


def test_the_property_passes_on_a_correct_agent_and_shrinks_a_broken_one(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(PROPERTY)
    pytester.runpytest(*OPTIONS).assert_outcomes(passed=1)
    broken = pytester.runpytest(*OPTIONS, "--cancel-harness-defect=provider-ignores-cancel")
    broken.assert_outcomes(failed=1)
    out = broken.stdout.str()
    assert "close the provider connection" in out
    assert (
        "replay: cancel-harness explore --target reference --defect provider-ignores-cancel" in out
    )
