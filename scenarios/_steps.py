"""Small steps several scenarios share: faults that single out the main call, waits."""

from __future__ import annotations

import anyio

from harness.checks import CheckFailed
from harness.scenario import ScenarioContext
from harness.target import Submission, Transcript, TranscriptEntry

TURN = "header=x-agent-purpose:turn"


def ms(seconds: float) -> str:
    """A duration in the fault-spec vocabulary."""
    return f"{seconds * 1000:g}ms"


def pace(ctx: ScenarioContext, intervals: float = 1) -> str:
    return f"pace={ms(ctx.tempo(intervals))}"


async def stream_held(ctx: ScenarioContext, session: str, prompt: str, gate: str) -> Submission:
    """Submit, then wait until the provider holds the answer at `gate` (events flowing)."""
    submission = await ctx.submit(session, prompt)
    await ctx.gate(gate).wait_reached(timeout=max(2.0, ctx.tempo(100)))
    return submission


def connection_of(ctx: ScenarioContext, marker: str) -> int:
    """The provider connection whose request body carries `marker`."""
    for request in ctx.provider.ledger.requests():
        if marker.encode() in request.body:
            return request.connection_id
    raise CheckFailed(f"expected a request carrying {marker!r} at the provider; none arrived")


async def tool_started(ctx: ScenarioContext, timeout: float) -> list[int]:
    """Wait until the agent runs a tool subprocess (bounded poll of the target's pids)."""
    # A black-box target offers no event for "a process exists"; poll /proc, bounded.
    with anyio.move_on_after(timeout):
        while not (pids := ctx.target.live_pids()):  # noqa: ASYNC110
            await anyio.sleep(ctx.tempo(0.25))
        return pids
    raise CheckFailed(f"expected the agent to start the tool within {timeout:g} s; it did not")


async def no_live_tools(ctx: ScenarioContext, within: float) -> None:
    """The tool's process group is gone within `within` seconds of the cancel."""
    with anyio.move_on_after(within):
        while ctx.target.live_pids():  # noqa: ASYNC110 - process death has no event here
            await anyio.sleep(ctx.tempo(0.25))
        return
    pids = ctx.target.live_pids()
    raise CheckFailed(
        f"expected the tool subprocess to be killed within {within * 1000:g} ms of the cancel; "
        f"pids {pids} were still running"
    )


async def agent_backing_off(ctx: ScenarioContext, since_ns: int) -> None:
    """Wait until the agent is in its retry back-off after the failure the provider sent.

    A target that reports its own events (`wait_note`) says so exactly. For a black-box
    target the back-off is invisible; we settle for 2 tempo after the failure was fully
    served, which the scenarios' long back-offs (15 tempo) make safe.
    """
    wait_note = getattr(ctx.target, "wait_note", None)
    if wait_note is not None:
        if not await wait_note("model.retry", since_ns, max(2.0, ctx.tempo(100))):
            raise CheckFailed("expected the agent to schedule a retry after the 500; it did not")
        return
    await anyio.sleep(ctx.tempo(2))


def never_requested(ctx: ScenarioContext, marker: str) -> None:
    """No request carrying `marker` ever reached the provider (the model was not called)."""
    seen = [r for r in ctx.provider.ledger.requests() if marker.encode() in r.body]
    if seen:
        first = seen[0]
        raise CheckFailed(
            f"expected the prompt carrying {marker!r} never to reach the model; request "
            f"#{first.ordinal} carried it at {ctx.rel(first.started_ns)}"
        )


def turn_entries(transcript: Transcript, turn_id: str) -> list[TranscriptEntry]:
    return [e for e in transcript.entries if e.turn_id == turn_id]
