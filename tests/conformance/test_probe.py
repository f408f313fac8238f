"""The conformance probe: one plain turn, one held and cancelled, one after, recorded as facts."""

from __future__ import annotations

import pytest

from conformance.probe import run_probe
from fake_providers.kinds import ProviderKind

pytestmark = pytest.mark.anyio


async def test_the_probe_records_the_reference_agents_cancel_as_a_prompt_client_close() -> None:
    report = await run_probe("reference", ProviderKind.ANTHROPIC, patience=5.0)
    steps = {s["what"]: s for s in report["steps"]}
    assert "probe stopped" not in steps  # the probe itself ran to the end
    cancelled = steps["turn B (held, cancelled)"]
    assert cancelled["held"] and cancelled["ack"]["cancelled"]
    assert cancelled["close"]["by"] == "client"
    assert cancelled["stop_reason"] == "cancelled"
    assert cancelled["requests_after_cancel"] == []
    assert steps["turn C (after the cancel)"]["stop_reason"] == "completed"
    assert report["open_after_stop"] == []
