"""The library adapters: the Target contract they keep, with and without the libraries.

The first tests need no agent library: the shared runtime's outcomes are driven by a stub
library whose run waits on an event. The last ones run the real adapters against the fake
provider when the library is installed (scripts/conformance's venv), and skip otherwise.
"""

from __future__ import annotations

import importlib

import anyio
import pytest

from conformance.adapters.library import LibraryTarget, Turn
from fake_providers.kinds import ProviderKind
from harness.target import AgentSettings, Capability, Endpoint, TargetStartError, Transcript
from harness.targets.python import check_target

pytestmark = pytest.mark.anyio
ADAPTERS = ("pydantic_ai", "openai_agents", "langgraph")
LIBRARIES = {"pydantic_ai": "pydantic_ai", "openai_agents": "agents", "langgraph": "langgraph"}


class StubLibrary(LibraryTarget):
    """A 'library' whose run waits until the test lets it finish, or raises what it is told.

    Each `stream()` delivers one chunk of text to the caller (and sets `delivered`)."""

    name = "stub"
    providers = (ProviderKind.OPENAI_CHAT,)

    def __init__(self) -> None:
        super().__init__()
        self.go = anyio.Event()
        self.started = anyio.Event()
        self.raises: Exception | None = None
        self.chunks = anyio.create_memory_object_stream[str](10)
        self.delivered = anyio.Event()

    async def stream(self) -> None:
        await self.chunks[0].send("word ")

    async def run_turn(self, turn: Turn) -> str:
        self.started.set()
        async with anyio.create_task_group() as tg:

            async def finish() -> None:
                await self.go.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(finish)
            async for chunk in self.chunks[1]:
                left = turn.show(chunk)
                self.delivered.set()
                if left:
                    tg.cancel_scope.cancel()
                    return turn.shown
        if self.raises is not None:
            raise self.raises
        return f"answer to {turn.prompt}"

    async def read_transcript(self, session_id: str) -> Transcript:
        return Transcript()


ENDPOINT = Endpoint("openai-chat", "http://127.0.0.1:9/v1")


async def _started(settings: AgentSettings | None = None) -> StubLibrary:
    target = StubLibrary()
    await target.start(ENDPOINT, settings or AgentSettings())
    return target


async def test_submit_returns_at_once_and_the_turn_completes() -> None:
    target = await _started()
    try:
        session = await target.new_session()
        sub = await target.submit(session, "hi")
        await target.started.wait()
        target.go.set()
        outcome = await target.wait_outcome(sub, 5)
        assert (outcome.stop_reason, outcome.text) == ("completed", "answer to hi")
    finally:
        await target.stop()


async def test_cancel_ends_the_running_turn_cancelled() -> None:
    target = await _started()
    try:
        session = await target.new_session()
        sub = await target.submit(session, "long")
        await target.started.wait()
        ack = await target.cancel(session)
        assert (ack.cancelled, ack.turn_id) == (True, sub.turn_id)
        assert (await target.wait_outcome(sub, 5)).stop_reason == "cancelled"
    finally:
        await target.stop()


async def test_an_idle_cancel_answers_false_and_a_stale_stream_id_is_refused() -> None:
    target = await _started()
    try:
        session = await target.new_session()
        assert not (await target.cancel(session)).cancelled
        sub = await target.submit(session, "x")
        await target.started.wait()
        assert not (await target.cancel(session, stream_id="t99")).cancelled
        target.go.set()
        assert (await target.wait_outcome(sub, 5)).stop_reason == "completed"
    finally:
        await target.stop()


async def test_the_scenario_deadline_ends_the_turn_as_timeout() -> None:
    target = await _started(AgentSettings(turn_timeout=0.05))
    try:
        session = await target.new_session()
        sub = await target.submit(session, "slow")
        assert (await target.wait_outcome(sub, 5)).stop_reason == "timeout"
    finally:
        await target.stop()


async def test_a_library_error_is_an_error_outcome_with_its_message() -> None:
    target = await _started()
    try:
        target.raises = RuntimeError("provider said no")
        target.go.set()
        sub = await target.submit(await target.new_session(), "x")
        outcome = await target.wait_outcome(sub, 5)
        assert outcome.stop_reason == "error"
        assert outcome.error == "RuntimeError: provider said no"
    finally:
        await target.stop()


async def test_stop_cancels_a_turn_still_running() -> None:
    target = await _started()
    sub = await target.submit(await target.new_session(), "x")
    await target.started.wait()
    await target.stop()
    assert (await target.wait_outcome(sub, 1)).stop_reason == "cancelled"


async def test_shown_is_what_the_stream_delivered_and_leave_breaks_out_without_a_cancel() -> None:
    target = await _started()
    try:
        sub = await target.submit(await target.new_session(), "x")
        await target.started.wait()
        await target.stream()
        await target.delivered.wait()
        assert target.shown(sub) == "word "
        await target.leave(sub)
        await target.stream()  # the next chunk: the caller breaks out of the loop there
        outcome = await target.wait_outcome(sub, 5)
        assert (outcome.stop_reason, outcome.text) == ("cancelled", "word word ")
        assert outcome.error == "the caller left the stream"
        assert "cancel.received t1" not in [n.what for n in target.notes()]
    finally:
        await target.stop()


@pytest.mark.parametrize("module", ADAPTERS)
def test_adapters_are_valid_python_targets_without_their_library(module: str) -> None:
    adapter = importlib.import_module(f"conformance.adapters.{module}")
    made = adapter.make_target()
    check_target(made, f"conformance.adapters.{module}:make_target")
    assert made.live_pids() == []
    assert Capability.LEAVE_EARLY in made.capabilities and callable(made.leave)
    assert ProviderKind.OPENAI_CHAT in made.providers


@pytest.mark.parametrize("module", ADAPTERS)
async def test_an_unsupported_provider_kind_is_one_clear_start_error(module: str) -> None:
    made = importlib.import_module(f"conformance.adapters.{module}").make_target()
    with pytest.raises(TargetStartError, match=r"speaks .* not gemini; run it with one"):
        await made.start(Endpoint("gemini", "http://127.0.0.1:9"), AgentSettings())


# --------------------------------------------------------- with the libraries installed


@pytest.mark.parametrize("module", ADAPTERS)
async def test_a_real_cancel_closes_the_provider_connection(module: str, provider) -> None:
    pytest.importorskip(LIBRARIES[module])
    made = importlib.import_module(f"conformance.adapters.{module}").make_target()
    provider.add_fault("body-contains=held-prompt,pace=20ms,hold-before=3,gate=main,times=1")
    await made.start(Endpoint("openai-chat", provider.url("openai")), AgentSettings())
    try:
        session = await made.new_session()
        sub = await made.submit(session, "the held-prompt")
        await provider.gate("main").wait_reached(timeout=30)
        await made.cancel(session)
        assert (await made.wait_outcome(sub, 30)).stop_reason == "cancelled"
        [request] = provider.ledger.requests()
        await provider.ledger.wait_for_close(request.connection_id, timeout=5)
    finally:
        await made.stop()
