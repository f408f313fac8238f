"""The fault vocabulary: small named steps composed into a plan, and its one-line text spec.

In the spirit of Toxiproxy's toxics, every fault is a small frozen object with a few
parameters. A `FaultPlan` is a tuple of them plus the content to send. `FaultPlan.compile`
turns a plan into a `Schedule` for a stream of N events: pure data the server loop follows.
The text spec (`pace=50ms,hang-after=5`) is shared by the CLI, the control API and the
model-name convention, and always round-trips through `FaultPlan.spec()`.
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from fake_providers.content import DEFAULT_TOKENS, ContentSpec

if TYPE_CHECKING:
    from fake_providers.gates import Gate


class FaultSpecError(ValueError):
    """A fault spec that cannot be understood; the message names the bad token and the fix."""


# ---------------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class Pace:
    """Write one event every `interval` seconds against absolute deadlines (no drift)."""

    interval: float
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class HangBeforeHeaders:
    """Accept the request and send nothing; `duration=None` hangs until the client leaves."""

    duration: float | None = None


@dataclass(frozen=True, slots=True)
class HangAfter:
    """After `events` events, go silent (forever, or for `duration` seconds then go on)."""

    events: int
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class Drip:
    """Trickle the body at `bytes_per_second`."""

    bytes_per_second: float


@dataclass(frozen=True, slots=True)
class CloseAfter:
    """Close the connection cleanly (FIN) after `events` events."""

    events: int


@dataclass(frozen=True, slots=True)
class ResetAfter:
    """Abort the connection (RST, via SO_LINGER 0) after `events` events."""

    events: int


@dataclass(frozen=True, slots=True)
class HttpError:
    """Answer with an HTTP error status and a body in the provider's own error format."""

    status: int
    retry_after: float | None = None
    retry_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StreamError:
    """After `events` events, send the provider's in-stream error event and end the stream."""

    events: int
    message: str = "The fake provider is overloaded (injected fault)."


@dataclass(frozen=True, slots=True)
class Malformed:
    """After `events` events, send one event a client cannot parse, then carry on."""

    events: int


@dataclass(frozen=True, slots=True)
class Hold:
    """Hold the stream before event `before` (0: before headers) until `gate` is released."""

    before: int
    gate: Gate | None = None
    gate_name: str = "default"


Step = (
    Pace
    | HangBeforeHeaders
    | HangAfter
    | Drip
    | CloseAfter
    | ResetAfter
    | HttpError
    | StreamError
    | Malformed
    | Hold
)


# ------------------------------------------------------------------------------- schedule


@dataclass(frozen=True, slots=True)
class Action:
    """Something the server does between events, at a position in the stream."""

    kind: str  # "hold" | "hang" | "error" | "malformed" | "close" | "reset"
    duration: float | None = None
    hold: Hold | None = None
    message: str = ""


TERMINAL_ACTIONS = frozenset({"error", "close", "reset"})
_ACTION_ORDER = {"hold": 0, "hang": 1, "malformed": 2, "error": 3, "close": 4, "reset": 5}


@dataclass(frozen=True, slots=True)
class Schedule:
    """What the server does for one response. Pure data, laid out lazily.

    `at(k)` lists the actions to run after k events were written and before event k+1
    (k=0: right after the headers). A fault placed past the end of the stream still
    happens, just before the last event: `hang-after=500` on a 200-event stream hangs
    before the last one; `due()` yields when each event may go out, in seconds after
    the headers (nothing when unpaced).
    """

    error: HttpError | None
    before_headers: tuple[Action, ...]
    actions: dict[int, tuple[Action, ...]]
    pace: Pace | None
    drip: float | None
    seed: int = 0
    request_ordinal: int = 0

    def at(self, position: int, *, last: bool = False) -> tuple[Action, ...]:
        """Actions at `position`; with `last`, also every action placed beyond it."""
        if not last:
            return self.actions.get(position, ())
        found = [a for k, acts in sorted(self.actions.items()) if k >= position for a in acts]
        return tuple(sorted(found, key=lambda a: _ACTION_ORDER[a.kind]))

    def next_position(self, position: int) -> int | None:
        """The first position after `position` where an action waits, if any."""
        later = [k for k in self.actions if k > position]
        return min(later) if later else None

    def due(self) -> Iterator[float]:
        """Offsets (seconds after headers) of events 1, 2, ... against absolute deadlines."""
        pace = self.pace
        if pace is None:
            return
        if pace.jitter <= 0:
            i = 0
            while True:
                yield i * pace.interval
                i += 1
        rng = random.Random(self.seed * 1_000_003 + self.request_ordinal)
        last, i = 0.0, 0
        while True:
            last = max(last, i * pace.interval + rng.uniform(0.0, pace.jitter))
            yield last
            i += 1


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """A composable response script: fault steps plus what the model says."""

    steps: tuple[Step, ...] = ()
    content: ContentSpec = field(default_factory=ContentSpec)
    seed: int = 0

    def __add__(self, other: FaultPlan | Step) -> FaultPlan:
        if isinstance(other, FaultPlan):
            content = other.content if other.content != ContentSpec() else self.content
            return FaultPlan(self.steps + other.steps, content, other.seed or self.seed)
        return replace(self, steps=(*self.steps, other))

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Parse a text spec such as `pace=50ms,hang-after=5` (selectors are not allowed)."""
        rule = parse_rule(spec)
        if rule.match != Match():
            bad = next(iter(rule.match.describe()))
            raise FaultSpecError(
                f"'{bad}' selects requests, which a plain fault plan cannot do; "
                "use it in a rule (--fault or POST /__harness/faults) instead"
            )
        return rule.plan

    def spec(self) -> str:
        """The text spec of this plan (round-trips through `parse`)."""
        return ",".join(_plan_tokens(self))

    def compile(self, *, request_ordinal: int = 0) -> Schedule:
        """Lay the plan out as a schedule for one response."""
        error: HttpError | None = None
        before: list[Action] = []
        actions: dict[int, list[Action]] = {}
        pace: Pace | None = None
        drip: float | None = None
        for step in self.steps:
            match step:
                case HttpError():
                    error = step
                case Pace():
                    pace = step
                case Drip():
                    drip = step.bytes_per_second
                case HangBeforeHeaders():
                    before.append(Action("hang", duration=step.duration))
                case Hold(before=0):
                    before.append(Action("hold", hold=step))
                case Hold():
                    actions.setdefault(step.before - 1, []).append(Action("hold", hold=step))
                case HangAfter():
                    hang = Action("hang", duration=step.duration)
                    actions.setdefault(step.events, []).append(hang)
                case StreamError():
                    err = Action("error", message=step.message)
                    actions.setdefault(step.events, []).append(err)
                case Malformed():
                    actions.setdefault(step.events, []).append(Action("malformed"))
                case CloseAfter():
                    actions.setdefault(step.events, []).append(Action("close"))
                case ResetAfter():
                    actions.setdefault(step.events, []).append(Action("reset"))
        before.sort(key=lambda a: _ACTION_ORDER[a.kind])
        ordered = {
            k: tuple(sorted(v, key=lambda a: _ACTION_ORDER[a.kind])) for k, v in actions.items()
        }
        return Schedule(error, tuple(before), ordered, pace, drip, self.seed, request_ordinal)


# ------------------------------------------------------------------------------ selectors


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a rule applies to; every given field must match."""

    path: str | None = None
    model: str | None = None
    header: tuple[str, str] | None = None
    nth: int | None = None
    body_contains: str | None = None
    stream: bool | None = None
    kind: str | None = None
    role: str | None = None  # main | side | probe (fake_providers.roles)
    prompt: str | None = None  # the prompt tag the request's latest user message carries

    def describe(self) -> tuple[str, ...]:
        tokens: list[str] = []
        if self.path is not None:
            tokens.append(f"path={self.path}")
        if self.model is not None:
            tokens.append(f"model={self.model}")
        if self.header is not None:
            tokens.append(f"header={self.header[0]}:{self.header[1]}")
        if self.nth is not None:
            tokens.append(f"nth={self.nth}")
        if self.body_contains is not None:
            tokens.append(f"body-contains={self.body_contains}")
        if self.stream is not None:
            tokens.append(f"stream={'true' if self.stream else 'false'}")
        if self.kind is not None:
            tokens.append(f"kind={self.kind}")
        if self.role is not None:
            tokens.append(f"role={self.role}")
        if self.prompt is not None:
            tokens.append(f"prompt={self.prompt}")
        return tuple(tokens)


@dataclass(frozen=True, slots=True)
class Rule:
    """A plan for the requests that `match` selects, for at most `times` of them."""

    plan: FaultPlan
    match: Match = field(default_factory=Match)
    times: int | None = None

    def spec(self) -> str:
        tokens = [*self.match.describe(), *_plan_tokens(self.plan)]
        if self.times is not None:
            tokens.append(f"times={self.times}")
        return ",".join(tokens)


# ---------------------------------------------------------------------------- text specs

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s|m)$")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}

FAULT_KEYS = (
    "pace",
    "jitter",
    "seed",
    "hang-before-headers",
    "hang-after",
    "hang-for",
    "drip",
    "close-after",
    "reset-after",
    "status",
    "retry-after",
    "retry-after-ms",
    "error-after",
    "malformed-after",
    "hold-before",
    "gate",
    "tokens",
    "text",
    "tool",
)
SELECTOR_KEYS = (
    "path",
    "model",
    "header",
    "nth",
    "body-contains",
    "stream",
    "kind",
    "role",
    "prompt",
    "times",
)
ROLES = ("main", "side", "probe")
ERROR_STATUSES = frozenset({400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503, 504, 529})


def parse_duration(text: str, *, key: str) -> float:
    """`50ms` -> 0.05. Units: us, ms, s, m. A bare number is refused: units prevent mistakes."""
    m = _DURATION.match(text.strip())
    if not m:
        raise FaultSpecError(
            f"{key}={text}: expected a duration with a unit, such as 50ms, 1.5s or 2m"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def _count(text: str, *, key: str) -> int:
    if not text.isdigit():
        raise FaultSpecError(f"{key}={text}: expected a whole number of events, such as {key}=5")
    return int(text)


def _split(spec: str) -> Iterable[tuple[str, str | None]]:
    for raw in re.split(r"[,;]", spec):
        token = raw.strip()
        if not token:
            continue
        key, sep, value = token.partition("=")
        yield key.strip().lower(), (value.strip() if sep else None)


def parse_rule(spec: str) -> Rule:
    """Parse one text spec (faults, content and selectors) into a `Rule`.

    Raises `FaultSpecError` naming the bad token and listing the valid ones.
    """
    from fake_providers.content import ToolCall

    steps: list[Step] = []
    match_fields: dict[str, object] = {}
    content_tokens = DEFAULT_TOKENS
    text: str | None = None
    tools: list[ToolCall] = []
    pace: float | None = None
    jitter = 0.0
    seed = 0
    status: int | None = None
    retry_after: float | None = None
    retry_after_ms: int | None = None
    hang_after: int | None = None
    hang_for: float | None = None
    hold_before: int | None = None
    gate_name = "default"
    times: int | None = None

    for key, value in _split(spec):
        if key not in FAULT_KEYS and key not in SELECTOR_KEYS:
            raise FaultSpecError(_unknown(key, spec))
        if key == "hang-before-headers":
            steps.append(
                HangBeforeHeaders(None if value is None else parse_duration(value, key=key))
            )
            continue
        if value is None or value == "":
            raise FaultSpecError(f"'{key}' needs a value, as in {_EXAMPLES[key]}")
        match key:
            case "pace":
                pace = parse_duration(value, key=key)
            case "jitter":
                jitter = parse_duration(value, key=key)
            case "seed":
                seed = _count(value, key=key)
            case "hang-after":
                hang_after = _count(value, key=key)
            case "hang-for":
                hang_for = parse_duration(value, key=key)
            case "drip":
                steps.append(Drip(_rate(value)))
            case "close-after":
                steps.append(CloseAfter(_count(value, key=key)))
            case "reset-after":
                steps.append(ResetAfter(_count(value, key=key)))
            case "status":
                status = _status(value)
            case "retry-after":
                retry_after = _seconds(value, key=key)
            case "retry-after-ms":
                retry_after_ms = _count(value, key=key)
            case "error-after":
                steps.append(StreamError(_count(value, key=key)))
            case "malformed-after":
                steps.append(Malformed(_count(value, key=key)))
            case "hold-before":
                hold_before = 0 if value == "headers" else _count(value, key=key)
            case "gate":
                gate_name = value
            case "tokens":
                content_tokens = _count(value, key=key)
            case "text":
                text = value
            case "tool":
                tools.append(ToolCall(id=f"call_{value}_{len(tools) + 1}", name=value))
            case "path" | "model" | "body-contains" | "kind" | "prompt":
                match_fields[key.replace("-", "_")] = value
            case "role":
                if value not in ROLES:
                    raise FaultSpecError(f"role={value}: expected one of {', '.join(ROLES)}")
                match_fields["role"] = value
            case "header":
                name, colon, pattern = value.partition(":")
                if not colon or not name:
                    raise FaultSpecError(
                        f"header={value}: expected NAME:VALUE, such as header=x-title:*"
                    )
                match_fields["header"] = (name.strip().lower(), pattern.strip())
            case "nth":
                match_fields["nth"] = _count(value, key=key)
            case "stream":
                match_fields["stream"] = _boolean(value, key=key)
            case "times":
                times = _count(value, key=key)

    if pace is not None:
        steps.insert(0, Pace(pace, jitter))
    elif jitter:
        raise FaultSpecError("jitter needs pace: write pace=50ms,jitter=10ms")
    if hang_after is not None:
        steps.append(HangAfter(hang_after, hang_for))
    elif hang_for is not None:
        raise FaultSpecError("hang-for needs hang-after: write hang-after=5,hang-for=2s")
    if hold_before is not None:
        steps.append(Hold(hold_before, gate_name=gate_name))
    elif gate_name != "default":
        raise FaultSpecError("gate names a hold: write hold-before=3,gate=NAME")
    if status is not None:
        steps.append(HttpError(status, retry_after, retry_after_ms))
    elif retry_after is not None or retry_after_ms is not None:
        raise FaultSpecError(
            "retry-after goes with an error status: write status=429,retry-after=1"
        )
    content = ContentSpec(tokens=content_tokens, text=text, tool_calls=tuple(tools))
    plan = FaultPlan(tuple(steps), content, seed)
    return Rule(plan=plan, match=Match(**match_fields), times=times)  # type: ignore[arg-type]


def _rate(value: str) -> float:
    m = re.match(r"^(\d+(?:\.\d+)?)(?:b/s|bps)?$", value.lower())
    if not m or float(m.group(1)) <= 0:
        raise FaultSpecError(f"drip={value}: expected bytes per second above 0, such as drip=200")
    return float(m.group(1))


def _status(value: str) -> int:
    if not value.isdigit() or int(value) not in ERROR_STATUSES:
        valid = ", ".join(str(s) for s in sorted(ERROR_STATUSES))
        raise FaultSpecError(f"status={value}: expected an error status, one of {valid}")
    return int(value)


def _seconds(value: str, *, key: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise FaultSpecError(f"{key}={value}: expected seconds, such as {key}=1") from None
    if seconds < 0:
        raise FaultSpecError(f"{key}={value}: expected seconds of 0 or more")
    return seconds


def _boolean(value: str, *, key: str) -> bool:
    if value.lower() in {"true", "yes", "1"}:
        return True
    if value.lower() in {"false", "no", "0"}:
        return False
    raise FaultSpecError(f"{key}={value}: expected true or false")


_EXAMPLES = {
    "pace": "pace=50ms",
    "jitter": "pace=50ms,jitter=10ms",
    "seed": "seed=7",
    "hang-after": "hang-after=5",
    "hang-for": "hang-after=5,hang-for=2s",
    "drip": "drip=200 (bytes per second)",
    "close-after": "close-after=3",
    "reset-after": "reset-after=3",
    "status": "status=429",
    "retry-after": "status=429,retry-after=1",
    "retry-after-ms": "status=429,retry-after-ms=250",
    "error-after": "error-after=4",
    "malformed-after": "malformed-after=2",
    "hold-before": "hold-before=3 (or hold-before=headers)",
    "gate": "hold-before=3,gate=main",
    "tokens": "tokens=500",
    "text": "text=hello world",
    "tool": "tool=get_weather",
    "path": "path=/v1/messages",
    "model": "model=gpt-4o*",
    "header": "header=x-title:*",
    "nth": "nth=2",
    "body-contains": "body-contains=summarize",
    "stream": "stream=true",
    "kind": "kind=anthropic",
    "role": "role=main (main, side or probe)",
    "prompt": "prompt=ch-5f3a9c21 (a prompt tag the harness sent)",
    "times": "times=2",
}


def _unknown(key: str, spec: str) -> str:
    valid = (*FAULT_KEYS, *SELECTOR_KEYS)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown fault '{key}' in '{spec}'{hint}; valid: {', '.join(valid)}"


def _plan_tokens(plan: FaultPlan) -> list[str]:
    tokens: list[str] = []
    for step in plan.steps:
        match step:
            case Pace():
                tokens.append(f"pace={_fmt_duration(step.interval)}")
                if step.jitter:
                    tokens.append(f"jitter={_fmt_duration(step.jitter)}")
            case HangBeforeHeaders(duration=None):
                tokens.append("hang-before-headers")
            case HangBeforeHeaders():
                tokens.append(f"hang-before-headers={_fmt_duration(step.duration or 0)}")
            case HangAfter():
                tokens.append(f"hang-after={step.events}")
                if step.duration is not None:
                    tokens.append(f"hang-for={_fmt_duration(step.duration)}")
            case Drip():
                tokens.append(f"drip={step.bytes_per_second:g}")
            case CloseAfter():
                tokens.append(f"close-after={step.events}")
            case ResetAfter():
                tokens.append(f"reset-after={step.events}")
            case HttpError():
                tokens.append(f"status={step.status}")
                if step.retry_after is not None:
                    tokens.append(f"retry-after={step.retry_after:g}")
                if step.retry_after_ms is not None:
                    tokens.append(f"retry-after-ms={step.retry_after_ms}")
            case StreamError():
                tokens.append(f"error-after={step.events}")
            case Malformed():
                tokens.append(f"malformed-after={step.events}")
            case Hold():
                where = "headers" if step.before == 0 else str(step.before)
                tokens.append(f"hold-before={where}")
                name = step.gate.name if step.gate is not None else step.gate_name
                if name != "default":
                    tokens.append(f"gate={name}")
    if plan.seed:
        tokens.append(f"seed={plan.seed}")
    content = plan.content
    if content.text is not None:
        tokens.append(f"text={content.text}")
    elif content.tokens != DEFAULT_TOKENS:
        tokens.append(f"tokens={content.tokens}")
    tokens.extend(f"tool={call.name}" for call in content.tool_calls)
    return tokens


def _fmt_duration(seconds: float) -> str:
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    ms = seconds * 1000
    if ms >= 1 and abs(ms - round(ms)) < 1e-9:
        return f"{round(ms)}ms"
    return f"{seconds * 1e6:g}us" if seconds < 1e-3 else f"{ms:g}ms"
