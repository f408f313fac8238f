"""truncate-after=N: the client gets N events and half of the next, then a FIN."""

from __future__ import annotations

import httpx
import pytest
from playback import completion_events, playback

from fake_providers import CloseKind, Closer, FakeProvider, FaultPlan, FaultSpecError
from fake_providers.faults.truncate_after import TruncateAfter

EVENTS = completion_events(3)


def test_spec_parses_and_round_trips() -> None:
    plan = FaultPlan.parse("truncate-after=2")
    assert plan.steps == (TruncateAfter(2),)
    assert plan.spec() == "truncate-after=2"
    with pytest.raises(FaultSpecError, match="a whole number of events"):
        FaultPlan.parse("truncate-after=half")


def test_on_the_wire_half_of_the_next_event_then_fin() -> None:
    trace = playback("truncate-after=2")
    assert trace.lines == ["respond 200", "write 2", "write 0", "close fin"]
    third = EVENTS[2]
    assert trace.body() == EVENTS[0] + EVENTS[1] + third[: len(third) // 2]
    assert trace.events == [len(EVENTS[0]), len(EVENTS[1])]  # the half event is not an event


@pytest.mark.anyio
async def test_an_sdk_client_sees_a_body_that_ends_mid_event(provider: FakeProvider) -> None:
    provider.add_fault("truncate-after=2")
    body = {"model": "gpt-4o", "stream": True, "messages": []}
    received = bytearray()
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            async with client.stream("POST", provider.url() + "/chat/completions", json=body) as r:
                async for chunk in r.aiter_raw():
                    received += chunk
    conn = provider.ledger.connections()[0]
    assert (conn.closed_by, conn.close_kind, conn.events_sent) == (Closer.SERVER, CloseKind.FIN, 2)
    assert received.count(b"\n\n") == 2
    assert not received.endswith(b"\n\n")
