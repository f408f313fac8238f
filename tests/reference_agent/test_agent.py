"""The reference agent end to end, against the real fake provider over loopback sockets.

What a user of the agent cares about: a turn commits exactly once or not at all, a cancel
reaches the socket (the ledger is the witness), deadlines and limits end turns with the
right stop reason, and background work has its own lifetime (INCIDENTS.md I1, I2, I5).
Events are ordered with provider gates, ledger waits and the agent's own event stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from agent_support import Watch, closed_by_client, connection_of, request_with

from fake_providers import ContentSpec, FakeProvider, FaultPlan, Match, tool_call
from fake_providers.ledger import Outcome, now_ns
from reference_agent.agent import Agent, SessionBusyError
from reference_agent.config import AgentConfig
from reference_agent.model import StopReason, ToolCall, Usage

pytestmark = pytest.mark.anyio

URL_KIND = {"openai-chat": "openai", "anthropic": "anthropic", "gemini": "gemini"}
KINDS = pytest.mark.parametrize("kind", list(URL_KIND))
WAIT = 5.0  # bound on every wait for a turn


@asynccontextmanager
async def running(
    provider: FakeProvider, kind: str = "openai-chat", **changes: object
) -> AsyncIterator[tuple[Agent, Watch]]:
    config = AgentConfig(
        provider=kind,
        base_url=provider.url(URL_KIND[kind]),
        api_key="sk-test",
        model="gpt-4o",
        stale_timeout=2.0,
        backoff_base=0.01,
        backoff_max=0.05,
        memory_extraction=False,
    ).with_(**changes)
    watch = Watch()
    async with Agent(config, on_event=watch) as agent:
        yield agent, watch


def purposes(provider: FakeProvider) -> list[str | None]:
    return [r.header("x-agent-purpose") for r in provider.ledger.requests()]


# ------------------------------------------------------------------------- completed turn


@KINDS
async def test_completed_turn_persists_exactly_user_and_assistant(
    provider: FakeProvider, kind: str
) -> None:
    async with running(provider, kind) as (agent, _):
        session = await agent.new_session()
        outcome = await agent.ask(session, "hello", timeout=WAIT)
        assert outcome.stop_reason is StopReason.COMPLETED
        user, assistant = agent.transcript(session)
        assert (user.role, user.content) == ("user", "hello")
        assert (assistant.role, assistant.content) == ("assistant", outcome.text)
        assert outcome.text and assistant.finish_reason == "stop"
        assert user.turn_id == assistant.turn_id == outcome.turn_id
        assert outcome.usage.input_tokens > 0 and outcome.usage.output_tokens > 0
        assert agent.usage(session) == outcome.usage == assistant.usage
    assert purposes(provider) == ["turn"]


# -------------------------------------------------------------------------------- cancel


@KINDS
async def test_cancel_mid_stream_closes_the_socket_and_persists_nothing(
    provider: FakeProvider, kind: str
) -> None:
    provider.add_fault("hold-before=3,gate=main")
    async with running(provider, kind) as (agent, _):
        session = await agent.new_session()
        turn = await agent.submit(session, "hello")
        await provider.gate("main").wait_reached()
        t = now_ns()
        result = await agent.cancel(session)
        assert (result.cancelled, result.turn_id) == (True, turn.id)
        outcome = await turn.wait(WAIT)
        assert outcome.stop_reason is StopReason.CANCELLED
        assert agent.transcript(session) == []
        assert agent.usage(session) == Usage()
        [request] = provider.ledger.requests()
        await closed_by_client(provider, request, t, 0.1)  # I1: within 100 ms of the cancel


async def test_idle_cancel_is_a_noop_and_the_next_turn_completes(provider: FakeProvider) -> None:
    async with running(provider) as (agent, _):
        session = await agent.new_session()
        result = await agent.cancel(session)
        assert result.cancelled is False
        outcome = await agent.ask(session, "hello", timeout=WAIT)
        assert outcome.stop_reason is StopReason.COMPLETED
        assert [m.role for m in agent.transcript(session)] == ["user", "assistant"]


async def test_cancel_after_commit_changes_nothing(provider: FakeProvider) -> None:
    async with running(provider) as (agent, _):
        session = await agent.new_session()
        outcome = await agent.ask(session, "hello", timeout=WAIT)
        before = (agent.transcript(session), agent.usage(session))
        for result in (
            await agent.cancel(session),
            await agent.cancel(session, outcome.turn_id),
        ):
            assert result.cancelled is False
        assert (agent.transcript(session), agent.usage(session)) == before
        assert len(before[0]) == 2


async def test_cancel_during_backoff_ends_the_turn_without_another_request(
    provider: FakeProvider,
) -> None:
    provider.add_fault("nth=1,status=503")
    # A 30 s back-off: only the cancel can end this turn within the bound.
    async with running(provider, backoff_base=30.0, backoff_max=30.0) as (agent, watch):
        session = await agent.new_session()
        turn = await agent.submit(session, "hello")
        await watch.wait_for("model.retry")
        await agent.cancel(session)
        assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
        assert len(provider.ledger.requests()) == 1


async def test_cancel_during_a_tool_kills_its_subprocess(provider: FakeProvider) -> None:
    slow = ContentSpec(tool_calls=(tool_call("sleep", {"seconds": 30}),), tokens=0)
    provider.add_fault(FaultPlan(content=slow), match=Match(nth=1))
    async with running(provider) as (agent, watch):
        session = await agent.new_session()
        turn = await agent.submit(session, "sleep")
        await watch.wait_for("tool.started")
        await agent.cancel(session)
        assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
        assert agent.live_pids() == []
        assert agent.transcript(session) == []


# ---------------------------------------------------------------------- deadlines (I2)


async def test_turn_timeout_persists_nothing_even_when_the_provider_finishes_late(
    provider: FakeProvider,
) -> None:
    provider.add_fault("hold-before=3,gate=main")
    async with running(provider, turn_timeout=0.2) as (agent, watch):
        session = await agent.new_session()
        turn = await agent.submit(session, "hello")
        outcome = await turn.wait(WAIT)
        assert outcome.stop_reason is StopReason.TIMEOUT
        assert outcome.error is not None and "0.2s" in outcome.error
        [request] = provider.ledger.requests()
        await closed_by_client(provider, request, request.started_ns, 2.0)
        provider.gate("main").release()  # the provider would now finish the answer
        await provider.ledger.wait_for(lambda ledger: request.outcome, 2.0)
        assert agent.transcript(session) == []
        assert agent.usage(session) == Usage()
        assert watch.kinds("turn.committed") == []
        # The session is settled, not poisoned: the next turn works normally.
        assert (await agent.ask(session, "again", timeout=WAIT)).stop_reason is (
            StopReason.COMPLETED
        )
        assert [m.content for m in agent.transcript(session) if m.role == "user"] == ["again"]


async def test_silent_provider_ends_in_error_after_the_stale_timeout(
    provider: FakeProvider,
) -> None:
    provider.add_fault("hang-after=2")
    async with running(provider, stale_timeout=0.1, max_retries=1) as (agent, _):
        session = await agent.new_session()
        outcome = await agent.ask(session, "hello", timeout=WAIT)
        assert outcome.stop_reason is StopReason.ERROR
        assert outcome.error is not None and "StaleStreamError" in outcome.error
        assert agent.transcript(session) == []
    requests = provider.ledger.requests()
    assert len(requests) == 2  # stale is transient: retried once, as configured
    for request in requests:
        await closed_by_client(provider, request, request.started_ns, WAIT)


async def test_genuine_mid_stream_drop_is_retried(provider: FakeProvider) -> None:
    provider.add_fault("nth=1,reset-after=3")
    async with running(provider) as (agent, watch):
        session = await agent.new_session()
        outcome = await agent.ask(session, "hello", timeout=WAIT)
        assert outcome.stop_reason is StopReason.COMPLETED
        assert len(agent.transcript(session)) == 2
        assert len(watch.kinds("model.retry")) == 1
    [call] = provider.ledger.logical_calls()
    assert call.retries == 1


# ------------------------------------------------------------------ tool loop and limits


def echo_first(provider: FakeProvider) -> None:
    echo = ContentSpec(tool_calls=(tool_call("echo", {"text": "hi"}),), tokens=0)
    provider.add_fault(FaultPlan(content=echo), match=Match(nth=1))


async def test_tool_loop_persists_the_whole_exchange(provider: FakeProvider) -> None:
    echo_first(provider)
    async with running(provider) as (agent, _):
        session = await agent.new_session()
        outcome = await agent.ask(session, "echo hi", timeout=WAIT)
        assert outcome.stop_reason is StopReason.COMPLETED
        user, call, result, answer = agent.transcript(session)
        assert [m.role for m in (user, call, result, answer)] == [
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
        assert call.tool_calls == (ToolCall("call_echo_1", "echo", {"text": "hi"}),)
        assert (result.content, result.tool_call_id) == ("hi", "call_echo_1")
        assert answer.content == outcome.text and not answer.tool_calls
        assert agent.usage(session) == call.usage + answer.usage == outcome.usage
    assert purposes(provider) == ["turn", "turn"]


async def test_tool_loop_on_gemini_answers_each_call_by_name(provider: FakeProvider) -> None:
    """Gemini's function calls may come without ids: the result goes back by name."""
    echo_first(provider)
    async with running(provider, "gemini") as (agent, _):
        session = await agent.new_session()
        outcome = await agent.ask(session, "echo hi", timeout=WAIT)
        assert outcome.stop_reason is StopReason.COMPLETED
        _, call, result, answer = agent.transcript(session)
        assert [(c.name, c.arguments) for c in call.tool_calls] == [("echo", {"text": "hi"})]
        assert (result.content, result.tool_call_id) == ("hi", call.tool_calls[0].id)
        assert answer.content == outcome.text
    first, second = provider.ledger.requests()
    assert first.path == second.path == "/v1beta/models/gpt-4o:streamGenerateContent"
    sent = json.loads(second.body)["contents"]
    assert [c["role"] for c in sent] == ["user", "model", "user"]
    assert sent[1]["parts"] == [{"functionCall": {"name": "echo", "args": {"text": "hi"}}}]
    assert sent[2]["parts"] == [
        {"functionResponse": {"name": "echo", "response": {"result": "hi"}}}
    ]


async def test_max_steps_ends_the_tool_loop_with_nothing_persisted(
    provider: FakeProvider,
) -> None:
    echo_first(provider)
    async with running(provider, max_steps=1) as (agent, _):
        session = await agent.new_session()
        outcome = await agent.ask(session, "echo hi", timeout=WAIT)
        assert outcome.stop_reason is StopReason.MAX_TURNS
        assert agent.transcript(session) == []
    assert len(provider.ledger.requests()) == 1


async def test_token_budget_ends_the_turn_with_nothing_persisted(provider: FakeProvider) -> None:
    async with running(provider, max_budget_tokens=5) as (agent, _):
        session = await agent.new_session()
        outcome = await agent.ask(session, "hello", timeout=WAIT)
        assert outcome.stop_reason is StopReason.MAX_BUDGET
        assert agent.transcript(session) == []
        assert agent.usage(session) == Usage()


# ------------------------------------------------------------------ inline and background


async def test_compaction_is_inline_and_committed_with_the_turn(provider: FakeProvider) -> None:
    async with running(provider, compaction_threshold_chars=10) as (agent, watch):
        session = await agent.new_session()
        await agent.ask(session, "first", timeout=WAIT)
        outcome = await agent.ask(session, "second", timeout=WAIT)
        assert outcome.stop_reason is StopReason.COMPLETED
        roles = [(m.role, m.turn_id) for m in agent.transcript(session)]
        second = outcome.turn_id
        assert roles[2:] == [("summary", second), ("user", second), ("assistant", second)]
        assert [e.detail for e in watch.kinds("turn.committed")][-1] == "3 messages"
    assert purposes(provider) == ["turn", "compaction", "turn"]


async def test_cancel_during_compaction_cancels_it(provider: FakeProvider) -> None:
    provider.add_fault("header=x-agent-purpose:compaction,hold-before=2,gate=compact")
    async with running(provider, compaction_threshold_chars=10) as (agent, _):
        session = await agent.new_session()
        await agent.ask(session, "first", timeout=WAIT)
        before = agent.transcript(session)
        turn = await agent.submit(session, "second")
        await provider.gate("compact").wait_reached()
        t = now_ns()
        await agent.cancel(session)
        assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
        assert agent.transcript(session) == before
        await closed_by_client(provider, request_with(provider, purpose="compaction"), t, 0.1)


async def test_memory_extraction_survives_a_cancel_of_the_next_turn(
    provider: FakeProvider,
) -> None:
    provider.add_fault("header=x-agent-purpose:memory,hold-before=2,gate=memory")
    async with running(provider, memory_extraction=True) as (agent, watch):
        session = await agent.new_session()
        assert (await agent.ask(session, "first", timeout=WAIT)).stop_reason is (
            StopReason.COMPLETED
        )
        await provider.gate("memory").wait_reached()
        provider.add_fault("header=x-agent-purpose:turn,hold-before=3,gate=turn")
        turn = await agent.submit(session, "zebra")
        await provider.gate("turn").wait_reached()
        t = now_ns()
        await agent.cancel(session)
        assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
        await closed_by_client(provider, request_with(provider, body="zebra"), t, 0.1)
        memory = request_with(provider, purpose="memory")
        assert connection_of(provider, memory).open  # Esc did not touch it
        provider.gate("memory").release()
        ended = await watch.wait_for("background.ended")
        assert ended.detail == "completed"
        [facts] = agent.memories[session]
        assert facts
        assert await provider.ledger.wait_for(lambda ledger: memory.outcome) is Outcome.COMPLETE


async def test_shutdown_cancels_a_held_memory_request(provider: FakeProvider) -> None:
    provider.add_fault("header=x-agent-purpose:memory,hold-before=2,gate=memory")
    with anyio.fail_after(WAIT):
        async with running(provider, memory_extraction=True) as (agent, watch):
            session = await agent.new_session()
            await agent.ask(session, "hello", timeout=WAIT)
            await provider.gate("memory").wait_reached()
            t = now_ns()
    await closed_by_client(provider, request_with(provider, purpose="memory"), t, 1.0)
    assert (await watch.wait_for("background.ended")).detail == "cancelled"
    assert agent.memories == {}


# ------------------------------------------------------------------------------ sessions


async def test_submitting_while_a_turn_runs_is_refused(provider: FakeProvider) -> None:
    provider.add_fault("hold-before=3,gate=main")
    async with running(provider) as (agent, _):
        session = await agent.new_session()
        turn = await agent.submit(session, "first")
        await provider.gate("main").wait_reached()
        with pytest.raises(SessionBusyError):
            await agent.submit(session, "second")
        await agent.cancel(session)
        assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
        provider.gate("main").release()
        assert (await agent.ask(session, "third", timeout=WAIT)).stop_reason is (
            StopReason.COMPLETED
        )
        assert [m.content for m in agent.transcript(session) if m.role == "user"] == ["third"]


async def test_cancelling_one_session_leaves_the_other_running(provider: FakeProvider) -> None:
    provider.add_fault("body-contains=aardvark,hold-before=3,gate=a")
    provider.add_fault("body-contains=quokka,hold-before=3,gate=b")
    async with running(provider) as (agent, _):
        one, two = await agent.new_session(), await agent.new_session()
        first = await agent.submit(one, "aardvark")
        second = await agent.submit(two, "quokka")
        await provider.gate("a").wait_reached()
        await provider.gate("b").wait_reached()
        t = now_ns()
        await agent.cancel(one)
        assert (await first.wait(WAIT)).stop_reason is StopReason.CANCELLED
        await closed_by_client(provider, request_with(provider, body="aardvark"), t, 0.1)
        assert connection_of(provider, request_with(provider, body="quokka")).open
        assert not second.done
        provider.gate("b").release()
        assert (await second.wait(WAIT)).stop_reason is StopReason.COMPLETED
        assert agent.transcript(one) == []
        assert [m.role for m in agent.transcript(two)] == ["user", "assistant"]
