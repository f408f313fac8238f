"""Accepted runs, pending cancels, per-session queues and owner-scoped streams (I3, I4).

Every front door (HTTP+SSE, ACP, terminal, the harness's in-process target) talks to the
agent through a `Dispatcher`:

- `submit` accepts a prompt and returns at once with `(turn_id, stream_id)`; the run is
  dispatched in the background, so "accepted but not running yet" is a real state.
- A run waits in its session's queue while another run is active. When the active run
  ends, the next queued one becomes active under the same lock, so the session never
  looks idle in the hand-off.
- `cancel(session, stream_id=None)` stops the active run and drops every queued one; a
  run that was accepted but has not started records a pending cancel, which it consumes
  on entry by persisting a cancelled turn (the user message plus an assistant message
  with finish reason `cancelled`) without calling the model. Naming a stream that is not
  the active or a queued one answers `cancelled: false` and touches nothing (I4). An idle
  cancel is a true no-op.
- Each run has its own event stream: deltas, then exactly one terminal event
  (`completed | cancelled | error | timeout`), then the stream closes. No event of one
  run is ever delivered on another run's stream.

All transitions of a session are serialised by that session's lock. Where a known bug
could live, the dispatcher asks the agent's `Policy` (policy.py).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from reference_agent.agent import Agent, TurnHandle, UnknownSessionError
from reference_agent.model import Message, StopReason, TurnOutcome, Usage

TERMINAL_KINDS = frozenset({"completed", "cancelled", "error", "timeout"})


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event on a run's stream. `kind` is `delta`, `tool` or a terminal kind."""

    kind: str
    stream_id: str
    turn_id: str
    data: dict[str, object] = field(default_factory=dict)
    t_ns: int = field(default_factory=time.monotonic_ns)

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS


@dataclass(frozen=True, slots=True)
class Accepted:
    session_id: str
    turn_id: str
    stream_id: str


@dataclass(frozen=True, slots=True)
class CancelAnswer:
    """`cancelled` is False when the named (or any) run was not there to cancel."""

    cancelled: bool
    stream_id: str | None
    reason: str = ""


@dataclass(eq=False)
class _Run:
    session_id: str
    turn_id: str
    stream_id: str
    prompt: str
    state: str = "accepted"  # accepted | active | ended
    cancel_pending: bool = False
    handle: TurnHandle | None = None
    outcome: TurnOutcome | None = None
    history: list[StreamEvent] = field(default_factory=list)
    subscribers: list[MemoryObjectSendStream[StreamEvent]] = field(default_factory=list)
    ended: anyio.Event = field(default_factory=anyio.Event)


@dataclass(eq=False)
class _SessionQueue:
    id: str
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    active: _Run | None = None
    queued: deque[_Run] = field(default_factory=deque)


class Dispatcher:
    """The session-level front of the agent: accept, queue, cancel, stream."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.policy = agent.policy
        self._sessions: dict[str, _SessionQueue] = {}
        self._runs: dict[str, _Run] = {}
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ sessions

    async def new_session(self) -> str:
        session_id = await self.agent.new_session()
        self._sessions[session_id] = _SessionQueue(session_id)
        return session_id

    def _queue(self, session_id: str) -> _SessionQueue:
        queue = self._sessions.get(session_id)
        if queue is None:
            raise UnknownSessionError(f"no session {session_id!r}")
        return queue

    def transcript(self, session_id: str) -> list[Message]:
        return self.agent.transcript(session_id)

    def busy(self, session_id: str) -> bool:
        queue = self._queue(session_id)
        return queue.active is not None or bool(queue.queued)

    # -------------------------------------------------------------------- submit

    async def submit(self, session_id: str, prompt: str) -> Accepted:
        """Accept a prompt; it runs in the background as soon as the session is free."""
        queue = self._queue(session_id)
        async with queue.lock:
            number = next(self._ids)
            run = _Run(session_id, f"turn-{number}", f"stream-{number}", prompt)
            run.cancel_pending = self.policy.cancelled_on_arrival(session_id)
            self._runs[run.stream_id] = run
            queue.queued.append(run)
            self.agent.emit("dispatch.accepted", session_id, run.turn_id, run.stream_id)
        self.agent.start_soon(partial(self._dispatch, queue))
        return Accepted(session_id, run.turn_id, run.stream_id)

    async def _dispatch(self, queue: _SessionQueue) -> None:
        async with queue.lock:
            await self._start_next(queue)

    async def _start_next(self, queue: _SessionQueue) -> None:
        """Start the next queued run if the session is free. Caller holds the lock."""
        while queue.active is None and queue.queued:
            run = queue.queued.popleft()
            if run.cancel_pending:
                self._persist_cancelled(run)
                continue
            run.state = "active"
            queue.active = run

            def relay(delta: str, run: _Run = run) -> None:
                self._emit(run, StreamEvent("delta", run.stream_id, run.turn_id, {"text": delta}))

            run.handle = await self.agent.submit(
                queue.id, run.prompt, on_text=relay, turn_id=run.turn_id
            )
            self.agent.start_soon(partial(self._settle, queue, run))

    def _persist_cancelled(self, run: _Run) -> None:
        """A run cancelled before it started: record the cancelled turn, never call the model.

        A plain synchronous write: nothing here can be interrupted by the cancel that
        caused it, or by a shutdown cancelling the caller.
        """
        self.agent.store.commit_turn(
            run.session_id,
            run.turn_id,
            [
                Message("user", run.prompt, run.turn_id),
                Message("assistant", "", run.turn_id, finish_reason="cancelled"),
            ],
            StopReason.CANCELLED,
            Usage(),
        )
        self.agent.emit("dispatch.cancelled-before-start", run.session_id, run.turn_id)
        self._end(run, "cancelled", {"stop_reason": "cancelled", "before_start": True})

    async def _settle(self, queue: _SessionQueue, run: _Run) -> None:
        """When the active run ends: its terminal event, then the hand-off, under one lock."""
        assert run.handle is not None
        outcome = await run.handle.wait()
        run.outcome = outcome
        async with queue.lock:
            self._end(run, outcome.stop_reason.value, _outcome_data(outcome))
            if queue.active is run:
                queue.active = None
            # Correctly: the next run starts now, with no window where the session looks idle.
            await self.policy.hand_off(
                queue.queued, queue.lock, partial(self._start_next, queue), self.agent.start_soon
            )

    # -------------------------------------------------------------------- cancel

    async def cancel(self, session_id: str, stream_id: str | None = None) -> CancelAnswer:
        """Esc for a session, optionally naming the stream it was pressed for."""
        queue = self._queue(session_id)
        async with queue.lock:
            named_id = self.policy.cancel_names(stream_id)
            if named_id is not None:
                named = self._runs.get(named_id)
                if named is None or named.session_id != session_id or named.state == "ended":
                    return CancelAnswer(False, stream_id, "that stream is not running")
                targets = [named]
            else:
                targets = self.policy.runs_to_cancel(queue.active, queue.queued)
            if not targets:
                self.policy.idle_cancel(session_id)
                # The agent still hears the Esc: it owns background work, which a correct
                # agent leaves alone (and the background defect does not).
                await self.agent.cancel(session_id)
                return CancelAnswer(False, stream_id, "nothing to cancel")
            hit: list[str] = []
            for run in targets:
                if run.state == "accepted" and self.policy.cancel_reaches_unstarted():
                    run.cancel_pending = True
                    hit.append(run.stream_id)
                elif run.state == "active" and run.handle is not None:
                    answer = await self.agent.cancel(session_id, run.handle.id)
                    if answer.cancelled:
                        hit.append(run.stream_id)
            await self._start_next(queue)  # consumes pending cancels of queued runs at once
        if not hit:
            return CancelAnswer(False, stream_id, "nothing there was cancellable")
        return CancelAnswer(True, stream_id or hit[0])

    async def leave(self, stream_id: str) -> None:
        """The stream's only consumer stopped reading: nobody wants the answer any more, so
        its run stops as if cancelled, and its provider connection closes at once (I1)."""
        run = self._runs[stream_id]
        if self.policy.stops_when_left():
            await self.cancel(run.session_id, stream_id)

    # ------------------------------------------------------------------- streams

    def _emit(self, run: _Run, event: StreamEvent) -> None:
        run.history.append(event)
        session = (r.subscribers for r in self._runs.values() if r.session_id == run.session_id)
        for sink in self.policy.listeners(run.subscribers, session):
            try:
                sink.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.WouldBlock):
                for owner in self._runs.values():
                    if sink in owner.subscribers:
                        owner.subscribers.remove(sink)

    def _end(self, run: _Run, kind: str, data: dict[str, object]) -> None:
        run.state = "ended"
        if self.policy.ends_stream(kind):
            self._emit(run, StreamEvent(kind, run.stream_id, run.turn_id, data))
            for sink in run.subscribers:
                sink.close()
            run.subscribers.clear()
        run.ended.set()
        self.agent.emit("dispatch.ended", run.session_id, run.turn_id, kind)

    async def events(self, stream_id: str) -> AsyncIterator[StreamEvent]:
        """Every event of one run's stream, from the start, until its terminal event."""
        run = self._runs.get(stream_id)
        if run is None:
            raise KeyError(f"no stream {stream_id!r}")
        send: MemoryObjectSendStream[StreamEvent]
        receive: MemoryObjectReceiveStream[StreamEvent]
        send, receive = anyio.create_memory_object_stream[StreamEvent](10_000)
        for event in run.history:
            send.send_nowait(event)
        if run.state == "ended" and any(e.terminal for e in run.history):
            send.close()
        else:
            run.subscribers.append(send)
        async with receive:
            async for event in receive:
                yield event

    async def wait_ended(self, stream_id: str, timeout: float) -> list[StreamEvent]:
        """Wait for a run to end; return its stream's events."""
        run = self._runs[stream_id]
        with anyio.fail_after(timeout):
            await run.ended.wait()
        return list(run.history)

    def run_outcome(self, stream_id: str) -> TurnOutcome | None:
        return self._runs[stream_id].outcome

    def stream_history(self, stream_id: str) -> list[StreamEvent]:
        return list(self._runs[stream_id].history)


def _outcome_data(outcome: TurnOutcome) -> dict[str, object]:
    data: dict[str, object] = {"stop_reason": outcome.stop_reason.value}
    if outcome.text:
        data["text"] = outcome.text
    if outcome.error:
        data["error"] = outcome.error
    return data
