"""quota=requests|tokens: a used-up per-minute quota, 429 with the rate-limit headers."""

from __future__ import annotations

import json

import httpx
import pytest
from playback import playback

from fake_providers import FakeProvider, FaultPlan, FaultSpecError
from fake_providers.faults.quota import Quota


def test_spec_parses_and_round_trips() -> None:
    plan = FaultPlan.parse("quota=tokens,quota-limit=40000,quota-reset=1500ms")
    assert plan.steps == (Quota("tokens", 40000, 1.5),)
    assert FaultPlan.parse(plan.spec()) == plan
    with pytest.raises(FaultSpecError, match="expected requests or tokens"):
        FaultPlan.parse("quota=bananas")
    with pytest.raises(FaultSpecError, match="quota-reset needs quota"):
        FaultPlan.parse("quota-reset=1s")


def test_on_the_wire_one_429_reply_and_nothing_streamed() -> None:
    trace = playback("quota=requests,quota-limit=3,quota-reset=250ms")
    assert trace.lines == ["reply 429"]
    error = json.loads(trace.body())["error"]
    assert "requests per minute (RPM): Limit 3" in error["message"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "path", "body"),
    [
        ("openai-chat", "/chat/completions", {"model": "gpt-4o", "messages": []}),
        ("anthropic", "/v1/messages", {"model": "claude", "max_tokens": 5, "messages": []}),
    ],
)
async def test_a_client_reads_the_quota_from_the_headers_of_its_own_provider(
    provider: FakeProvider, kind: str, path: str, body: dict[str, object]
) -> None:
    provider.add_fault("quota=tokens,quota-limit=40000,quota-reset=1500ms")
    async with httpx.AsyncClient() as client:
        r = await client.post(provider.url(kind) + path, json=body)
    assert r.status_code == 429
    assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("2", "1500")
    assert r.headers["x-ratelimit-remaining-tokens"] == "0"
    assert r.headers["x-ratelimit-reset-tokens"] == "1500ms"
    assert r.headers["anthropic-ratelimit-tokens-limit"] == "40000"
    error = r.json()
    if kind == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    else:
        assert "tokens per minute" in error["error"]["message"]
