"""The one interface scenarios talk to: how to drive an agent under test.

A target starts an agent against the fake provider, opens sessions, submits prompts,
cancels, waits for outcomes and reads the persisted transcript. Each target declares
its capabilities; a scenario needing one the target lacks is "not applicable", never
"passed". Kinds: `reference` (in-process), `acp`, `http`, `pty`, `python:` and targets
configured in TOML (harness/targets/__init__.py, docs/targets.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from fake_providers.kinds import ProviderKind


class Capability(StrEnum):
    CANCEL = "cancel"  # cancel a running turn
    TIMEOUT = "timeout"  # a per-turn deadline the harness can set
    TRANSCRIPT = "transcript"  # read the persisted transcript and usage
    TOOLS = "tools"  # the agent runs tools the model asks for (subprocess tool included)
    RETRIES = "retries"  # the agent retries transient provider failures, as configured
    STALE_TIMEOUT = "stale-timeout"  # the agent gives up on a silent stream by itself
    COMPACTION = "compaction"  # inline context compaction, cancellable by the user
    BACKGROUND = "background"  # post-turn background model calls with their own lifetime
    SESSIONS = "sessions"  # several independent sessions at once
    QUEUE = "queue"  # a prompt submitted while a turn runs is accepted and queued (I3)
    STREAM_IDS = "stream-ids"  # each turn has a stream id a cancel can name (I4)
    STREAM_EVENTS = "stream-events"  # each turn's own event stream can be observed (I4)
    ACP = "acp"  # speaks the Agent Client Protocol (session/prompt, session/cancel, ...)
    PERMISSIONS = "permissions"  # asks the client for permission before some tool calls
    # The stricter I2 contract: a cancelled or timed-out turn leaves no trace at all in the
    # persisted state (without it, what is recorded before the outcome is the agent's policy).
    ATOMIC_TURNS = "atomic-turns"
    LEAVE_EARLY = "leave-early"  # the caller can stop consuming a turn's stream (`leave`)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the fake provider is and how to talk to it."""

    kind: ProviderKind
    base_url: str
    api_key: str = "sk-cancel-harness-test"
    ca_file: str | None = None
    # Variables the agent's process needs to reach the endpoint: the proxy and the CA to
    # trust when the target goes through `cancel-harness proxy` (harness.proxy). Process
    # targets add them to the agent's environment; a Python adapter applies them itself.
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ProviderKind.parse(self.kind))


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Knobs a scenario sets on the agent (seconds). None keeps the target's default."""

    turn_timeout: float | None = None
    stale_timeout: float | None = None
    max_retries: int | None = None
    backoff_base: float | None = None
    backoff_max: float | None = None
    compaction_threshold_chars: int | None = None
    memory_extraction: bool | None = None
    max_output_tokens: int | None = None
    stream: bool | None = None  # stream model responses (False: non-streaming requests)
    seed: int = 0  # for the agent's own random choices (retry jitter); 0: the agent's default


@dataclass(frozen=True, slots=True)
class Submission:
    """A prompt the agent accepted."""

    session_id: str
    turn_id: str
    stream_id: str = ""


@dataclass(frozen=True, slots=True)
class CancelAck:
    """The agent's answer to a cancel request (I4: `cancelled: false` is reported, not lost)."""

    cancelled: bool
    turn_id: str = ""
    stream_id: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a turn ended, as the agent reports it."""

    turn_id: str
    stop_reason: str  # completed | cancelled | timeout | max_turns | max_budget | error
    text: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    role: str
    content: str
    turn_id: str = ""
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    """The persisted state of one session, comparable for ghost-turn checks."""

    entries: tuple[TranscriptEntry, ...] = ()
    usage: tuple[int, int] = (0, 0)  # (input tokens, output tokens)
    turn_ids: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class StreamEventRecord:
    """One event a turn's stream delivered: `delta`, `tool`, or a terminal kind."""

    kind: str
    t_ns: int
    turn_id: str = ""
    text: str = ""


TERMINAL_EVENT_KINDS = frozenset({"completed", "cancelled", "error", "timeout"})


@dataclass(frozen=True, slots=True)
class StreamLog:
    """Everything one turn's stream delivered, and whether the stream closed."""

    events: tuple[StreamEventRecord, ...]
    closed: bool

    @property
    def terminals(self) -> tuple[StreamEventRecord, ...]:
        return tuple(e for e in self.events if e.kind in TERMINAL_EVENT_KINDS)


@dataclass(frozen=True, slots=True)
class TimelineNote:
    """Something the target saw inside the agent, for the scenario's timeline."""

    t_ns: int
    what: str


class TargetStartError(RuntimeError):
    """The agent would not start; the message has the cause and the stderr tail."""


class AgentBroke(RuntimeError):
    """The agent failed on its own before the scenario's point (it crashed, or ended the turn
    with an error before calling the model): its error, never a verdict on cancellation."""


class Target(Protocol):
    """An agent under test."""

    name: str
    capabilities: frozenset[Capability]

    async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None: ...

    async def new_session(self) -> str: ...

    async def submit(self, session_id: str, prompt: str) -> Submission:
        """Return once the agent accepted the prompt (the turn may not have started)."""
        ...

    async def cancel(self, session_id: str, stream_id: str | None = None) -> CancelAck: ...

    async def wait_outcome(self, submission: Submission, timeout: float) -> Outcome: ...

    async def transcript(self, session_id: str) -> Transcript: ...

    async def stream_log(self, submission: Submission, timeout: float) -> StreamLog:
        """The turn's own event stream: wait until it closes or `timeout` passes.

        Needs Capability.STREAM_EVENTS; never raises on timeout (the log says not closed).
        """
        ...

    def live_pids(self) -> list[int]:
        """Tool subprocesses the agent started that are still running (for its own tests;
        the harness finds the case's processes by the mark in their environment)."""
        ...

    def notes(self) -> list[TimelineNote]:
        """Agent-side events so far (may be empty for black-box targets)."""
        ...

    async def stop(self) -> None: ...


class LeavesEarly(Protocol):
    """A target with Capability.LEAVE_EARLY: its caller can simply stop consuming a turn.

    `leave` does what a user of the agent's API does when they no longer want the answer:
    break out of the stream iterator, drop the response object. It sends no cancel. The
    contract: the agent closes the provider connection at once and reads nothing more.
    """

    async def leave(self, submission: Submission) -> None: ...
