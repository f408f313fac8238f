"""A genuine little agent for the harness's own tests, plus two example scenarios.

`TinyAgent` streams from the fake provider with httpx, one turn per submit, inside a cancel
scope; switches bring back real bugs (ignore the cancel, commit after a timeout, tie the
background call to the user's cancel, leak a tool process, leak a connection at stop, send a
request after a cancel, swallow cancellation so stop() never returns).
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import httpx

from harness.scenario import Registry, ScenarioContext, Tempo
from harness.target import (
    AgentSettings,
    CancelAck,
    Capability,
    Endpoint,
    Outcome,
    Submission,
    TimelineNote,
    Transcript,
    TranscriptEntry,
)

CAPS = frozenset(
    {Capability.CANCEL, Capability.TIMEOUT, Capability.TRANSCRIPT, Capability.RETRIES}
    | {Capability.BACKGROUND, Capability.TOOLS}
)
TOOL = [sys.executable, "-c", "import time; time.sleep(60)"]


class ProviderError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"provider answered {status}")
        self.status = status


@dataclass
class Turn:
    id: str
    session: str
    prompt: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None

    def settle(self, stop_reason: str, text: str = "", error: str | None = None) -> None:
        if self.outcome is None:
            self.outcome = Outcome(self.id, stop_reason, text, error)
            self.done.set()


@dataclass
class Session:
    entries: list[TranscriptEntry] = field(default_factory=list)
    usage: tuple[int, int] = (0, 0)
    active: Turn | None = None
    background: list[anyio.CancelScope] = field(default_factory=list)


class TinyAgent:
    """Streams a turn per submit; Esc cancels the turn's scope, which closes the stream."""

    name = "tiny"

    def __init__(
        self,
        *,
        ignore_cancel: bool = False,
        commit_after_timeout: bool = False,
        background_tied: bool = False,
        leak_tool: bool = False,
        leak_connection: bool = False,
        request_after_cancel: bool = False,
        stubborn: bool = False,
        close_delay: float = 0.0,
        capabilities: frozenset[Capability] = CAPS,
    ) -> None:
        self.ignore_cancel = ignore_cancel
        self.commit_after_timeout = commit_after_timeout
        self.background_tied = background_tied
        self.leak_tool = leak_tool
        self.leak_connection = leak_connection
        self.request_after_cancel = request_after_cancel
        self.stubborn = stubborn
        self.close_delay = close_delay  # a slow agent: it acts on a cancel only this much later
        self.capabilities = capabilities
        self.sessions: dict[str, Session] = {}
        self.turns: dict[str, Turn] = {}
        self.procs: list[anyio.abc.Process] = []
        self.tool_started = anyio.Event()
        self._notes: list[TimelineNote] = []
        self._stack = AsyncExitStack()

    # ------------------------------------------------------------------- Target API

    async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None:
        self.endpoint, self.settings = endpoint, settings
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        self.tg = await self._stack.enter_async_context(anyio.create_task_group())
        if self.stubborn:  # a background task that swallows cancellation: stop() never returns
            self.tg.start_soon(self._ignore_cancellation)

    async def new_session(self) -> str:
        sid = f"s{len(self.sessions) + 1}"
        self.sessions[sid] = Session()
        return sid

    async def submit(self, session_id: str, prompt: str) -> Submission:
        turn = Turn(f"t{len(self.turns) + 1}", session_id, prompt)
        self.turns[turn.id] = turn
        self.sessions[session_id].active = turn
        self.tg.start_soon(self._run, turn)
        return Submission(session_id, turn.id, turn.id)

    async def cancel(self, session_id: str, stream_id: str | None = None) -> CancelAck:
        session = self.sessions[session_id]
        turn = session.active
        if turn is None or turn.outcome is not None:
            return CancelAck(False)
        self.note(f"cancel {turn.id}")
        turn.settle("cancelled")
        if self.close_delay:
            self.tg.start_soon(self._cancel_later, turn)
        elif not self.ignore_cancel:
            turn.scope.cancel()
        if self.background_tied:
            for scope in session.background:
                scope.cancel()
        if self.request_after_cancel:
            self.tg.start_soon(self._post, "title", "Name this chat.", anyio.CancelScope())
        return CancelAck(True, turn.id, turn.id)

    async def wait_outcome(self, submission: Submission, timeout: float) -> Outcome:
        turn = self.turns[submission.turn_id]
        with anyio.fail_after(timeout):
            await turn.done.wait()
        assert turn.outcome is not None
        return turn.outcome

    async def transcript(self, session_id: str) -> Transcript:
        s = self.sessions[session_id]
        turn_ids = tuple(dict.fromkeys(e.turn_id for e in s.entries))
        return Transcript(tuple(s.entries), s.usage, turn_ids)

    def live_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.returncode is None]

    def notes(self) -> list[TimelineNote]:
        return list(self._notes)

    async def stop(self) -> None:
        self.tg.cancel_scope.cancel()
        await self._stack.aclose()
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if not self.leak_connection:
            await self.client.aclose()

    # ---------------------------------------------------------------------- the agent

    def note(self, what: str) -> None:
        self._notes.append(TimelineNote(time.monotonic_ns(), what))

    async def _run(self, turn: Turn) -> None:
        deadline = self.settings.turn_timeout
        try:
            if self.commit_after_timeout and deadline is not None:
                self.tg.start_soon(self._report_timeout, turn, deadline)  # bounds the caller only
                await self._work(turn)
                return
            with anyio.move_on_after(deadline if deadline is not None else math.inf) as dl:
                await self._work(turn)
            if dl.cancelled_caught:
                self.note(f"{turn.id} deadline")
                turn.settle("timeout")
        except Exception as exc:
            turn.settle("error", error=str(exc))

    async def _cancel_later(self, turn: Turn) -> None:
        await anyio.sleep(self.close_delay)
        turn.scope.cancel()

    async def _ignore_cancellation(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep_forever()

    async def _report_timeout(self, turn: Turn, deadline: float) -> None:
        await anyio.sleep(deadline)
        turn.settle("timeout")

    async def _work(self, turn: Turn) -> None:
        with turn.scope:
            if turn.prompt.startswith("tool:"):
                await self._tool()
            text, out_tokens = await self._call_model(turn)
            if turn.outcome is not None and not self.commit_after_timeout:
                self.note(f"{turn.id} discarded a late answer")
                return
            session = self.sessions[turn.session]
            session.entries += [
                TranscriptEntry("user", turn.prompt, turn.id),
                TranscriptEntry("assistant", text, turn.id, "stop"),
            ]
            session.usage = (session.usage[0] + 1, session.usage[1] + out_tokens)
            self.note(f"{turn.id} committed")
            turn.settle("completed", text)
            if self.settings.memory_extraction:
                scope = anyio.CancelScope()
                session.background.append(scope)
                self.tg.start_soon(self._post, "memory", f"Remember: {turn.prompt}", scope)
        if turn.scope.cancelled_caught:
            turn.settle("cancelled")

    async def _tool(self) -> None:
        proc = await anyio.open_process(TOOL)
        self.procs.append(proc)
        self.tool_started.set()
        try:
            await proc.wait()
        finally:
            if not self.leak_tool:
                proc.kill()
                with anyio.CancelScope(shield=True):
                    await proc.wait()

    async def _call_model(self, turn: Turn) -> tuple[str, int]:
        retries = self.settings.max_retries or 0
        for attempt in range(retries + 1):
            try:
                return await self._stream(turn.prompt)
            except (httpx.TransportError, ProviderError) as exc:
                transient = not isinstance(exc, ProviderError) or exc.status >= 500
                if attempt == retries or not transient:
                    raise
                self.note(f"{turn.id} retrying after {type(exc).__name__}")
                await anyio.sleep((self.settings.backoff_base or 0.01) * 2**attempt)
        raise AssertionError("unreachable")

    def _request(self, prompt: str, *, stream: bool) -> tuple[str, dict[str, Any]]:
        base, kind = self.endpoint.base_url, self.endpoint.kind
        messages = [{"role": "user", "content": prompt}]
        if kind == "anthropic":
            body = {"model": "claude-test", "max_tokens": 64, "messages": messages}
            return f"{base}/v1/messages", {**body, "stream": stream}
        if kind == "openai-responses":
            return f"{base}/responses", {"model": "gpt-4o", "input": prompt, "stream": stream}
        body = {"model": "gpt-4o", "messages": messages, "stream": stream}
        if kind == "azure":
            return f"{base}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", body
        return f"{base}/chat/completions", body

    async def _stream(self, prompt: str) -> tuple[str, int]:
        url, body = self._request(prompt, stream=True)
        text: list[str] = []
        async with self.client.stream("POST", url, json=body) as resp:
            if resp.status_code >= 400:
                raise ProviderError(resp.status_code)
            async for line in resp.aiter_lines():
                if line.startswith("data:") and line[5:].strip() != "[DONE]":
                    text.append(_delta(json.loads(line[5:])))
        return "".join(text), len(text)

    async def _post(self, purpose: str, prompt: str, scope: anyio.CancelScope) -> None:
        url, body = self._request(prompt, stream=False)
        with scope:
            resp = await self.client.post(url, json=body, headers={"x-agent-purpose": purpose})
            self.note(f"{purpose} answered {resp.status_code}")


def _delta(event: dict[str, Any]) -> str:
    """The text piece of a streamed event, whatever the wire format."""
    for choice in event.get("choices") or []:
        return str((choice.get("delta") or {}).get("content") or "")
    delta = event.get("delta")
    if isinstance(delta, dict):
        return str(delta.get("text") or "")
    return delta if isinstance(delta, str) else ""


# ----------------------------------------------------------------- example scenarios


def example_registry() -> Registry:
    """A fresh registry with the two example scenarios (never the global catalogue)."""
    registry = Registry()

    @registry.scenario(
        id="esc.closes-stream",
        title="Esc mid-stream closes the provider connection",
        incident="I1",
        tags=("esc", "smoke"),
        providers=("openai-chat", "anthropic"),
        requires={Capability.CANCEL, Capability.TRANSCRIPT},
        catches=("ignore-cancel",),
    )
    async def esc_closes_stream(ctx: ScenarioContext) -> None:
        """The user presses Esc and the model keeps writing into a channel nobody reads."""
        ctx.fault(
            f"stream=true,pace={ctx.tempo(0.25) * 1000:g}ms,tokens=40,hold-before=4,gate=main"
        )
        session = await ctx.new_session()
        sub = await ctx.submit(session, "Tell me a long story.")
        await ctx.gate("main").wait_reached()
        await ctx.cancel(session)
        await ctx.release("main")
        await ctx.checks.connection_closed_within(ctx.tempo(3))
        ctx.checks.stop_reason(await ctx.outcome(sub), "cancelled")
        await ctx.checks.no_request_after()
        await ctx.checks.next_turn_completes(session)

    @registry.scenario(
        id="timeout.no-ghost",
        title="A timed-out turn never commits later",
        incident="I2",
        tags=("timeout",),
        providers=("openai-chat",),
        requires={Capability.TIMEOUT, Capability.TRANSCRIPT},
        catches=("commit-after-timeout",),
        settings=lambda tempo: AgentSettings(turn_timeout=tempo(5)),
    )
    async def timeout_no_ghost(ctx: ScenarioContext) -> None:
        """A turn times out, and seconds later its answer appears in the session anyway."""
        ctx.fault("stream=true,tokens=20,hold-before=3,gate=late")
        session = await ctx.new_session()
        before = await ctx.transcript(session)
        sub = await ctx.submit(session, "Think hard.")
        ctx.checks.stop_reason(await ctx.outcome(sub), "timeout")
        await ctx.checks.no_ghost_turn(session, before, release=["late"])

    return registry


def tiny_factory(**switches: bool) -> Any:
    """A target factory (fresh agent per case) with the given defect switches."""
    return lambda: TinyAgent(**switches)


__all__ = ["CAPS", "Tempo", "TinyAgent", "example_registry", "tiny_factory"]
