"""A schedule: the short program explore runs against an agent, as plain frozen data.

    Schedule(Profile.PLAIN, "openai-chat", (
        Prompt(turn=1, session=0, requests=(Request(Fault(FaultKind.HOLD, at=4)),)),
        Reach(turn=1, point=Point.HELD, request=1),
        Cancel(session=0),
    ))

reads "A: prompt t1 (request #1: hold after 4 events); wait until t1's request #1 is held;
cancel session A". Everything the harness then does (the end phase: release, every turn
ends, the next turn completes) is implied. Durations are in tempo units, so a schedule
means the same at any `--tempo`. A schedule round-trips through its JSON text
(`to_text`/`parse`, in `schedule_text.py`), which is what a replay command carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from fake_providers.kinds import ProviderKind

SESSION_NAMES = "AB"


class ScheduleError(ValueError):
    """A schedule text that cannot be read; the message names the bad part and the fix."""


class Profile(StrEnum):
    """The agent's settings for one schedule (one started agent per profile and kind)."""

    PLAIN = "plain"  # streaming, retries as configured, a long stale timeout
    JSON = "json"  # plain JSON bodies (stream: false)
    DEADLINE = "deadline"  # a per-turn deadline of DEADLINE_TEMPO
    STALE = "stale"  # a stale timeout of STALE_TEMPO and no retries
    MEMORY = "memory"  # background memory extraction after each completed turn
    COMPACTION = "compaction"  # inline compaction before every turn with history


DEADLINE_TEMPO = 10
STALE_TEMPO = 6


class FaultKind(StrEnum):
    """What the provider does to one model request."""

    OK = "ok"  # answers (paced or dripped, when asked)
    HOLD_HEADERS = "hold-headers"  # accepts and sends nothing until released
    HOLD = "hold"  # headers and `at` events, then held until released (0: a silent body)
    FIN = "fin"  # closes cleanly after `at` events: a genuine drop
    RST = "rst"  # resets after `at` events: a genuine network error
    HTTP = "http"  # an error status, with `retry_after` (tempo) when given
    STREAM_ERROR = "stream-error"  # the provider's in-stream error event after `at` events
    HANG = "hang"  # silent forever after `at` events, no gate (stale profile)
    QUOTA = "quota"  # 429: a per-minute quota of `quota` is used up until `retry_after` tempo
    CONTEXT = "context-window"  # 400: the request is too long for the model's context window


HOLDS = frozenset({FaultKind.HOLD, FaultKind.HOLD_HEADERS})
# Failures an agent that retries (Capability.RETRIES) must retry as configured.
RETRYABLE = frozenset({FaultKind.FIN, FaultKind.RST, FaultKind.HTTP, FaultKind.QUOTA})
# Failures where the contract leaves the next move to the agent (retry, compact, give up).
OPEN_ENDED = frozenset({FaultKind.STREAM_ERROR, FaultKind.CONTEXT})


@dataclass(frozen=True, slots=True)
class Fault:
    """One request's fault. `pace` is tempo per event, `retry_after` is in tempo."""

    kind: FaultKind = FaultKind.OK
    at: int = 0
    status: int = 0
    retry_after: float | None = None
    pace: float = 0.0
    drip: int = 0  # bytes per second
    quota: str = ""  # requests | tokens, for a quota fault

    @property
    def fails(self) -> bool:
        return self.kind in RETRYABLE or self.kind in OPEN_ENDED

    def describe(self) -> str:
        paced = f", paced {self.pace:g} tempo/event" if self.pace else ""
        paced += f", dripped at {self.drip} B/s" if self.drip else ""
        match self.kind:
            case FaultKind.OK:
                return "answers" + paced
            case FaultKind.HOLD_HEADERS:
                return "held before its headers"
            case FaultKind.HOLD if self.at == 0:
                return "headers, then a silent body (held)"
            case FaultKind.HOLD:
                return f"held after {self.at} events" + paced
            case FaultKind.FIN:
                return f"FIN after {self.at} events" + paced
            case FaultKind.RST:
                return f"RST after {self.at} events" + paced
            case FaultKind.HTTP:
                after = (
                    "" if self.retry_after is None else f" retry-after {self.retry_after:g} tempo"
                )
                return f"HTTP {self.status}{after}"
            case FaultKind.STREAM_ERROR:
                return f"in-stream error after {self.at} events" + paced
            case FaultKind.HANG:
                return f"silent forever after {self.at} events"
            case FaultKind.QUOTA:
                reset = self.retry_after or 0
                return f"429: the quota of {self.quota} per minute is used up for {reset:g} tempo"
            case FaultKind.CONTEXT:
                return "400: too long for the model's context window"


class ToolKind(StrEnum):
    """A tool the model asks for: `quick` echoes; `slow` runs until released (a tool hold),
    `tree` starts a small process tree that does; `broken` comes with arguments that are not
    valid JSON (only where the wire format can carry them)."""

    QUICK = "quick"
    SLOW = "slow"
    TREE = "tree"
    BROKEN = "broken"


@dataclass(frozen=True, slots=True)
class Request:
    """One model request of a turn, in order: its fault, and (when it succeeds) whether the
    model answers with text or asks for a tool. A failed request is retried as the next one."""

    fault: Fault = field(default_factory=Fault)
    tool: ToolKind | None = None

    def describe(self) -> str:
        said = f"; asks for a {self.tool} tool" if self.tool is not None else ""
        if self.tool in (ToolKind.SLOW, ToolKind.TREE):
            said += " (held until released)"
        if self.tool is ToolKind.BROKEN:
            said = "; asks for a tool with arguments that are not valid JSON"
        return self.fault.describe() + ("" if self.fault.fails else said)


class Point(StrEnum):
    """An observable point of a turn a step can wait for."""

    HELD = "held"  # request #n is held at its gate (after its text was shown, when it has text)
    BACKOFF = "backoff"  # the agent backs off after request #n failed
    TOOL = "tool"  # the tool request #n asked for is running
    COMPACTION = "compaction"  # the turn's compaction call is held
    ANSWERED = "answered"  # the turn's final answer was written in full (commit..end)
    MEMORY = "memory"  # the completed turn's memory extraction is held


class Twice(StrEnum):
    NO = ""
    SEQUENTIAL = "sequential"
    CONCURRENT = "concurrent"


@dataclass(frozen=True, slots=True)
class Prompt:
    """Submit turn `turn` on session `session`; `followup`: while that session is busy."""

    turn: int
    session: int
    requests: tuple[Request, ...]
    followup: bool = False
    hold_compaction: bool = False
    hold_memory: bool = False


@dataclass(frozen=True, slots=True)
class Reach:
    """Wait until turn `turn` is at `point` (`request`: which request, from 1)."""

    turn: int
    point: Point
    request: int = 0


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel a session; `names` a turn's stream (a stale one when it has ended)."""

    session: int
    names: int | None = None
    twice: Twice = Twice.NO


@dataclass(frozen=True, slots=True)
class Leave:
    """The caller stops reading turn `turn`'s stream (no cancel)."""

    turn: int


@dataclass(frozen=True, slots=True)
class Release:
    """Open every gate of turn `turn`: the provider goes on as a real model would."""

    turn: int


@dataclass(frozen=True, slots=True)
class Await:
    """Wait until turn `turn` ends."""

    turn: int


type Step = Prompt | Reach | Cancel | Leave | Release | Await
STEP_TYPES: dict[str, type[Prompt | Reach | Cancel | Leave | Release | Await]] = {
    "prompt": Prompt,
    "reach": Reach,
    "cancel": Cancel,
    "leave": Leave,
    "release": Release,
    "await": Await,
}


def session_name(index: int) -> str:
    return SESSION_NAMES[index] if index < len(SESSION_NAMES) else f"S{index}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """The profile, the provider kind, and the steps."""

    profile: Profile
    kind: ProviderKind
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ProviderKind.parse(self.kind))
        object.__setattr__(self, "profile", Profile(self.profile))

    def prompts(self) -> dict[int, Prompt]:
        return {s.turn: s for s in self.steps if isinstance(s, Prompt)}

    def cut(self, after: int) -> Schedule | None:
        """The first `after` steps (a schedule the strategies could have drawn: each step
        depends only on those before it), or None if that would leave nothing out."""
        if not 0 < after < len(self.steps):
            return None
        return Schedule(self.profile, self.kind, self.steps[:after])

    def sessions(self) -> list[int]:
        return sorted({s.session for s in self.steps if isinstance(s, Prompt | Cancel)})

    def describe(self) -> list[str]:
        """The steps as a reader would say them, one line each."""
        prompts = self.prompts()
        return [describe_step(step, prompts) for step in self.steps]

    def to_text(self) -> str:
        """The compact JSON text a replay command carries (round-trips through `parse`)."""
        from harness.explore.schedule_text import encode

        return encode(self)

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Read a schedule text; raises `ScheduleError` saying what is wrong."""
        from harness.explore.schedule_text import decode

        return decode(text)


def describe_step(step: Step, prompts: dict[int, Prompt]) -> str:
    match step:
        case Prompt():
            who = session_name(step.session)
            how = " (a follow-up while it is busy)" if step.followup else ""
            parts = [f"#{i} {r.describe()}" for i, r in enumerate(step.requests, start=1)]
            extra = "; its compaction call held" if step.hold_compaction else ""
            extra += "; its memory extraction held" if step.hold_memory else ""
            return f"{who}: prompt t{step.turn}{how}: " + "; ".join(parts) + extra
        case Reach():
            return f"wait until t{step.turn} {_point(step, prompts)}"
        case Cancel():
            named = f" naming t{step.names}'s stream" if step.names is not None else ""
            twice = f", twice ({step.twice})" if step.twice is not Twice.NO else ""
            return f"cancel session {session_name(step.session)}{named}{twice}"
        case Leave():
            return f"the caller stops reading t{step.turn} (no cancel)"
        case Release():
            return f"let the provider go on with t{step.turn}"
        case Await():
            return f"wait for t{step.turn} to end"


def _point(step: Reach, prompts: dict[int, Prompt]) -> str:
    n = step.request
    match step.point:
        case Point.HELD:
            fault = prompts[step.turn].requests[n - 1].fault if step.turn in prompts else None
            what = fault.describe() if fault is not None else "held"
            return f"has request #{n} {what}"
        case Point.BACKOFF:
            return f"backs off after request #{n} failed"
        case Point.TOOL:
            return f"runs the tool request #{n} asked for"
        case Point.COMPACTION:
            return "is compacting (its compaction call held)"
        case Point.ANSWERED:
            return "has its final answer written in full (between commit and end)"
        case Point.MEMORY:
            return "has ended and its memory extraction is held"
