"""Invariants the runner checks after every scenario, whatever the scenario asserted itself.

After the scenario: no response still in flight, no orphan tool process, no request after the
final cancel (unless a submit followed it). After `target.stop()`: no connection left open.
Background calls (purpose "memory") begun before the cancel may go on: they have their own
lifetime (INCIDENTS.md I1).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from fake_providers.ledger import Ledger, RequestRecord
from harness.checks import (
    BACKGROUND_PURPOSES,
    PURPOSE_HEADER,
    CheckFailed,
    ms,
    requests_story,
    wait_quietly,
)

if TYPE_CHECKING:
    from harness.scenario import ScenarioContext


async def end_of_scenario(ctx: ScenarioContext, grace: float) -> None:
    """Nothing in flight, no orphan process, no late request; each waits at most `grace`."""
    await nothing_in_flight(ctx, grace)
    await no_orphan_process(ctx, grace)
    await no_request_after_final_cancel(ctx, grace)


async def nothing_in_flight(ctx: ScenarioContext, grace: float) -> None:
    ledger = ctx.provider.ledger
    await wait_quietly(ledger, lambda led: all(r.outcome for r in led.requests()), grace)
    busy = [r for r in ledger.requests() if r.outcome is None]
    if busy:
        raise CheckFailed(
            f"expected no response still in flight at the provider {ms(grace)} after the "
            f"scenario ended; at {ctx.rel(time.monotonic_ns())}: {requests_story(busy, ctx.rel)}"
        )


async def no_orphan_process(ctx: ScenarioContext, grace: float) -> None:
    deadline = time.monotonic() + grace
    pids = ctx.target.live_pids()
    while pids and time.monotonic() < deadline:  # bounded poll: a process exit has no signal
        await anyio.sleep(ctx.tempo(0.5))
        pids = ctx.target.live_pids()
    if pids:
        raise CheckFailed(
            f"expected no tool subprocess left running {ms(grace)} after the scenario ended; "
            f"at {ctx.rel(time.monotonic_ns())} still running: pid "
            + ", ".join(str(p) for p in pids)
        )


async def no_request_after_final_cancel(ctx: ScenarioContext, window: float) -> None:
    """Watches until `window` after the final cancel (usually long past by the scenario's end)."""
    t = ctx.last_cancel_ns
    if t is None or any(s > t for s in ctx.submits):
        return

    def late(ledger: Ledger) -> list[RequestRecord] | None:
        began = {c.id: c.attempts[0].started_ns for c in ledger.logical_calls()}
        found = [
            r
            for r in ledger.requests_after(t)
            if not (r.header(PURPOSE_HEADER) in BACKGROUND_PURPOSES and began[r.call_id] <= t)
        ]
        return found or None

    remaining = (t + window * 1e9 - time.monotonic_ns()) / 1e9
    found = await wait_quietly(ctx.provider.ledger, late, remaining)
    if found:
        raise CheckFailed(
            f"expected no request to the provider after the final cancel at {ctx.rel(t)} "
            f"(no submit followed it); saw {requests_story(found, ctx.rel)}"
        )


async def after_stop(ctx: ScenarioContext, grace: float) -> None:
    """Every provider connection is closed once the agent stopped (waits up to `grace`)."""
    ledger = ctx.provider.ledger
    await wait_quietly(ledger, lambda led: not led.open_connections(), grace)
    left = ledger.open_connections()
    if left:
        stories = ", ".join(
            f"conn#{c.id} (opened at {ctx.rel(c.opened_ns)}, {len(c.requests)} request(s))"
            for c in left
        )
        raise CheckFailed(
            "expected every provider connection to be closed once the agent stopped; "
            f"at {ctx.rel(time.monotonic_ns())} still open: {stories}"
        )
