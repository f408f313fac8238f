"""Related class: cancelling one session must never touch another session's stream."""

from __future__ import annotations

from harness.checks import CheckFailed
from harness.scenario import ScenarioContext, scenario
from harness.target import Capability
from scenarios._steps import connection_of, stream_held


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
    ctx.fault("body-contains=alpha-session,hold-before=3,gate=alpha")
    ctx.fault("body-contains=beta-session,hold-before=3,gate=beta")
    alpha, beta = await ctx.new_session(), await ctx.new_session()
    first = await stream_held(ctx, alpha, "The alpha-session question.", "alpha")
    second = await stream_held(ctx, beta, "The beta-session question.", "beta")
    await ctx.cancel(alpha)
    await ctx.checks.connection_closed_within(
        ctx.tempo(2), connection_id=connection_of(ctx, "alpha-session")
    )
    ctx.checks.stop_reason(await ctx.outcome(first), "cancelled")
    beta_conn = ctx.provider.ledger.connection(connection_of(ctx, "beta-session"))
    if not beta_conn.open:
        closed_at = ctx.rel(beta_conn.closed_ns or 0)
        raise CheckFailed(
            f"expected the beta session's stream to keep running after alpha's cancel; its "
            f"connection was closed by the {beta_conn.closed_by} at {closed_at}"
        )
    await ctx.release("beta")
    ctx.checks.stop_reason(await ctx.outcome(second), "completed")
