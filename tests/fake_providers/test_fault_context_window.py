"""context-window=N: the request is refused (400) as too long, in the provider's own words."""

from __future__ import annotations

import json

import httpx
import pytest
from playback import playback

from fake_providers import FakeProvider, FaultPlan, FaultSpecError
from fake_providers.faults.context_window import ContextWindow


def test_spec_parses_and_round_trips() -> None:
    plan = FaultPlan.parse("context-window=200000,context-style=anthropic")
    assert plan.steps == (ContextWindow(200000, "anthropic"),)
    assert FaultPlan.parse(plan.spec()) == plan
    assert FaultPlan.parse("context-window=8000").spec() == "context-window=8000"
    with pytest.raises(FaultSpecError, match="expected one of openai"):
        FaultPlan.parse("context-window=10,context-style=cobol")
    with pytest.raises(FaultSpecError, match="whole number of tokens"):
        FaultPlan.parse("context-window=lots")


def test_on_the_wire_a_400_with_the_providers_wording() -> None:
    trace = playback("context-window=128000")
    assert trace.lines == ["reply 400"]
    message = json.loads(trace.body())["error"]["message"]
    assert message.startswith("This model's maximum context length is 128000 tokens")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "style", "path", "body", "said"),
    [
        (
            "anthropic",
            "anthropic",
            "/v1/messages",
            {"model": "c", "max_tokens": 5, "messages": []},
            "prompt is too long: 225000 tokens > 200000 maximum",
        ),
        (
            "gemini",
            "gemini",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            {"contents": []},
            "exceeds the maximum number of tokens allowed (200000)",
        ),
    ],
)
async def test_each_provider_refuses_in_its_own_envelope(
    provider: FakeProvider, kind: str, style: str, path: str, body: dict[str, object], said: str
) -> None:
    provider.add_fault(f"context-window=200000,context-style={style}")
    async with httpx.AsyncClient() as client:
        r = await client.post(provider.origin + path, json=body)
    assert r.status_code == 400
    assert said in r.text
    if kind == "gemini":
        assert r.json()["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert r.json()["error"]["type"] == "invalid_request_error"
