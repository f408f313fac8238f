"""Related class: cancelling one session must never touch another session's stream."""

from __future__ import annotations

from harness.checks import CheckFailed
from harness.context import ScenarioContext
from harness.faults import hold
from harness.scenario import scenario
from harness.steps import connection_of, stream_held
from harness.target import Capability


@scenario(
    id="isolation.two-sessions",
    title="Esc in one session leaves another session's stream running",
    incident="related",
    tags=("isolation", "sessions"),
    requires=frozenset({Capability.CANCEL, Capability.SESSIONS}),
    catches=("cancel-all-sessions",),
)
async def isolation_two_sessions(ctx: ScenarioContext) -> None:
    """One global cancel token: Esc in one chat stops the other chat's answer too."""
    alpha_q, beta_q = ctx.prompt("The alpha question."), ctx.prompt("The beta question.")
    ctx.fault(hold(before=3, gate="alpha"), on=alpha_q, times=1)
    ctx.fault(hold(before=3, gate="beta"), on=beta_q, times=1)
    alpha, beta = await ctx.new_session(), await ctx.new_session()
    first = await stream_held(ctx, alpha, alpha_q, "alpha")
    second = await stream_held(ctx, beta, beta_q, "beta")
    await ctx.cancel(alpha)
    await ctx.checks.connection_closed_within(
        ctx.tempo(2), connection_id=connection_of(ctx, alpha_q)
    )
    ctx.checks.stop_reason(await ctx.outcome(first), "cancelled")
    beta_conn = ctx.provider.ledger.connection(connection_of(ctx, beta_q))
    if not beta_conn.open:
        closed_at = ctx.rel(beta_conn.closed_ns or 0)
        raise CheckFailed(
            f"expected the beta session's stream to keep running after alpha's cancel; its "
            f"connection was closed by the {beta_conn.closed_by} at {closed_at}"
        )
    await ctx.release("beta")
    ctx.checks.stop_reason(await ctx.outcome(second), "completed")
