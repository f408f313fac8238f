"""Related class: cancel during tool execution leaves the tool's subprocess running."""

from __future__ import annotations

from fake_providers import ContentSpec, FaultPlan, Match, tool_call
from harness.scenario import ScenarioContext, scenario
from harness.target import Capability
from scenarios._steps import no_live_tools, tool_started


@scenario(
    id="tools.cancel-during-tool",
    title="Esc while a tool runs kills the tool's whole process group",
    incident="related",
    tags=("tools", "subprocess"),
    requires=frozenset({Capability.CANCEL, Capability.TOOLS, Capability.TRANSCRIPT}),
    catches=("tool-survives-cancel",),
)
async def tools_cancel_during_tool(ctx: ScenarioContext) -> None:
    """The turn stops, but the tool's subprocess keeps running, orphaned."""
    slow_tool = ContentSpec(tool_calls=(tool_call("sleep", {"seconds": 30}),), tokens=0)
    ctx.provider.add_fault(FaultPlan(content=slow_tool), match=Match(nth=1))
    ctx.note("fault: the first model answer asks for the `sleep` tool (30 s)")
    session = await ctx.new_session()
    before = await ctx.transcript(session)
    turn = await ctx.submit(session, "Run the slow tool.")
    await tool_started(ctx, max(2.0, ctx.tempo(100)))
    await ctx.cancel(session)
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await no_live_tools(ctx, ctx.tempo(50))
    await ctx.checks.no_request_after(ctx.tempo(5))
    await ctx.checks.no_ghost_turn(session, before)
