"""A genuine little agent for the harness's own tests, plus two example scenarios.

`TinyAgent` streams from the fake provider with httpx, one turn per submit, inside a cancel
scope; switches bring back real bugs (ignore the cancel, commit after a timeout, tie the
background call to the user's cancel, leak a tool process, leak a connection at stop, resend
the turn's request after a cancel, make a side call after a cancel, swallow cancellation so
stop() never returns). It sends no header to help the harness: its background call is told
apart from its turn the way any agent's is, by the shape of the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
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
    | {Capability.BACKGROUND, Capability.TOOLS, Capability.LEAVE_EARLY}
)
TOOL_PREFIX = "tool:"  # a prompt "tool: COMMAND" runs COMMAND in a shell first
LEAKED_FDS: list[int] = []  # what leak_fd opened (a test closes them)
LEAKED_TASKS: list[asyncio.Task[None]] = []


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
    shown: list[str] = field(default_factory=list)  # text delivered to the caller
    stop_reading: bool = False  # the next-chunk defect's cancel flag
    left: bool = False  # the caller stopped reading

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
        resend_after_cancel: bool = False,
        resend_delay: float = 0.0,
        retry_before_ack: bool = False,
        raced_call: bool = False,
        cancel_on_next_chunk: bool = False,
        drain_on_leave: bool = False,
        title_first: bool = False,
        stubborn: bool = False,
        fold_cancelled_prompt: bool = False,
        hold_back_last_word: bool = False,
        late_interrupt_note: bool = False,
        rewrite_history: bool = False,
        close_delay: float = 0.0,
        stop_delay: float = 0.0,
        leak_fd: bool = False,
        leak_task: bool = False,
        capabilities: frozenset[Capability] = CAPS,
    ) -> None:
        self.ignore_cancel = ignore_cancel
        self.commit_after_timeout = commit_after_timeout
        self.background_tied = background_tied
        self.leak_tool = leak_tool
        self.leak_connection = leak_connection
        self.request_after_cancel = request_after_cancel
        self.resend_after_cancel = resend_after_cancel
        self.stop_delay = stop_delay  # s stop() takes (a slow exit, not a hang)
        self.resend_delay = resend_delay  # s the resend waits after the cancel's answer
        # Read the cancel only after a retry of the turn's call went out (and was answered),
        # as a starved agent whose back-off timer fired first may.
        self.retry_before_ack = retry_before_ack
        # Read the cancel only after a new call of the turn's session began (the queue's next
        # turn starting as the cancel arrives); the cancel then closes that call too.
        self.raced_call = raced_call
        self.cancel_on_next_chunk = cancel_on_next_chunk
        self.drain_on_leave = drain_on_leave
        self.title_first = title_first  # a title call, shaped like a turn's, before each turn
        self.titles: list[httpx.Response] = []
        self.stubborn = stubborn
        # Keep a cancelled prompt, unanswered, and fold it into the next turn's user entry.
        self.fold_cancelled_prompt = fold_cancelled_prompt
        self.rewrite_history = rewrite_history  # each commit rewrites the first answer
        self.hold_back_last_word = hold_back_last_word  # shows text up to the last space
        # Writes '[interrupted]' as a user entry after the stop was reported (as Claude Code
        # does): it appears from the second transcript read after the stop on.
        self.late_interrupt_note = late_interrupt_note
        self.pending_notes: dict[str, int] = {}  # session -> transcript reads since the stop
        self.close_delay = close_delay  # a slow agent: it acts on a cancel only this much later
        self.leak_fd = leak_fd  # opens a file per turn and never closes it (a soak finds it)
        self.leak_task = leak_task  # starts a task per turn outside any scope it stops
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
        if self.leak_fd:
            LEAKED_FDS.append(os.open(os.devnull, os.O_RDONLY))
        if self.leak_task:
            LEAKED_TASKS.append(asyncio.get_running_loop().create_task(asyncio.sleep(3600)))
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
        if self.fold_cancelled_prompt:  # kept, unanswered, as the cancel is reported
            session.entries.append(TranscriptEntry("user", turn.prompt, turn.id))
        if self.cancel_on_next_chunk:
            turn.stop_reading = True  # looked at only when the next chunk arrives
        elif self.close_delay:
            self.tg.start_soon(self._cancel_later, turn)
        elif not self.ignore_cancel:
            turn.scope.cancel()
        if self.background_tied:
            for scope in session.background:
                scope.cancel()
        if self.request_after_cancel:
            title = [{"role": "user", "content": "Name this chat."}]
            self.tg.start_soon(self._post, "title", title, anyio.CancelScope())
        if self.resend_after_cancel:  # a worker that takes its own close for a network error
            again = [{"role": "user", "content": turn.prompt}]
            self.tg.start_soon(self._post, "retry", again, anyio.CancelScope(), self.resend_delay)
        if self.retry_before_ack:  # the very request of the turn again: a retry of it
            url, body = self._request([{"role": "user", "content": turn.prompt}], stream=True)
            async with self.client.stream("POST", url, json=body) as resp:
                self.note(f"retry answered {resp.status_code}; closing it")
        if self.raced_call:
            queued = [{"role": "user", "content": f"{turn.prompt} (2)"}]
            url, body = self._request(queued, stream=True)
            async with self.client.stream("POST", url, json=body) as resp:
                self.note(f"raced call answered {resp.status_code}; closing it")
        return CancelAck(True, turn.id, turn.id)

    async def leave(self, submission: Submission) -> None:
        """The caller stops reading the turn's stream (it sends no cancel)."""
        turn = self.turns[submission.turn_id]
        turn.left = True
        self.note(f"caller left {turn.id}")
        if not self.drain_on_leave:  # else the stream is read to its end, for nobody
            turn.scope.cancel()

    def shown(self, submission: Submission) -> str:
        text = "".join(self.turns[submission.turn_id].shown)
        return text.rpartition(" ")[0] if self.hold_back_last_word else text

    async def wait_outcome(self, submission: Submission, timeout: float) -> Outcome:
        turn = self.turns[submission.turn_id]
        with anyio.fail_after(timeout):
            await turn.done.wait()
        assert turn.outcome is not None
        return turn.outcome

    async def transcript(self, session_id: str) -> Transcript:
        s = self.sessions[session_id]
        if session_id in self.pending_notes:
            self.pending_notes[session_id] += 1
            if self.pending_notes[session_id] > 1:
                del self.pending_notes[session_id]
                s.entries.append(TranscriptEntry("user", "[interrupted]", ""))
        turn_ids = tuple(dict.fromkeys(e.turn_id for e in s.entries))
        return Transcript(tuple(s.entries), s.usage, turn_ids)

    def live_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.returncode is None]

    def notes(self) -> list[TimelineNote]:
        return list(self._notes)

    async def stop(self) -> None:
        if self.stop_delay:
            await anyio.sleep(self.stop_delay)
        self.tg.cancel_scope.cancel()
        await self._stack.aclose()
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        for title in self.titles:
            await title.aclose()
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
                if self.late_interrupt_note:
                    self.pending_notes[turn.session] = 0
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
            if turn.prompt.startswith(TOOL_PREFIX):
                await self._tool(turn.prompt.removeprefix(TOOL_PREFIX).strip())
            if self.title_first:  # the prompt as the user message, no tools, a small model
                url, body = self._request([{"role": "user", "content": turn.prompt}], stream=True)
                title = {**body, "model": "gpt-4o-mini"}
                request = self.client.build_request("POST", url, json=title)
                # Sent first; read by nobody after its headers: it has its own lifetime.
                self.titles.append(await self.client.send(request, stream=True))
            text, out_tokens = await self._call_model(turn)
            if turn.outcome is not None and not self.commit_after_timeout:
                self.note(f"{turn.id} discarded a late answer")
                return
            session = self.sessions[turn.session]
            said = turn.prompt
            if (
                self.fold_cancelled_prompt
                and session.entries
                and session.entries[-1].role == "user"
            ):
                said = f"{session.entries.pop().content}\n{said}"
            if self.rewrite_history and session.entries:
                first = session.entries[1]
                session.entries[1] = TranscriptEntry("assistant", "(edited)", first.turn_id, "stop")
            session.entries += [
                TranscriptEntry("user", said, turn.id),
                TranscriptEntry("assistant", text, turn.id, "stop"),
            ]
            session.usage = (session.usage[0] + 1, session.usage[1] + out_tokens)
            self.note(f"{turn.id} committed")
            turn.settle("completed", text)
            if self.settings.memory_extraction:
                scope = anyio.CancelScope()
                session.background.append(scope)
                memory = [
                    {"role": "user", "content": turn.prompt},
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": "Note what to remember from this."},
                ]
                self.tg.start_soon(self._post, "memory", memory, scope)
        if turn.scope.cancelled_caught:
            turn.settle("cancelled")

    async def _tool(self, command: str) -> None:
        proc = await anyio.open_process(
            ["/bin/sh", "-c", command], stdin=None, stdout=None, stderr=None, start_new_session=True
        )
        self.procs.append(proc)
        self.tool_started.set()
        try:
            await proc.wait()
        finally:
            if not self.leak_tool:  # the whole group: the shell and what it started
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with anyio.CancelScope(shield=True):
                    await proc.wait()

    async def _call_model(self, turn: Turn) -> tuple[str, int]:
        retries = self.settings.max_retries or 0
        for attempt in range(retries + 1):
            try:
                return await self._stream(turn)
            except (httpx.TransportError, ProviderError) as exc:
                transient = not isinstance(exc, ProviderError) or exc.status >= 500
                if attempt == retries or not transient:
                    raise
                self.note(f"{turn.id} retrying after {type(exc).__name__}")
                await anyio.sleep((self.settings.backoff_base or 0.01) * 2**attempt)
        raise AssertionError("unreachable")

    def _request(
        self, messages: list[dict[str, str]], *, stream: bool
    ) -> tuple[str, dict[str, Any]]:
        base, kind = self.endpoint.base_url, self.endpoint.kind
        if kind == "anthropic":
            body = {"model": "claude-test", "max_tokens": 64, "messages": messages}
            return f"{base}/v1/messages", {**body, "stream": stream}
        if kind == "openai-responses":
            return f"{base}/responses", {"model": "gpt-4o", "input": messages, "stream": stream}
        body = {"model": "gpt-4o", "messages": messages, "stream": stream}
        if kind == "azure":
            return f"{base}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", body
        return f"{base}/chat/completions", body

    async def _stream(self, turn: Turn) -> tuple[str, int]:
        url, body = self._request([{"role": "user", "content": turn.prompt}], stream=True)
        if self.title_first:  # then its turn calls offer a tool
            body["tools"] = [{"type": "function", "function": {"name": "echo", "parameters": {}}}]
        text: list[str] = []
        async with self.client.stream("POST", url, json=body) as resp:
            if resp.status_code >= 400:
                raise ProviderError(resp.status_code)
            async for line in resp.aiter_lines():
                if turn.stop_reading:
                    break
                if line.startswith("data:") and line[5:].strip() != "[DONE]":
                    text.append(_delta(json.loads(line[5:])))
                    if not turn.left:
                        turn.shown.append(text[-1])
        return "".join(text), len(text)

    async def _post(
        self,
        purpose: str,
        messages: list[dict[str, str]],
        scope: anyio.CancelScope | None,
        delay: float = 0.0,
    ) -> None:
        url, body = self._request(messages, stream=False)
        with scope or anyio.CancelScope():
            if delay:
                await anyio.sleep(delay)
            resp = await self.client.post(url, json=body)
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
        catches=("provider-ignores-cancel",),
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
        out = await ctx.outcome(sub)
        ctx.checks.stop_reason(out, "timeout")
        await ctx.checks.no_ghost_turn(session, before, out, release=["late"])

    return registry


def tiny_factory(**switches: bool) -> Any:
    """A target factory (fresh agent per case) with the given defect switches."""
    return lambda: TinyAgent(**switches)


__all__ = ["CAPS", "Tempo", "TinyAgent", "example_registry", "tiny_factory"]
