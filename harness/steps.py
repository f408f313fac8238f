"""Steps scenarios share, public for anyone writing a catalogue of their own.

Every wait here is bounded and event-driven (provider gates, the ledger, the agent's own
outcome); the few polls are of things that have no event (another process's lifetime), and
say so. A step that waits for the agent to reach a point also watches the turn: an agent that
crashes or ends the turn first is reported as exactly that, never as a gate timeout.
"""

from __future__ import annotations

import time

import anyio

from fake_providers import RequestRecord, ToolCall, WaitTimeout, tool_call
from fake_providers.content import default_text
from fake_providers.roles import Role
from fake_providers.wire import events_before_text
from harness.checks import CheckFailed, requests_story
from harness.context import NotApplicable, ScenarioContext
from harness.processes import marked_command, marked_processes
from harness.prompts import Prompt
from harness.target import (
    AgentBroke,
    Capability,
    LeavesEarly,
    Submission,
    Transcript,
    TranscriptEntry,
)
from harness.timing import ChildSampler, Indeterminate


def wait_limit(ctx: ScenarioContext) -> float:
    """How long a step waits for the agent to reach a point: 100 tempo, at least 2 s."""
    return max(2.0, ctx.tempo(100))


async def reach(ctx: ScenarioContext, submission: Submission, gate: str, count: int = 1) -> None:
    """Wait until `count` streams are held at `gate`, unless the turn ends first."""
    outcome: list[str] = []
    reasons: list[str] = []

    async def turn_ended() -> None:
        try:
            out = await ctx.target.wait_outcome(submission, wait_limit(ctx))
        except TimeoutError:
            return
        error = f" ({out.error})" if out.error else ""
        outcome.append(f"{out.stop_reason}{error}")
        reasons.append(out.stop_reason)
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(turn_ended)
        try:
            await ctx.gate(gate).wait_reached(count, timeout=wait_limit(ctx))
        except WaitTimeout as exc:
            seen = ctx.provider.ledger.requests()
            story = requests_story(seen, ctx.rel) if seen else "no request at all"
            raise WaitTimeout(
                f"{exc}; the provider saw {story} (a main call is one whose latest user "
                "message carries the prompt's tag; see docs/targets.md, 'Main and side calls')"
            ) from None
        tg.cancel_scope.cancel()
    if outcome:
        ctx.note(f"turn {submission.turn_id} ended {outcome[0]} before gate {gate!r}")
        seen = ctx.provider.ledger.requests()
        story = requests_story(seen, ctx.rel) if seen else "no request reached the provider"
        failure = (
            f"turn {submission.turn_id} ended {outcome[0]} before its model call was held at "
            f"gate {gate!r}: {story}"
        )
        deadline = ctx.settings.turn_timeout
        began = ctx.submitted_at.get(submission.turn_id)
        if reasons[0] == "timeout" and deadline and began is not None:
            # The scenario's own deadline overtook its set-up: starved, or just slow?
            now = time.monotonic_ns()
            ctx.stalls.judge_deadline(began, now, deadline, failure)
            # Not starved as far as the harness could measure; but an agent is only called
            # too slow on a machine that was not itself overloaded for half that deadline.
            overloaded = ChildSampler.overloaded(began, now)
            if overloaded >= deadline * 1e9 / 2:
                raise Indeterminate(
                    f"{failure}; the machine had tasks waiting for a CPU for "
                    f"{overloaded / 1e6:.0f} ms of it (Linux CPU pressure), half its "
                    f"{deadline * 1000:g} ms deadline or more: this run cannot judge it"
                )
            raise AgentBroke(
                f"{failure}; its own {deadline * 1000:g} ms deadline ran out before its model "
                "call was held: an agent this slow to call its model needs a larger --tempo"
            )
        raise AgentBroke(failure)


async def stream_held(
    ctx: ScenarioContext, session: str, prompt: Prompt | str, gate: str
) -> Submission:
    """Submit, then wait until the provider holds the answer at `gate` (events flowing)."""
    submission = await ctx.submit(session, prompt)
    await reach(ctx, submission, gate)
    return submission


def opening_events(ctx: ScenarioContext) -> int:
    """Events this case's wire format sends before its first text delta."""
    return events_before_text(ctx.kind)


async def consumed(
    ctx: ScenarioContext, submission: Submission, prompt: Prompt, text_events: int
) -> None:
    """Wait until the agent has read the opening events and `text_events` text deltas of the
    main call of `prompt` (default content), so a cancel now cannot ride in on an unread one.

    Seen at the front door where the target shows the turn's text (`shown`): the deltas'
    words have appeared, then 1 tempo more. Otherwise 5 tempo after they were written.
    """
    tag = prompt.tag
    events = opening_events(ctx) + text_events

    def written(ledger: object) -> RequestRecord | None:
        for r in ctx.provider.ledger.requests():
            if r.role is Role.MAIN and r.prompt == tag and r.events_sent >= events:
                return r
        return None

    await ctx.provider.ledger.wait_for(
        written, wait_limit(ctx), f"{events} events of the main call of [{tag}]"
    )
    shows = getattr(ctx.target, "shown", None)
    words = "".join(default_text(text_events))
    if not callable(shows) or not words:
        await ctx.settle(5, "the agent reads what was written")
        return
    # Some agents hold back a word until the next delta says where it ends: a prefix of the
    # written words, shown and unchanged for 10 tempo, proves the deltas were read too.
    last, since = "", anyio.current_time()
    with anyio.move_on_after(wait_limit(ctx)):
        while True:
            now = shows(submission)
            if words in now:
                ctx.note(f"the turn shows {words!r}")
                await ctx.settle(1, "the agent has shown what it read")
                return
            if now != last:
                last, since = now, anyio.current_time()
            held = now.strip()
            if held and words.startswith(held) and anyio.current_time() - since >= ctx.tempo(10):
                ctx.note(f"the turn shows {held!r} and holds back the rest of {words!r}")
                return
            await anyio.sleep(ctx.tempo(0.25))
    raise NotApplicable(
        f"turn {submission.turn_id} showed {shows(submission)[:60]!r} within "
        f"{wait_limit(ctx):g} s of being sent {words!r}: this case needs the streamed text on "
        "screen before the cancel"
    )


async def state_of(ctx: ScenarioContext, session: str) -> Transcript:
    """The session's persisted state, or an empty one on a target that cannot read it."""
    if ctx.has(Capability.TRANSCRIPT):
        return await ctx.transcript(session)
    return Transcript()


def main_requests(ctx: ScenarioContext, prompt: Prompt) -> list[RequestRecord]:
    """Every main call of `prompt` the provider saw, oldest first."""
    return [
        r for r in ctx.provider.ledger.requests() if r.role is Role.MAIN and r.prompt == prompt.tag
    ]


def connection_of(ctx: ScenarioContext, prompt: Prompt) -> int:
    """The provider connection of the latest main call of `prompt`."""
    found = main_requests(ctx, prompt)
    if not found:
        raise CheckFailed(f"expected a main call of [{prompt.tag}] at the provider; none arrived")
    return found[-1].connection_id


def never_requested(ctx: ScenarioContext, prompt: Prompt) -> None:
    """No request carrying `prompt` ever reached the provider (the model was not called)."""
    seen = [r for r in ctx.provider.ledger.requests() if prompt.tag.encode() in r.body]
    if seen:
        first = seen[0]
        raise CheckFailed(
            f"expected the prompt [{prompt.tag}] never to reach the model; request "
            f"#{first.ordinal} carried it at {ctx.rel(first.started_ns)}"
        )


def shell_tool(ctx: ScenarioContext, command: str) -> ToolCall:
    """A call of the harness's `shell` tool whose processes carry the case's mark."""
    return tool_call("shell", {"command": marked_command(ctx.case_tag, command)})


async def tool_started(ctx: ScenarioContext, timeout: float) -> list[int]:
    """Wait until a process of this case's tools runs (bounded poll: no event exists).

    A set-up wait: it grows by the stall measured meanwhile, and running out is the
    set-up's failure (`WaitTimeout`), which the runner calls indeterminate when the harness
    or the agent was starved through it."""

    async def running(seconds: float) -> list[int] | None:
        with anyio.move_on_after(seconds):
            while not (pids := marked_processes(ctx.case_tag)):  # noqa: ASYNC110
                await anyio.sleep(ctx.tempo(0.25))
            return pids
        return None

    pids = await ctx.stalls.watch(running, timeout)
    if not pids:
        raise WaitTimeout(f"expected the agent to start the tool within {timeout:g} s; it did not")
    ctx.note(f"tool process running: pid {', '.join(map(str, pids))}")
    return pids


async def no_live_tools(ctx: ScenarioContext, within: float) -> None:
    """Every process of this case's tools is gone within `within` seconds."""
    with anyio.move_on_after(within):
        while marked_processes(ctx.case_tag):  # noqa: ASYNC110 - process death has no event
            await anyio.sleep(ctx.tempo(0.25))
        return
    pids = marked_processes(ctx.case_tag)
    raise CheckFailed(
        f"expected the tool's processes to be gone within {within * 1000:g} ms of the cancel; "
        f"pids {pids} were still running"
    )


async def agent_backing_off(
    ctx: ScenarioContext, submission: Submission, prompt: Prompt, since_ns: int
) -> None:
    """Wait until the agent is in its retry back-off after the failure the provider sent.

    A target that reports its own events (`wait_note`) says so exactly. For a black-box
    target the back-off is invisible; we settle for 2 tempo after the failure was fully
    served, which the scenarios' long back-offs (15 tempo) make safe. An agent that ends the
    turn instead does not retry, and one that retries at once does not back off: either way
    the scenario's premise does not hold (not applicable).
    """
    wait_note = getattr(ctx.target, "wait_note", None)
    if wait_note is not None:
        if not await wait_note("model.retry", since_ns, wait_limit(ctx)):
            raise CheckFailed("expected the agent to schedule a retry after the 500; it did not")
        return

    def failed(ledger: object) -> bool:
        return any(
            r.status is not None and r.status >= 500 and r.outcome is not None
            for r in ctx.provider.ledger.requests_after(since_ns)
        )

    await ctx.provider.ledger.wait_for(failed, wait_limit(ctx), "the failing response served")
    ended: list[str] = []
    with anyio.move_on_after(ctx.tempo(2)):
        out = await ctx.target.wait_outcome(submission, ctx.tempo(2) + 1)
        ended.append(out.stop_reason)
    if ended:
        raise NotApplicable(
            f"the agent ended turn {submission.turn_id} {ended[0]} after a 500 instead of "
            "retrying it, so a cancel during its back-off cannot be staged"
        )
    if len(main_requests(ctx, prompt)) > 1:
        raise NotApplicable(
            "the agent retried the 500 at once, ignoring its retry-after, so there is no "
            "back-off for a cancel to land in"
        )


async def leave(ctx: ScenarioContext, submission: Submission) -> int:
    """The caller stops consuming the turn's stream (Capability.LEAVE_EARLY); returns when."""
    target = ctx.target
    if not callable(getattr(target, "leave", None)):
        raise TypeError(f"target {target.name} claims leave-early but has no leave()")
    t_ns = time.monotonic_ns()
    ctx.cancels.append(t_ns)  # the checks measure from it as from a cancel
    ctx.timeline.stamp(f"leave turn {submission.turn_id} (stop reading, no cancel)", t_ns)
    await _leave(target, submission)
    return t_ns


async def _leave(target: object, submission: Submission) -> None:
    leaver: LeavesEarly = target  # type: ignore[assignment]
    await leaver.leave(submission)


def turn_entries(transcript: Transcript, turn_id: str) -> list[TranscriptEntry]:
    return [e for e in transcript.entries if e.turn_id == turn_id]
