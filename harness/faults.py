"""Typed faults for scenario authors: small constructors that compose with `+`.

    ctx.fault(pace(ctx.tempo(1)) + hold(before=4, gate="main"), on=prompt, times=1)

Each constructor returns a `FaultPlan` (the fake provider's response script), so plans add
up left to right; text specs stay accepted everywhere a plan is (`"pace=20ms,hang-after=5"`).
Which request a plan applies to is said with `on=`: a `Prompt` (its main call: the turn's own
model call, found from the prompt text the harness sent), `side_of(prompt)` (side traffic
carrying that prompt: titles, summaries, memory and compaction calls), or a raw `Match`.
"""

from __future__ import annotations

from fake_providers import (
    CloseAfter,
    ContentSpec,
    Drip,
    FaultPlan,
    HangAfter,
    HangBeforeHeaders,
    Hold,
    HttpError,
    Malformed,
    Match,
    Pace,
    ResetAfter,
    StreamError,
    ToolCall,
)
from fake_providers.faults.context_window import ContextWindow
from fake_providers.faults.quota import Quota
from fake_providers.kinds import ProviderKind
from fake_providers.roles import Role
from harness.prompts import Prompt


def pace(interval: float, *, jitter: float = 0.0) -> FaultPlan:
    """One event every `interval` seconds against absolute deadlines (seeded jitter)."""
    return FaultPlan((Pace(interval, jitter),))


def hold(*, before: int | str, gate: str = "default") -> FaultPlan:
    """Park before event `before` (or `"headers"`) until the scenario releases `gate`."""
    position = 0 if before == "headers" else int(before)
    return FaultPlan((Hold(position, gate_name=gate),))


def hang_after(events: int, *, duration: float | None = None) -> FaultPlan:
    """Go silent after `events` events: forever (the client must leave), or for a while."""
    return FaultPlan((HangAfter(events, duration),))


def hang_before_headers(duration: float | None = None) -> FaultPlan:
    """Accept the request and send nothing, forever or for `duration` seconds."""
    return FaultPlan((HangBeforeHeaders(duration),))


def close_after(events: int) -> FaultPlan:
    """Close the connection cleanly (FIN) after `events` events: a genuine network drop."""
    return FaultPlan((CloseAfter(events),))


def reset_after(events: int) -> FaultPlan:
    """Abort the connection (RST) after `events` events: a genuine network error."""
    return FaultPlan((ResetAfter(events),))


def http_error(
    status: int, *, retry_after: float | None = None, retry_after_ms: int | None = None
) -> FaultPlan:
    """Answer with an error status in the provider's own error format."""
    return FaultPlan((HttpError(status, retry_after, retry_after_ms),))


def stream_error(after: int) -> FaultPlan:
    """Send the provider's in-stream error event after `after` events."""
    return FaultPlan((StreamError(after),))


def quota(unit: str = "requests", *, reset: float, limit: int = 60) -> FaultPlan:
    """429: the per-minute quota of `unit` (requests, tokens) is used up for `reset` seconds,
    with the providers' rate-limit headers and `retry-after`."""
    return FaultPlan((Quota(unit, limit, reset),))


CONTEXT_STYLES = {
    ProviderKind.OPENAI_RESPONSES: "openai-responses",
    ProviderKind.ANTHROPIC: "anthropic",
    ProviderKind.GEMINI: "gemini",
}


def context_window(kind: str, *, window: int = 128_000) -> FaultPlan:
    """400: the request is too long for a `window`-token context, in `kind`'s own words."""
    style = CONTEXT_STYLES.get(ProviderKind.parse(kind), "openai")
    return FaultPlan((ContextWindow(window, style),))


def malformed(after: int) -> FaultPlan:
    """Send one event no client can parse after `after` events, then carry on."""
    return FaultPlan((Malformed(after),))


def drip(bytes_per_second: float) -> FaultPlan:
    """Trickle the body at `bytes_per_second`."""
    return FaultPlan((Drip(bytes_per_second),))


def says(
    *, tokens: int | None = None, text: str | None = None, tools: tuple[ToolCall, ...] = ()
) -> FaultPlan:
    """What the model says: a number of tokens, an exact text, and tool calls."""
    spec = ContentSpec(tool_calls=tools)
    if tokens is not None:
        spec = ContentSpec(tokens=tokens, text=text, tool_calls=tools)
    elif text is not None:
        spec = ContentSpec(text=text, tool_calls=tools)
    return FaultPlan(content=spec)


def main_call(prompt: Prompt) -> Match:
    """The turn's own model calls for `prompt` (each step of its tool loop, each retry)."""
    return Match(role=Role.MAIN, prompt=prompt.tag)


def side_of(prompt: Prompt) -> Match:
    """Side traffic carrying `prompt` anywhere: titles, summaries, memory, compaction."""
    return Match(role=Role.SIDE, body_contains=prompt.tag)


def target_of(on: Prompt | Match | None) -> Match | None:
    """`on=` as a Match (a Prompt means its main call)."""
    return main_call(on) if isinstance(on, Prompt) else on
