"""The dispatcher's I3/I4 semantics, and each dispatcher defect bringing its bug back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from fake_providers import Closer, FakeProvider, Outcome
from reference_agent.agent import Agent
from reference_agent.config import AgentConfig
from reference_agent.defects import Defects
from reference_agent.dispatch import Dispatcher

pytestmark = pytest.mark.anyio
WAIT = 5.0
FIRST = "body-contains=first-marker,hold-before=3,gate=first"


@asynccontextmanager
async def dispatcher(
    provider: FakeProvider, *defects: str
) -> AsyncIterator[tuple[Dispatcher, str]]:
    config = AgentConfig(
        base_url=provider.url(),
        api_key="sk-test",
        model="gpt-4o",
        memory_extraction=False,
        defects=Defects.of(defects),
    )
    async with Agent(config) as agent:
        d = Dispatcher(agent)
        yield d, await d.new_session()


def requests_with(provider: FakeProvider, marker: str) -> int:
    return sum(1 for r in provider.ledger.requests() if marker.encode() in r.body)


async def test_accepted_run_cancelled_before_start_never_calls_the_model(
    provider: FakeProvider,
) -> None:
    async with dispatcher(provider) as (d, session):
        accepted = await d.submit(session, "followup-marker")
        answer = await d.cancel(session)  # nothing has been dispatched yet
        events = await d.wait_ended(accepted.stream_id, WAIT)
        assert answer.cancelled
        assert [e.kind for e in events] == ["cancelled"]
        assert requests_with(provider, "followup-marker") == 0
        roles = [(m.role, m.finish_reason) for m in d.transcript(session)]
        assert roles == [("user", None), ("assistant", "cancelled")]


async def test_stream_has_deltas_then_exactly_one_terminal_event(provider: FakeProvider) -> None:
    async with dispatcher(provider) as (d, session):
        accepted = await d.submit(session, "hello")
        kinds = [e.kind async for e in d.events(accepted.stream_id)]
        assert kinds[-1] == "completed"
        assert kinds.count("completed") == 1
        assert set(kinds[:-1]) == {"delta"}


async def test_stale_stream_id_is_refused_and_current_stream_runs_on(
    provider: FakeProvider,
) -> None:
    provider.add_fault("body-contains=new-marker,hold-before=3,gate=new")
    async with dispatcher(provider) as (d, session):
        old = await d.submit(session, "old turn")
        await d.wait_ended(old.stream_id, WAIT)
        new = await d.submit(session, "new-marker turn")
        await provider.gate("new").wait_reached()
        answer = await d.cancel(session, old.stream_id)
        assert not answer.cancelled
        provider.gate("new").release()
        events = await d.wait_ended(new.stream_id, WAIT)
        assert events[-1].kind == "completed"


async def queue_behind_held_first(
    d: Dispatcher, session: str, provider: FakeProvider
) -> tuple[str, str]:
    provider.add_fault(FIRST)
    first = await d.submit(session, "first-marker")
    await provider.gate("first").wait_reached()
    follow = await d.submit(session, "followup-marker")
    return first.stream_id, follow.stream_id


async def test_lose_cancel_before_start(provider: FakeProvider) -> None:
    async with dispatcher(provider, "lose-cancel-before-start") as (d, session):
        _, follow = await queue_behind_held_first(d, session, provider)
        answer = await d.cancel(session, follow)
        provider.gate("first").release()
        events = await d.wait_ended(follow, WAIT)
    assert not answer.cancelled
    assert events[-1].kind == "completed"
    assert requests_with(provider, "followup-marker") == 1


async def test_idle_cancel_poisons_next(provider: FakeProvider) -> None:
    async with dispatcher(provider, "idle-cancel-poisons-next") as (d, session):
        assert not (await d.cancel(session)).cancelled
        accepted = await d.submit(session, "next")
        events = await d.wait_ended(accepted.stream_id, WAIT)
    assert events[-1].kind == "cancelled"


async def test_queued_followup_survives_cancel(provider: FakeProvider) -> None:
    async with dispatcher(provider, "queued-followup-survives-cancel") as (d, session):
        first, follow = await queue_behind_held_first(d, session, provider)
        await d.cancel(session)
        assert (await d.wait_ended(first, WAIT))[-1].kind == "cancelled"
        assert (await d.wait_ended(follow, WAIT))[-1].kind == "completed"
    assert requests_with(provider, "followup-marker") == 1


async def test_handoff_window(provider: FakeProvider) -> None:
    async with dispatcher(provider, "handoff-window") as (d, session):
        first, follow = await queue_behind_held_first(d, session, provider)
        provider.gate("first").release()
        await d.wait_ended(first, WAIT)
        answer = await d.cancel(session)  # lands in the gap: the session looks idle
        assert not answer.cancelled
        assert (await d.wait_ended(follow, WAIT))[-1].kind == "completed"


async def test_cancel_not_owner_scoped(provider: FakeProvider) -> None:
    provider.add_fault("body-contains=new-marker,hold-before=3,gate=new")
    async with dispatcher(provider, "cancel-not-owner-scoped") as (d, session):
        old = await d.submit(session, "old turn")
        await d.wait_ended(old.stream_id, WAIT)
        new = await d.submit(session, "new-marker turn")
        await provider.gate("new").wait_reached()
        answer = await d.cancel(session, old.stream_id)  # stale, but it hits the new turn
        events = await d.wait_ended(new.stream_id, WAIT)
    assert answer.cancelled
    assert events[-1].kind == "cancelled"


async def test_no_terminal_cancel_event(provider: FakeProvider) -> None:
    provider.add_fault("header=x-agent-purpose:turn,hold-before=3,gate=main")
    async with dispatcher(provider, "no-terminal-cancel-event") as (d, session):
        accepted = await d.submit(session, "stop me")
        await provider.gate("main").wait_reached()
        await d.cancel(session)
        await d.wait_ended(accepted.stream_id, WAIT)
        kinds: list[str] = []
        with anyio.move_on_after(0.2) as watch:  # a watch window: the stream never ends
            async for event in d.events(accepted.stream_id):
                kinds.append(event.kind)
    assert watch.cancelled_caught
    assert "cancelled" not in kinds


async def test_leaving_a_stream_stops_its_run_and_closes_the_connection(
    provider: FakeProvider,
) -> None:
    provider.add_fault("body-contains=leave-marker,pace=5ms,hold-before=4,gate=main")
    async with dispatcher(provider) as (d, session):
        accepted = await d.submit(session, "leave-marker turn")
        await provider.gate("main").wait_reached()
        await d.leave(accepted.stream_id)
        events = await d.wait_ended(accepted.stream_id, WAIT)
        (conn,) = provider.ledger.connections()
        await provider.ledger.wait_for(lambda _: not conn.open, WAIT, "the connection to close")
    assert events[-1].kind == "cancelled"
    assert conn.closed_by is Closer.CLIENT


async def test_drain_on_leave(provider: FakeProvider) -> None:
    provider.add_fault("body-contains=leave-marker,pace=5ms,hold-before=4,gate=main")
    async with dispatcher(provider, "drain-on-leave") as (d, session):
        accepted = await d.submit(session, "leave-marker turn")
        await provider.gate("main").wait_reached()
        await d.leave(accepted.stream_id)
        provider.gate("main").release()
        events = await d.wait_ended(accepted.stream_id, WAIT)  # read to the end, for nobody
        (request,) = provider.ledger.requests()
    assert events[-1].kind == "completed"
    assert request.outcome is Outcome.COMPLETE
