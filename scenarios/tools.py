"""Related class: cancel during tool execution leaves the tool's subprocess running."""

from __future__ import annotations

from harness.context import ScenarioContext
from harness.faults import says
from harness.scenario import scenario
from harness.steps import no_live_tools, shell_tool, state_of, tool_started, wait_limit
from harness.target import Capability


@scenario(
    id="tools.cancel-during-tool",
    title="Esc while a tool runs kills every process the tool started",
    incident="related",
    tags=("tools", "subprocess"),
    requires=frozenset({Capability.CANCEL, Capability.TOOLS}),
    catches=("tool-survives-cancel",),
)
async def tools_cancel_during_tool(ctx: ScenarioContext) -> None:
    """The turn stops, but the tool's subprocess keeps running, orphaned."""
    slow = ctx.prompt("Run the slow tool.")
    # The harness's `shell` tool; the command's processes carry the case's mark, so the
    # orphan check counts exactly them, never the agent's own workers.
    ctx.fault(says(tokens=0, tools=(shell_tool(ctx, "sleep 30"),)), on=slow, times=1)
    session = await ctx.new_session()
    before = await state_of(ctx, session)
    turn = await ctx.submit(session, slow)
    await tool_started(ctx, wait_limit(ctx))
    await ctx.cancel(session)
    out = await ctx.outcome(turn)
    ctx.checks.stop_reason(out, "cancelled")
    await no_live_tools(ctx, ctx.tempo(50))
    await ctx.checks.no_request_after(ctx.tempo(5))
    await ctx.checks.no_ghost_turn(session, before, out)
