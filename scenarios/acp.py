"""The Agent Client Protocol cancel contract (INCIDENTS.md, related classes).

After `session/cancel` the agent stops model requests and tools, flushes its
`session/update` notifications, and only then answers the pending `session/prompt` with
`stopReason: "cancelled"`; a pending permission request resolves as cancelled; nothing of
the turn arrives after the answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from harness.checks import CheckFailed
from harness.context import ScenarioContext
from harness.faults import hold, pace, says
from harness.scenario import scenario
from harness.steps import no_live_tools, shell_tool, state_of, stream_held, wait_limit
from harness.target import Capability, Submission

if TYPE_CHECKING:  # the acp package takes a second to import: only ACP targets pay for it
    from harness.targets.acp import PermissionRequest, UpdateRecord

ACP = frozenset({Capability.ACP, Capability.CANCEL})


@runtime_checkable
class AcpObserver(Protocol):
    """What these scenarios read beyond the Target protocol (harness.targets.acp.AcpTarget)."""

    def hold_permissions(self, hold: bool = True) -> None: ...
    async def wait_permission(self, timeout: float) -> PermissionRequest: ...
    def updates(self, submission: Submission) -> list[UpdateRecord]: ...
    def answer_ns(self, submission: Submission) -> int | None: ...
    async def watch_after_answer(
        self, submission: Submission, window: float
    ) -> list[UpdateRecord]: ...


def acp_target(ctx: ScenarioContext) -> AcpObserver:
    if not isinstance(ctx.target, AcpObserver):
        raise TypeError(
            f"ACP scenarios read ACP traffic; target {ctx.target.name} does not offer it "
            "(use harness.targets.acp.AcpTarget)"
        )
    return ctx.target


def _story(ctx: ScenarioContext, updates: list[UpdateRecord]) -> str:
    return ", ".join(
        f"{u.kind}{' ' + repr(u.text) if u.text else ''}{' ' + u.status if u.status else ''} "
        f"at {ctx.rel(u.t_ns)}"
        for u in updates[:5]
    )


async def nothing_after_answer(ctx: ScenarioContext, turn: Submission, window: float) -> None:
    """No content or tool-call update of `turn` arrives after its prompt answer."""
    target = acp_target(ctx)
    answered = target.answer_ns(turn)
    if answered is None:
        raise CheckFailed(f"expected an answer to the prompt of {turn.turn_id}; none came")
    late = await target.watch_after_answer(turn, window)
    if late:
        raise CheckFailed(
            f"expected no session/update of {turn.turn_id} after its prompt answer at "
            f"{ctx.rel(answered)} (watched {window * 1000:g} ms); saw {len(late)}: "
            + _story(ctx, late)
        )


async def held_turn(ctx: ScenarioContext, prompt: str) -> tuple[str, Submission]:
    """A session whose turn streams until the provider holds it at gate `main`."""
    said = ctx.prompt(prompt)
    ctx.fault(pace(ctx.tempo(1)) + hold(before=3, gate="main"), on=said, times=1)
    session = await ctx.new_session()
    return session, await stream_held(ctx, session, said, "main")


@scenario(
    id="acp.cancel-stop-reason",
    title="session/cancel ends the prompt with stopReason cancelled and closes the stream",
    incident="related",
    tags=("acp", "esc"),
    requires=ACP,
    catches=("acp-wrong-stop-reason", "provider-ignores-cancel"),
)
async def acp_cancel_stop_reason(ctx: ScenarioContext) -> None:
    """The client cancels, but the agent reports a normal end or keeps the model writing."""
    session, turn = await held_turn(ctx, "Tell me a long story.")
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")


@scenario(
    id="acp.nothing-after-answer",
    title="No session/update of a cancelled turn arrives after the prompt's answer",
    incident="related",
    tags=("acp", "esc"),
    requires=ACP,
    catches=("acp-update-after-response",),
)
async def acp_nothing_after_answer(ctx: ScenarioContext) -> None:
    """A late chunk lands after the answer and the client paints it into the next turn."""
    session, turn = await held_turn(ctx, "Tell me a long story.")
    await ctx.cancel(session)
    await ctx.outcome(turn)
    await ctx.release("main")  # the provider goes on streaming as a real model would
    await nothing_after_answer(ctx, turn, ctx.tempo(10))


@scenario(
    id="acp.permission-cancelled",
    title="Cancel while a permission request is pending: cancelled, and the tool never runs",
    incident="related",
    tags=("acp", "tools", "permissions"),
    requires=ACP | {Capability.TOOLS, Capability.PERMISSIONS},
    catches=("acp-wrong-stop-reason", "acp-update-after-response"),
)
async def acp_permission_cancelled(ctx: ScenarioContext) -> None:
    """The user cancels at the permission prompt, and the command runs anyway."""
    ask = ctx.prompt("Run echo hi.")
    ctx.fault(says(tokens=0, tools=(shell_tool(ctx, "echo hi"),)), on=ask, times=1)
    target = acp_target(ctx)
    target.hold_permissions()
    session = await ctx.new_session()
    turn = await ctx.submit(session, ask)
    asked = await target.wait_permission(wait_limit(ctx))
    ctx.note(f"permission asked for {asked.title} ({asked.tool_call_id}); held")
    await ctx.cancel(session)
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    if asked.outcome != "cancelled":
        raise CheckFailed(f"expected the permission request to resolve cancelled; {asked.outcome}")
    ran = [
        u
        for u in target.updates(turn)
        if u.tool_call_id == asked.tool_call_id and u.status in ("in_progress", "completed")
    ]
    if ran:
        raise CheckFailed(
            f"expected the tool {asked.tool_call_id} never to run after the cancel; saw "
            + _story(ctx, ran)
        )
    await no_live_tools(ctx, ctx.tempo(5))
    await ctx.checks.no_request_after(ctx.tempo(5))
    await nothing_after_answer(ctx, turn, ctx.tempo(5))


@scenario(
    id="acp.load-no-ghost-turn",
    title="session/load after a cancelled turn replays no content of that turn",
    incident="related",
    tags=("acp", "esc", "state"),
    requires=ACP | {Capability.TRANSCRIPT},
    catches=("acp-update-after-response",),
)
async def acp_load_no_ghost_turn(ctx: ScenarioContext) -> None:
    """Reopening the conversation shows half an answer the user cancelled."""
    story = ctx.prompt("Tell me a long story.")
    ctx.fault(pace(ctx.tempo(1)) + hold(before=3, gate="main"), on=story, times=1)
    session = await ctx.new_session()
    before = await state_of(ctx, session)
    turn = await stream_held(ctx, session, story, "main")
    await ctx.cancel(session)
    out = await ctx.outcome(turn)
    # The client's view of the conversation: the replay, plus anything of the turn that
    # reached it after the answer (a client renders both the same way).
    await ctx.checks.no_ghost_turn(session, before, out, release=("main",))
    await nothing_after_answer(ctx, turn, ctx.tempo(1))
    await ctx.checks.next_turn_completes(session)
