"""The `reference` target: the reference agent, in-process, with optional defects."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack

import anyio

from fake_providers.kinds import ProviderKind
from harness.target import (
    AgentSettings,
    CancelAck,
    Capability,
    Endpoint,
    Outcome,
    StreamEventRecord,
    StreamLog,
    Submission,
    TargetStartError,
    TimelineNote,
    Transcript,
    TranscriptEntry,
)
from reference_agent.agent import Agent
from reference_agent.config import AgentConfig
from reference_agent.defects import Defects
from reference_agent.dispatch import Dispatcher
from reference_agent.model import AgentEvent

# Our own knobs: fast enough for CI, every one overridable by the scenario's settings.
DEFAULTS = AgentSettings(
    turn_timeout=None,
    stale_timeout=5.0,
    max_retries=2,
    backoff_base=0.05,
    backoff_max=1.0,
    compaction_threshold_chars=100_000,
    memory_extraction=False,
    max_output_tokens=256,
    stream=True,
)


# AgentSettings the reference agent's command line (python -m reference_agent ...) takes,
# so its out-of-process front doors honour a scenario's settings as the in-process one does.
CLI_SETTINGS = (
    ("stale_timeout", "--stale-timeout"),
    ("turn_timeout", "--turn-timeout"),
    ("max_retries", "--max-retries"),
    ("backoff_base", "--backoff-base"),
    ("backoff_max", "--backoff-max"),
    ("compaction_threshold_chars", "--compaction-threshold"),
    ("max_output_tokens", "--max-output-tokens"),
)
# Boolean settings: the flag is passed when the setting (or our default) is False.
CLI_SWITCHES_OFF = (("memory_extraction", "--no-memory-extraction"), ("stream", "--no-stream"))


def reference_cli_args(settings: AgentSettings) -> list[str]:
    """The reference agent's flags for `settings`, our defaults filling the gaps."""
    argv: list[str] = []
    for setting, flag in CLI_SETTINGS:
        value = getattr(settings, setting)
        if value is None:
            value = getattr(DEFAULTS, setting)
        if value is not None:
            argv += [flag, f"{value:g}"]
    for setting, flag in CLI_SWITCHES_OFF:
        value = getattr(settings, setting)
        if value is None:
            value = getattr(DEFAULTS, setting)
        if value is False:
            argv.append(flag)
    if settings.seed:  # the case seed: the agent's retry jitter replays with the run
        argv += ["--seed", str(settings.seed)]
    return argv


class ReferenceTarget:
    """Drives the reference agent in-process, through its dispatcher (accept, queue, streams)."""

    name = "reference"
    capabilities = frozenset(Capability) - {Capability.ACP, Capability.PERMISSIONS}

    # Optional facts for the runner (read with getattr): the wire formats the agent speaks and
    # the bound on its provider close after a cancel; None: the harness's defaults.
    providers: tuple[ProviderKind, ...] | None = None
    close_within: float | None = None

    def __init__(self, defects: Sequence[str] = ()) -> None:
        self.defects = Defects.of(defects)
        if self.defects:
            self.name = "reference+" + ",".join(self.defects.names())
        self._stack: AsyncExitStack | None = None
        self._agent: Agent | None = None
        self._dispatcher: Dispatcher | None = None
        self._noted = anyio.Event()

    @property
    def agent(self) -> Agent:
        if self._agent is None:
            raise TargetStartError("the reference target was used before start()")
        return self._agent

    async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None:
        chosen = {
            name: getattr(settings, name)
            if getattr(settings, name) is not None
            else getattr(DEFAULTS, name)
            for name in AgentSettings.__dataclass_fields__
        }
        if chosen["turn_timeout"] is None:
            chosen.pop("turn_timeout")
        model = endpoint.kind.model
        config = AgentConfig(
            provider=endpoint.kind,
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            model=model,
            ca_file=endpoint.ca_file,
            defects=self.defects,
            **chosen,
        )
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            self._agent = await stack.enter_async_context(Agent(config, on_event=self._on_event))
            self._dispatcher = Dispatcher(self._agent)
        except Exception as exc:
            await stack.aclose()
            raise TargetStartError(f"reference agent failed to start: {exc}") from exc
        self._stack = stack

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            raise TargetStartError("the reference target was used before start()")
        return self._dispatcher

    async def new_session(self) -> str:
        return await self.dispatcher.new_session()

    async def submit(self, session_id: str, prompt: str) -> Submission:
        accepted = await self.dispatcher.submit(session_id, prompt)
        return Submission(session_id, accepted.turn_id, accepted.stream_id)

    async def cancel(self, session_id: str, stream_id: str | None = None) -> CancelAck:
        answer = await self.dispatcher.cancel(session_id, stream_id)
        stream = answer.stream_id or ""
        return CancelAck(answer.cancelled, stream.replace("stream-", "turn-"), stream)

    async def wait_outcome(self, submission: Submission, timeout: float) -> Outcome:
        events = await self.dispatcher.wait_ended(submission.stream_id, timeout)
        outcome = self.dispatcher.run_outcome(submission.stream_id)
        if outcome is not None:
            return Outcome(outcome.turn_id, outcome.stop_reason.value, outcome.text, outcome.error)
        terminal = next((e.kind for e in reversed(events) if e.terminal), "cancelled")
        return Outcome(submission.turn_id, terminal)  # ended before it started

    async def stream_log(self, submission: Submission, timeout: float) -> StreamLog:
        seen: list[StreamEventRecord] = []
        closed = False
        with anyio.move_on_after(timeout):
            async for event in self.dispatcher.events(submission.stream_id):
                text = str(event.data.get("text", "")) if event.kind == "delta" else ""
                seen.append(StreamEventRecord(event.kind, event.t_ns, event.turn_id, text))
            closed = True
        return StreamLog(tuple(seen), closed)

    async def leave(self, submission: Submission) -> None:
        """The caller stops reading the turn's stream (Capability.LEAVE_EARLY); no cancel."""
        await self.dispatcher.leave(submission.stream_id)

    def shown(self, submission: Submission) -> str:
        """The text the turn's stream has delivered so far (what a UI would show)."""
        return "".join(
            str(e.data.get("text", ""))
            for e in self.dispatcher.stream_history(submission.stream_id)
            if e.kind == "delta"
        )

    async def transcript(self, session_id: str) -> Transcript:
        messages = self.agent.transcript(session_id)
        usage = self.agent.usage(session_id)
        turns = tuple(dict.fromkeys(m.turn_id for m in messages))
        entries = tuple(
            TranscriptEntry(m.role, m.content, m.turn_id, m.finish_reason) for m in messages
        )
        return Transcript(entries, (usage.input_tokens, usage.output_tokens), turns)

    def live_pids(self) -> list[int]:
        return self.agent.live_pids() if self._agent is not None else []

    def _on_event(self, event: AgentEvent) -> None:
        noted, self._noted = self._noted, anyio.Event()
        noted.set()

    async def wait_note(self, kind: str, after_ns: int, timeout: float) -> bool:
        """Wait until the agent reports an event of `kind` at or after `after_ns`."""
        with anyio.move_on_after(timeout):
            while not any(e.kind == kind and e.t_ns >= after_ns for e in self.agent.events):
                await self._noted.wait()
            return True
        return False

    def notes(self) -> list[TimelineNote]:
        if self._agent is None:
            return []
        return [
            TimelineNote(e.t_ns, f"{e.kind} {e.turn_id} {e.detail}".strip())
            for e in self._agent.events
        ]

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()  # the agent's task group must exit in its own scope
