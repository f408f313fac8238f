"""Invariants the runner checks after every scenario, whatever the scenario asserted itself.

After the scenario: no main call still in flight; no process the case's tools started left
running (only on targets that run the harness's tools); no main call after the final cancel
(unless a submit followed it). After `target.stop()`: no connection left open. Side calls
(titles, memory, summaries) have their own lifetime: one that outlives the scenario, or
starts after the final cancel, is a finding (a warning by default), not the turn's failure.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from fake_providers.ledger import Ledger, RequestRecord
from fake_providers.roles import Role
from harness.checks import CheckFailed, cancel_race, ms, requests_story, wait_quietly
from harness.processes import marked_processes
from harness.target import Capability
from harness.timing import EXTENSION_CAP, Indeterminate

if TYPE_CHECKING:
    from harness.context import ScenarioContext


async def end_of_scenario(ctx: ScenarioContext, grace: float) -> None:
    """Nothing in flight, no orphan process, no late request; each waits at most `grace`."""
    await nothing_in_flight(ctx, grace)
    await no_orphan_process(ctx, grace)
    await no_request_after_final_cancel(ctx, grace)


async def nothing_in_flight(ctx: ScenarioContext, grace: float) -> None:
    ledger = ctx.provider.ledger

    def busy(led: Ledger, role: Role) -> list[RequestRecord]:
        return [r for r in led.requests() if r.outcome is None and r.role is role]

    # The grace grows by the stall measured meanwhile, as every watch window does.
    await ctx.stalls.watch(
        lambda s: wait_quietly(ledger, lambda led: not busy(led, Role.MAIN) or None, s), grace
    )
    left = busy(ledger, Role.MAIN)
    if left:
        raise CheckFailed(
            f"expected no main call still in flight at the provider {ms(grace)} after the "
            f"scenario ended; at {ctx.rel(time.monotonic_ns())}: {requests_story(left, ctx.rel)}"
        )
    side = busy(ledger, Role.SIDE)
    if side and ctx.last_cancel_ns is not None:
        ctx.warn(
            f"side traffic still in flight when the scenario ended: {requests_story(side, ctx.rel)}"
        )


async def no_orphan_process(ctx: ScenarioContext, grace: float) -> None:
    """No process started by this case's tools is alive (harness.processes)."""
    if not ctx.has(Capability.TOOLS):
        return
    began = time.monotonic_ns()
    pids = marked_processes(ctx.case_tag)

    def within() -> bool:  # the grace, grown by the stall measured since (capped)
        now = time.monotonic_ns()
        extra = min(EXTENSION_CAP * 1e9, ctx.stalls.stalled_ns(began, now))
        return now < began + grace * 1e9 + extra

    while pids and within():  # bounded poll: a process exit has no signal
        await anyio.sleep(ctx.tempo(0.5))
        pids = marked_processes(ctx.case_tag)
    if pids:
        raise CheckFailed(
            f"expected no process started by this case's tools left running {ms(grace)} after "
            f"the scenario ended; at {ctx.rel(time.monotonic_ns())} still running: pid "
            + ", ".join(str(p) for p in pids)
        )


async def no_request_after_final_cancel(ctx: ScenarioContext, window: float) -> None:
    """Watches until `window` after the final cancel (usually long past by the scenario's end)."""
    t = ctx.last_cancel_ns
    if t is None or any(s > t for s in ctx.submits):
        return

    def late(ledger: Ledger) -> list[RequestRecord] | None:
        found = [r for r in ledger.requests_after(t) if r.role is Role.MAIN]
        return found or None

    remaining = (t + window * 1e9 - time.monotonic_ns()) / 1e9
    found = await wait_quietly(ctx.provider.ledger, late, remaining)
    if found:
        failure = (
            f"expected no model call to the provider after the final cancel at {ctx.rel(t)} "
            f"(no submit followed it); saw {requests_story(found, ctx.rel)}"
        )
        race = await cancel_race(ctx, found, t)
        if race is None:
            raise CheckFailed(failure)
        if not race.excused:
            raise Indeterminate(f"{failure}; but {race.reason}")
        ctx.timeline.stamp(race.reason)
    side = [r for r in ctx.provider.ledger.requests_after(t) if r.role is Role.SIDE]
    if side:
        ctx.warn(f"side traffic began after the final cancel: {requests_story(side, ctx.rel)}")


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
