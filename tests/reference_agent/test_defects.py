"""The defect switches: parsing, and proof that each one brings its bug back.

One small agent-level test per defect, named after it, shows the behaviour its incident
describes (INCIDENTS.md); test_agent.py shows the correct agent does the opposite. A
scenario can only be trusted to catch a bug if the bug can be switched on.
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from agent_support import Watch, closed_by_client, connection_of, request_with

from fake_providers import ContentSpec, FakeProvider, FaultPlan, Match, tool_call
from fake_providers.ledger import Outcome, now_ns
from reference_agent.agent import Agent
from reference_agent.config import AgentConfig
from reference_agent.defects import ENV_VAR, Defect, Defects, UnknownDefectError
from reference_agent.engine import TurnState
from reference_agent.model import StopReason
from reference_agent.policy import Policy
from reference_agent.providers import CallHandle, ModelEvent, ModelRequest, ProviderClient

WAIT = 5.0
ALL = ", ".join(d.value for d in Defect)


# ------------------------------------------------------------------------------- parsing


def test_of_accepts_names_and_members() -> None:
    defects = Defects.of([" commit-after-timeout ", Defect.PROVIDER_IGNORES_CANCEL])
    assert defects.on(Defect.COMMIT_AFTER_TIMEOUT)
    assert defects.on(Defect.PROVIDER_IGNORES_CANCEL)
    assert not defects.on(Defect.CANCEL_ALL_SESSIONS)
    assert defects.names() == ["commit-after-timeout", "provider-ignores-cancel"]
    assert defects and not Defects() and not Defects.of([])


def test_from_env_reads_a_comma_separated_list() -> None:
    env = {ENV_VAR: "retry-after-forced-close,backoff-ignores-cancel"}
    assert ENV_VAR == "REFERENCE_AGENT_DEFECTS"
    assert Defects.from_env(env).names() == ["backoff-ignores-cancel", "retry-after-forced-close"]
    assert not Defects.from_env({})
    assert not Defects.from_env({ENV_VAR: " , ,"})
    config = AgentConfig.from_env(environ={ENV_VAR: "stale-timeout-ignored"})
    assert config.defects.names() == ["stale-timeout-ignored"]


def test_unknown_name_gives_one_line_with_a_hint_and_the_valid_list() -> None:
    with pytest.raises(UnknownDefectError) as caught:
        Defects.from_env({ENV_VAR: "commit-after-timeout,provider-ignore-cancel"})
    message = str(caught.value)
    assert "\n" not in message
    assert "unknown defect 'provider-ignore-cancel'" in message
    assert "did you mean 'provider-ignores-cancel'?" in message
    assert message.endswith(f"valid: {ALL}")


def test_unknown_name_without_a_close_match_has_no_hint() -> None:
    with pytest.raises(UnknownDefectError) as caught:
        Defects.of(["zzz"])
    assert "did you mean" not in str(caught.value)
    assert str(caught.value) == f"unknown defect 'zzz'; valid: {ALL}"


def test_every_defect_has_a_direct_test() -> None:
    """Each defect has a test named after it in one of the reference agent's test modules."""
    here = Path(__file__).parent
    defined = {
        node.name
        for module in here.glob("test_*.py")
        for node in ast.walk(ast.parse(module.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    names = {f"test_{d.value.replace('-', '_')}" for d in Defect}
    assert names <= defined, sorted(names - defined)


# ---------------------------------------------------------------------------- helpers


@asynccontextmanager
async def defective(
    provider: FakeProvider, defect: Defect, **changes: object
) -> AsyncIterator[tuple[Agent, Watch, str]]:
    """An agent with exactly one defect, and a fresh session."""
    config = AgentConfig(
        base_url=provider.url("openai"),
        api_key="sk-test",
        model="gpt-4o",
        stale_timeout=2.0,
        backoff_base=0.01,
        backoff_max=0.05,
        memory_extraction=False,
        defects=Defects.of([defect]),
    ).with_(**changes)
    watch = Watch()
    with anyio.fail_after(3 * WAIT):
        async with Agent(config, on_event=watch) as agent:
            yield agent, watch, await agent.new_session()


class FirstEvent:
    """A provider client that tells when the agent has read the first event of a response
    (a gate reached on the server does not mean the client has parsed the headers yet)."""

    def __init__(self, inner: ProviderClient) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.seen = anyio.Event()

    async def attempt(self, request: ModelRequest, call: CallHandle) -> AsyncIterator[ModelEvent]:
        attempt = self.inner.attempt(request, call)
        assert isinstance(attempt, AsyncGenerator)
        async with aclosing(attempt) as events:
            async for event in events:
                self.seen.set()
                yield event


# ------------------------------------------------------------------- one test per defect

pytestmark = pytest.mark.anyio


async def test_provider_ignores_cancel(provider: FakeProvider) -> None:
    """I1: the loop stops, the socket does not; the model writes on into a dead channel."""
    provider.add_fault("hold-before=3,gate=main")
    async with defective(provider, Defect.PROVIDER_IGNORES_CANCEL) as (agent, watch, session):
        turn = await agent.submit(session, "hello")
        await provider.gate("main").wait_reached()
        t = now_ns()
        await agent.cancel(session)
        assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
        [request] = provider.ledger.requests()
        assert connection_of(provider, request).open
        provider.gate("main").release()
        await watch.wait_for("model.worker-exit")
        assert await provider.ledger.wait_for(lambda ledger: request.outcome) is Outcome.COMPLETE
        assert request.events_after(t) > 0  # read to the end, after the cancel
        assert agent.transcript(session) == []


async def test_cancel_checked_on_next_chunk(provider: FakeProvider) -> None:
    """I1 variant: with nothing in flight the cancel waits for the provider's next chunk."""
    provider.add_fault("hold-before=2,gate=main")  # only the role chunk is out: no text
    async with defective(provider, Defect.CANCEL_CHECKED_ON_NEXT_CHUNK) as (agent, _, session):
        turn = await agent.submit(session, "hello")
        await provider.gate("main").wait_reached()
        await agent.cancel(session)
        assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
        [request] = provider.ledger.requests()
        assert connection_of(provider, request).open
        released = now_ns()
        provider.gate("main").release()
        closed = await closed_by_client(provider, request, released, WAIT)
        assert closed.closed_ns is not None and closed.closed_ns > released
        assert request.events_after(released) > 0


async def test_background_tied_to_user_cancel(provider: FakeProvider) -> None:
    """I1, the opposite mistake: Esc on the next turn kills the memory extraction."""
    provider.add_fault("header=x-agent-purpose:memory,hold-before=2,gate=memory")
    async with defective(
        provider, Defect.BACKGROUND_TIED_TO_USER_CANCEL, memory_extraction=True
    ) as (agent, watch, session):
        await agent.ask(session, "hello", timeout=WAIT)
        await provider.gate("memory").wait_reached()
        provider.add_fault("header=x-agent-purpose:turn,hold-before=3,gate=turn")
        turn = await agent.submit(session, "zebra")
        await provider.gate("turn").wait_reached()
        t = now_ns()
        await agent.cancel(session)
        await turn.wait(WAIT)
        await closed_by_client(provider, request_with(provider, purpose="memory"), t, 0.1)
        assert (await watch.wait_for("background.ended")).detail != "completed"
        assert session not in agent.memories


async def test_commit_after_timeout(provider: FakeProvider) -> None:
    """I2: the caller is told `timeout`, then the abandoned worker commits a ghost turn."""
    provider.add_fault("hold-before=3,gate=main")
    async with defective(provider, Defect.COMMIT_AFTER_TIMEOUT, turn_timeout=0.2) as (
        agent,
        watch,
        session,
    ):
        turn = await agent.submit(session, "hello")
        assert (await turn.wait(WAIT)).stop_reason is StopReason.TIMEOUT
        assert agent.transcript(session) == []
        provider.gate("main").release()
        await watch.wait_for("turn.committed")
        assert [m.role for m in agent.transcript(session)] == ["user", "assistant"]


async def test_retry_after_forced_close(provider: FakeProvider) -> None:
    """I5: our own forced close is taken for a network error and retried."""
    provider.add_fault("hold-before=3,gate=main")
    async with defective(provider, Defect.RETRY_AFTER_FORCED_CLOSE) as (agent, _, session):
        client = agent.client = FirstEvent(agent.client)
        turn = await agent.submit(session, "hello")
        await client.seen.wait()  # the client holds the response: there is a socket to close
        t = now_ns()
        await agent.cancel(session)
        assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
        [retry] = await provider.ledger.wait_for(lambda ledger: ledger.requests_after(t), 2.0)
        assert retry.attempt == 1  # the same logical call, sent again after the cancel


async def test_retry_after_forced_close_shows_at_a_server_side_gate(
    provider: FakeProvider,
) -> None:
    provider.add_fault("hold-before=3,gate=main")
    async with defective(provider, Defect.RETRY_AFTER_FORCED_CLOSE) as (agent, _, session):
        turn = await agent.submit(session, "hello")
        await provider.gate("main").wait_reached()
        t = now_ns()
        await agent.cancel(session)
        assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
        # Watch window: with the defect working, the retry goes out within milliseconds.
        await provider.ledger.wait_for(lambda ledger: ledger.requests_after(t), 0.5)


async def test_turn_scoped_interrupt_flag(provider: FakeProvider) -> None:
    """I5: the next turn clears the per-turn flag, so a stale worker retries its own close
    and sends a request interleaved with the next turn's."""
    provider.add_fault("nth=1,hold-before=headers,gate=stale,reset-after=1")
    provider.add_fault("nth=2,hold-before=3,gate=next")
    async with defective(provider, Defect.TURN_SCOPED_INTERRUPT_FLAG) as (agent, _, session):
        stale = await agent.submit(session, "first")
        await provider.gate("stale").wait_reached()
        await agent.cancel(session)  # nothing to close yet: only the flags are set
        assert (await stale.wait(WAIT)).stop_reason is StopReason.CANCELLED
        turn = await agent.submit(session, "zebra")
        await provider.gate("next").wait_reached()
        provider.gate("stale").release()  # the stale worker's stream now breaks
        await provider.ledger.wait_for(lambda ledger: len(ledger.requests()) >= 3, 2.0)
        first_call = provider.ledger.logical_calls()[0]
        assert [r.ordinal for r in first_call.attempts] == [1, 3]
        assert not turn.done  # the retry landed while the next turn was running
        provider.gate("next").release()
        assert (await turn.wait(WAIT)).stop_reason is StopReason.COMPLETED


async def test_tool_survives_cancel(provider: FakeProvider) -> None:
    """Cancel during a tool call leaves the tool's subprocess running."""
    slow = ContentSpec(tool_calls=(tool_call("sleep", {"seconds": 30}),), tokens=0)
    provider.add_fault(FaultPlan(content=slow), match=Match(nth=1))
    pids: list[int] = []
    async with defective(provider, Defect.TOOL_SURVIVES_CANCEL) as (agent, watch, session):
        try:
            turn = await agent.submit(session, "sleep")
            await watch.wait_for("tool.started")
            await agent.cancel(session)
            assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
            pids = agent.live_pids()
            assert pids  # the orphan outlived the cancelled turn
        finally:
            for pid in agent.live_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
    assert agent.live_pids() == []


async def test_backoff_ignores_cancel(provider: FakeProvider) -> None:
    """Cancel during a back-off sleep: the sleep ends and the request goes out anyway."""
    provider.add_fault("nth=1,status=503")
    async with defective(
        provider, Defect.BACKOFF_IGNORES_CANCEL, backoff_base=0.2, backoff_max=0.2
    ) as (agent, watch, session):
        turn = await agent.submit(session, "hello")
        await watch.wait_for("model.retry")
        t = now_ns()
        await agent.cancel(session)
        assert (await turn.wait(WAIT)).stop_reason is StopReason.CANCELLED
        assert len(provider.ledger.requests_after(t)) == 1
        assert agent.transcript(session) == []


async def test_stale_timeout_ignored(provider: FakeProvider) -> None:
    """A silent provider and no cancel: only the turn deadline ends the wait (the correct
    agent gives up with `error` after its 50 ms stale timeout)."""
    provider.add_fault("hang-after=2")
    async with defective(
        provider, Defect.STALE_TIMEOUT_IGNORED, stale_timeout=0.05, max_retries=0, turn_timeout=0.5
    ) as (agent, _, session):
        outcome = await agent.ask(session, "hello", timeout=WAIT)
        assert outcome.stop_reason is StopReason.TIMEOUT


async def test_drop_treated_as_cancel(provider: FakeProvider) -> None:
    """I5 over-corrected: a genuine network drop is taken for our own close, not retried."""
    provider.add_fault("nth=1,reset-after=3")
    async with defective(provider, Defect.DROP_TREATED_AS_CANCEL) as (agent, watch, session):
        outcome = await agent.ask(session, "hello", timeout=WAIT)
        assert outcome.stop_reason is StopReason.CANCELLED  # yet nobody cancelled
        assert watch.kinds("cancel.received") == []
        assert len(provider.ledger.requests()) == 1
        assert agent.transcript(session) == []


async def test_drop_treated_as_cancel_still_retries_a_503(provider: FakeProvider) -> None:
    provider.add_fault("nth=1,status=503")
    async with defective(provider, Defect.DROP_TREATED_AS_CANCEL) as (agent, _, session):
        outcome = await agent.ask(session, "hello", timeout=WAIT)
        assert outcome.stop_reason is StopReason.COMPLETED  # a 503 is no dropped stream
        assert len(provider.ledger.requests()) == 2


async def test_cancel_all_sessions(provider: FakeProvider) -> None:
    """One global cancel token: Esc in one session stops another session's turn."""
    provider.add_fault("body-contains=aardvark,hold-before=3,gate=a")
    provider.add_fault("body-contains=quokka,hold-before=3,gate=b")
    async with defective(provider, Defect.CANCEL_ALL_SESSIONS) as (agent, _, one):
        two = await agent.new_session()
        await agent.submit(one, "aardvark")
        other = await agent.submit(two, "quokka")
        await provider.gate("a").wait_reached()
        await provider.gate("b").wait_reached()
        t = now_ns()
        await agent.cancel(one)
        assert (await other.wait(WAIT)).stop_reason is StopReason.CANCELLED
        await closed_by_client(provider, request_with(provider, body="quokka"), t, 0.1)


async def test_several_defects_at_once_each_bring_their_bug_back() -> None:
    """REFERENCE_AGENT_DEFECTS=a,b: both detours are in the one policy the agent is built with."""
    config = AgentConfig.from_env(
        environ={ENV_VAR: "backoff-ignores-cancel,drop-treated-as-cancel,stale-timeout-ignored"}
    )
    policy = Agent(config).policy
    hooks = policy.retry_hooks(Agent(config), TurnState("t1", "s1", "hi"))
    assert hooks.detached_backoff  # backoff-ignores-cancel
    assert hooks.our_close(CallHandle())  # drop-treated-as-cancel
    assert policy.client_config(config).stale_timeout == float("inf")  # stale-timeout-ignored
    clean = Agent(AgentConfig()).policy
    assert type(clean) is Policy
    assert not clean.retry_hooks(Agent(config), TurnState("t1", "s1", "hi")).our_close(CallHandle())
