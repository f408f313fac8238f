"""Verdicts that hold under load: the harness measures its own stalls and never blames the agent.

A blocking call on the runner's loop stands in for a loaded machine here: it is exactly what
starvation looks like from inside (the loop cannot run for a while), and it is deterministic.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from tiny_agent import TinyAgent, tiny_factory

from fake_providers.ledger import Outcome, RequestRecord
from harness.cases import Case, CaseResult, RunConfig, Status
from harness.checks import cancel_race
from harness.runner import Runner
from harness.scenario import Registry, ScenarioContext
from harness.steps import stream_held
from harness.target import AgentSettings, Capability
from harness.timing import (
    ChildSampler,
    Indeterminate,
    StallLog,
    StallMonitor,
    _children,
    _schedstat,
    heartbeat,
    sample_children,
    union_ns,
)

pytestmark = pytest.mark.anyio
MS = 1_000_000


def stall_the_loop(seconds: float) -> None:
    """Block the calling event loop: what starvation looks like from inside it."""
    time.sleep(seconds)


def test_union_counts_overlapping_stalls_once() -> None:
    assert union_ns([(0, 10), (5, 20), (30, 40), (35, 36)]) == 30
    assert union_ns([]) == 0


def test_a_late_close_is_excused_only_by_a_stall_that_explains_it() -> None:
    loop, provider = StallLog("the harness loop"), StallLog("the provider thread")
    loop.add(100 * MS, 150 * MS)  # the loop could not run for 50 ms after the cancel at 100
    provider.add(140 * MS, 160 * MS)  # overlapping stalls count once
    stalls = StallMonitor((loop, provider))
    assert stalls.stalled_ns(100 * MS, 200 * MS) == 60 * MS
    described = stalls.describe(100 * MS, 200 * MS)
    assert described == "the harness loop 50 ms, the provider thread 20 ms"
    # closed 90 ms after the cancel with a 40 ms bound: 60 ms of it the agent could not run
    assert stalls.excuses(100 * MS, 0.040, 190 * MS)
    with pytest.raises(Indeterminate, match="measured 60 ms of stall in that span"):
        stalls.judge_late(100 * MS, 0.040, [190 * MS], "expected a close within 40 ms")
    # 150 ms late is more than the stall explains: the caller's failure stands, and says so
    assert not stalls.excuses(100 * MS, 0.040, 300 * MS)
    assert stalls.judge_late(100 * MS, 0.040, [300 * MS], "expected a close within 40 ms") == (
        "expected a close within 40 ms (the harness measured 60 ms of stall in that span "
        "(the harness loop 50 ms, the provider thread 20 ms), which does not explain it)"
    )
    # still open (None) is never excused, whatever the load
    still_open = stalls.judge_late(100 * MS, 0.040, [190 * MS, None], "expected a close")
    assert still_open.startswith("expected a close (the harness measured")
    # no stall at all: late is late
    quiet = StallMonitor((StallLog("x"),))
    assert not quiet.excuses(100 * MS, 0.040, 150 * MS)
    assert quiet.judge_late(100 * MS, 0.040, [150 * MS], "expected a close") == "expected a close"


def test_sampled_run_queue_waits_count_pro_rata_and_add_to_the_loops() -> None:
    loop, agent = StallLog("the harness loop"), StallLog("the agent process")
    loop.add(100 * MS, 120 * MS)
    agent.add_spread(100 * MS, 200 * MS, 40 * MS)  # 40 ms of waiting somewhere in 100 ms
    stalls = StallMonitor((loop, agent))
    assert agent.spread_ns(150 * MS, 200 * MS) == 20 * MS  # half the gap: half the wait
    assert stalls.stalled_ns(100 * MS, 200 * MS) == 60 * MS  # another step of the chain
    assert stalls.stalled_ns(100 * MS, 110 * MS) == 10 * MS  # never more than the span
    assert stalls.describe(100 * MS, 200 * MS) == "the harness loop 20 ms, the agent process 40 ms"


def test_a_deadline_the_agent_counts_itself_counts_stalls_since_it_started() -> None:
    loop = StallLog("the harness loop")
    loop.add(10 * MS, 100 * MS)  # stalled between the submit (10) and the agent starting its clock
    stalls = StallMonitor((loop,))
    deadline = 170 * MS  # submit + 160 ms, as the scenario computes it
    assert not stalls.excuses(deadline, 0.080, 265 * MS)
    assert stalls.excuses(deadline, 0.080, 265 * MS, since_ns=10 * MS)


async def test_the_heartbeat_sees_a_blocked_loop_and_a_watch_window_grows_by_it() -> None:
    log = StallLog("the harness loop")
    stalls = StallMonitor((log,))
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat, log)
        await anyio.sleep(0.01)
        before = time.monotonic_ns()
        stall_the_loop(0.05)
        await anyio.sleep(0.01)
        stalled = stalls.stalled_ns(before, time.monotonic_ns())
        assert stalled >= 40 * MS  # (more if the machine is loaded: that is stall too)

        calls: list[float] = []

        async def wait(seconds: float) -> bool | None:
            calls.append(seconds)
            if len(calls) == 1:
                stall_the_loop(0.03)  # the whole window passed while the loop could not run
                return None
            await anyio.sleep(seconds)
            return None

        began = time.monotonic()
        assert await stalls.watch(wait, 0.02) is None
        assert len(calls) >= 2 and calls[1] > 0  # the window was given its time after all
        assert time.monotonic() - began >= 0.045
        tg.cancel_scope.cancel()


def test_agent_processes_are_found_as_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        assert child.pid in _children()
    finally:
        child.kill()
        child.wait()


def test_a_child_seen_for_the_first_time_counts_its_wait_since_it_started() -> None:
    """An agent starved in its first milliseconds, before any sample saw it, was starved all
    the same: its first sample spreads its whole wait from its start, later ones the rise."""
    seen: dict[int, tuple[int, int]] = {}
    stats = {7: (30 * MS, 100 * MS)}  # pid 7 started at +100 ms and has waited 30 ms so far
    assert sample_children(seen, {7}, 150 * MS, stats.get) == [(100 * MS, 150 * MS, 30 * MS)]
    stats[7] = (42 * MS, 100 * MS)
    assert sample_children(seen, {7}, 160 * MS, stats.get) == [(150 * MS, 160 * MS, 12 * MS)]
    assert sample_children(seen, set(), 170 * MS, stats.get) == [] and not seen


def test_a_judgment_samples_the_agent_processes_again_before_it_measures() -> None:
    """The sampler thread lives in the loaded harness process too: when it was starved, the
    agent's latest run-queue wait is read at the moment of judging, not after it."""
    log = StallLog("the agent process")
    pending = [(0, 100 * MS, 60 * MS)]  # waited, but no sample has recorded it yet

    def sample_now() -> None:
        while pending:
            log.add_spread(*pending.pop())

    log.refresh = sample_now
    assert StallMonitor((log,)).stalled_ns(0, 100 * MS) == 60 * MS


def test_a_real_childs_start_is_read_on_the_monotonic_clock() -> None:
    before = time.monotonic_ns()
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        found = _schedstat(child.pid)
        assert found is not None and found[1] is not None
        # start times are in clock ticks (10 ms at 100 Hz): allow one tick each side
        assert before - 20 * MS <= found[1] <= time.monotonic_ns() + 20 * MS
    finally:
        child.kill()
        child.wait()


# --------------------------------------------------------------------- through the runner


def stalling_registry(stall_on: set[int], attempts: list[int]) -> Registry:
    """An Esc scenario whose harness loop is blocked right after the cancel, on some attempts."""
    registry = Registry()

    @registry.scenario(
        id="esc.stalled",
        title="Esc while the machine is loaded",
        incident="I1",
        providers=("openai-chat",),
        requires={Capability.CANCEL},
    )
    async def esc_stalled(ctx: ScenarioContext) -> None:
        """The harness is starved right after the cancel; the agent could not have closed."""
        attempts.append(len(attempts) + 1)
        ctx.fault("stream=true,pace=5ms,tokens=400,hold-before=4,gate=main")
        session = await ctx.new_session()
        await ctx.submit(session, "Tell me a long story.")
        await ctx.gate("main").wait_reached()
        await ctx.cancel(session)
        if len(attempts) in stall_on:
            stall_the_loop(0.12)  # the harness's (and the agent's) loop
        await ctx.checks.connection_closed_within(ctx.tempo(2))

    return registry


async def run_stalled(stall_on: set[int], reruns: int = 2, **agent: object) -> CaseResult:
    attempts: list[int] = []
    registry = stalling_registry(stall_on, attempts)
    runner = Runner(
        RunConfig(seed=5, target="tiny", timeout=5.0, reruns=reruns),
        lambda: TinyAgent(**agent),  # type: ignore[arg-type]
    )
    result = await runner.run_case(Case(registry.get("esc.stalled"), "openai-chat"))
    assert len(result.attempts) == len(attempts)
    return result


async def test_a_close_late_only_because_the_harness_stalled_is_rerun_not_failed() -> None:
    result = await run_stalled({1}, reruns=4)
    assert_rerun_until_judged(result, Status.PASSED)
    assert result.history().startswith("after ") and result.history().endswith(" indeterminate")
    first = result.attempts[0].message
    assert first.startswith("expected the client to close the provider connection within 40 ms")
    assert "but the harness measured" in first and "the harness loop" in first


async def test_a_case_stalled_in_every_run_stays_indeterminate_never_passed() -> None:
    result = await run_stalled({1, 2, 3}, reruns=2)
    assert result.status is Status.INDETERMINATE
    assert [a.status for a in result.attempts] == [Status.INDETERMINATE] * 3
    assert "this run cannot judge it" in result.message


async def test_a_leak_is_never_excused_by_a_stall() -> None:
    result = await run_stalled({1, 2, 3}, ignore_cancel=True)
    assert result.status is Status.FAILED
    assert len(result.attempts) == 1
    assert "was still open" in result.message or "ended complete" in result.message


async def test_a_slow_agent_with_no_stall_fails() -> None:
    result = await run_stalled(set(), close_delay=0.15)
    assert result.status is Status.FAILED and len(result.attempts) == 1
    assert "only at +" in result.message and "cannot judge" not in result.message


async def test_a_rerun_runs_alone_once_the_other_cases_are_done() -> None:
    attempts: list[int] = []
    registry = stalling_registry({1}, attempts)
    spans: dict[str, list[tuple[int, int]]] = {"esc.stalled": [], "other": []}

    @registry.scenario(id="other", title="t", incident="I1", providers=("openai-chat",))
    async def other(ctx: ScenarioContext) -> None:
        """A case running beside the stalled one."""
        began = time.monotonic_ns()
        await ctx.checks.no_request_after(ctx.tempo(10), after_ns=began)
        spans["other"].append((began, time.monotonic_ns()))

    original = registry.get("esc.stalled").fn

    async def timed(ctx: ScenarioContext) -> None:
        began = time.monotonic_ns()
        try:
            await original(ctx)
        finally:
            spans["esc.stalled"].append((began, time.monotonic_ns()))

    registry.add(replace(registry.get("esc.stalled"), fn=timed))
    config = RunConfig(seed=5, target="tiny", timeout=5.0, jobs=2, reruns=4)
    run = await Runner(config, TinyAgent).run(
        [Case(registry.get(i), "openai-chat") for i in ("esc.stalled", "other")]
    )
    stalled, beside = run.results
    assert_rerun_until_judged(stalled, Status.PASSED)
    assert beside.status is Status.PASSED
    (first, rerun, *_), ((other_began, other_ended),) = spans["esc.stalled"], spans["other"]
    assert other_began < first[1]  # the first attempt did run beside the other case
    assert rerun[0] >= other_ended  # the re-run waited until it could run alone


async def test_a_set_up_wait_that_ran_out_while_the_harness_stalled_is_rerun() -> None:
    registry = Registry()
    attempts: list[int] = []

    @registry.scenario(id="gate.never", title="t", incident="I1", providers=("openai-chat",))
    async def gate_never(ctx: ScenarioContext) -> None:
        """The stream the scenario waits for never reaches its gate."""
        attempts.append(1)
        await ctx.new_session()
        if len(attempts) == 1:
            stall_the_loop(0.15)  # 7.5 tempo: the agent's own timers could have raced
        await ctx.gate("never").wait_reached(timeout=0.3)

    runner = Runner(RunConfig(seed=5, target="tiny", timeout=5.0, reruns=4), TinyAgent)
    result = await runner.run_case(Case(registry.get("gate.never"), "openai-chat"))
    first = result.attempts[0]
    assert first.message.startswith("gave up waiting: timed out after 0.3s waiting for 1 stream")
    assert "but the harness measured" in first.message
    # Re-run with no stall, the wait runs out all the same: that is a failure.
    assert_rerun_until_judged(result, Status.FAILED)
    assert result.message == (
        "gave up waiting: timed out after 0.3s waiting for 1 stream(s) at gate 'never'"
    )


def starve(ctx: ScenarioContext, seconds: float) -> None:
    """Record, from now, `seconds` in which the agent process could not run (as if starved)."""
    starved = StallLog("the agent process")
    now = time.monotonic_ns()
    starved.add(now, now + int(seconds * 1e9))
    ctx.stalls = StallMonitor((*ctx.stalls.logs, starved))


def assert_rerun_until_judged(result: CaseResult, final: Status) -> None:
    """Indeterminate first (the stall under test), then re-runs until one could judge.

    More than one re-run happens only if the machine running the test is itself loaded.
    """
    statuses = [a.status for a in result.attempts]
    assert statuses[0] is Status.INDETERMINATE
    assert statuses[-1] is final and result.status is final
    assert set(statuses[1:-1]) <= {Status.INDETERMINATE}


async def test_a_next_turn_that_ran_out_of_its_deadline_while_stalled_is_rerun() -> None:
    registry = Registry()
    attempts: list[int] = []

    @registry.scenario(
        id="timeout.next",
        title="t",
        incident="I2",
        providers=("openai-chat",),
        requires={Capability.TIMEOUT, Capability.TRANSCRIPT},
        settings=lambda tempo: AgentSettings(turn_timeout=0.1),
    )
    async def next_turn(ctx: ScenarioContext) -> None:
        """The next turn must complete within its 100 ms deadline; it is held past it."""
        attempts.append(1)
        ctx.fault("stream=true,hold-before=3,gate=never")
        session = await ctx.new_session()
        if len(attempts) == 1:  # as if the machine starved the agent all through that turn
            starve(ctx, 10.0)
        await ctx.checks.next_turn_completes(session)

    runner = Runner(RunConfig(seed=5, target="tiny", timeout=5.0, reruns=4), TinyAgent)
    result = await runner.run_case(Case(registry.get("timeout.next"), "openai-chat"))
    assert_rerun_until_judged(result, Status.FAILED)  # held past its deadline: a real timeout
    first = result.attempts[0].message
    assert "it ended 'timeout'" in first
    assert "half its 100 ms deadline or more: this run cannot judge it" in first
    assert "it ended 'timeout'" in result.message and "cannot judge" not in result.message


async def test_a_cancel_that_went_out_after_the_turns_deadline_is_rerun_not_failed() -> None:
    registry = Registry()
    attempts: list[int] = []

    @registry.scenario(
        id="timeout.race",
        title="t",
        incident="I2",
        providers=("openai-chat",),
        requires={Capability.TIMEOUT, Capability.CANCEL},
        settings=lambda tempo: AgentSettings(turn_timeout=0.1),
    )
    async def race(ctx: ScenarioContext) -> None:
        """A turn cancelled well within its 100 ms deadline must end cancelled."""
        attempts.append(1)
        ctx.fault("stream=true,hold-before=3,gate=main")
        session = await ctx.new_session()
        turn = await ctx.submit(session, "hi")
        await ctx.gate("main").wait_reached()
        if len(attempts) == 1:  # as if the harness were starved until the deadline had passed
            timed_out = await ctx.outcome(turn)
            await ctx.cancel(session)
        else:
            await ctx.cancel(session)
            timed_out = await ctx.outcome(turn)
        ctx.checks.stop_reason(timed_out, "cancelled")

    runner = Runner(RunConfig(seed=5, target="tiny", timeout=5.0, reruns=4), TinyAgent)
    result = await runner.run_case(Case(registry.get("timeout.race"), "openai-chat"))
    assert_rerun_until_judged(result, Status.PASSED)
    first = result.attempts[0].message
    assert first.startswith("expected turn t1 to end 'cancelled'; it ended 'timeout'")
    assert "past the turn's 100 ms deadline" in first and "could not stage the cancel" in first


def deadline_overtakes_set_up(*, starved_first: bool) -> Case:
    """The model call never reaches its gate before the turn's 100 ms deadline (starved, on
    its first run only, if asked: as if the machine starved the agent through the set-up)."""
    registry = Registry()
    attempts: list[int] = []

    @registry.scenario(
        id="timeout.setup",
        title="t",
        incident="I2",
        providers=("openai-chat",),
        requires={Capability.TIMEOUT, Capability.CANCEL},
        settings=lambda tempo: AgentSettings(turn_timeout=0.1),
    )
    async def setup(ctx: ScenarioContext) -> None:
        """The model call never reaches its gate before the turn's 100 ms deadline."""
        attempts.append(1)
        ctx.fault("stream=true,hang-before-headers")
        session = await ctx.new_session()
        if starved_first and len(attempts) == 1:
            starve(ctx, 10.0)
        await stream_held(ctx, session, "hi", "main")

    return Case(registry.get("timeout.setup"), "openai-chat")


async def test_a_deadline_that_overtakes_the_set_up_is_rerun_if_starved_else_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The machine itself idle (the next test covers an overloaded one), whatever the
    # machine running this test is doing.
    monkeypatch.setattr(ChildSampler, "overloaded", classmethod(lambda cls, t0, t1: 0))
    runner = Runner(RunConfig(seed=5, target="tiny", timeout=5.0, reruns=4), TinyAgent)
    result = await runner.run_case(deadline_overtakes_set_up(starved_first=True))
    assert_rerun_until_judged(result, Status.ERROR)  # not starved: the agent is too slow
    assert "this run cannot judge it" in result.attempts[0].message
    assert result.message.endswith("needs a larger --tempo")


async def test_an_agent_is_not_called_too_slow_while_the_machine_was_overloaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No stall of the harness or the agent measured, but the kernel says tasks waited for
    a CPU all through the deadline: the set-up is indeterminate, not the agent's error."""
    monkeypatch.setattr(ChildSampler, "overloaded", classmethod(lambda cls, t0, t1: t1 - t0))
    runner = Runner(RunConfig(seed=5, target="tiny", timeout=5.0, reruns=1), TinyAgent)
    result = await runner.run_case(deadline_overtakes_set_up(starved_first=False))
    # (The same agent on an idle machine is an error: the test above. On a machine already
    # loaded while this test runs, the measured stall may say it first.)
    assert result.status is Status.INDETERMINATE, result.message
    assert "this run cannot judge it" in result.message


@pytest.mark.parametrize("starved", [True, False])
async def test_the_wait_for_a_turns_end_grows_by_the_stall_measured(starved: bool) -> None:
    registry = Registry()

    @registry.scenario(id="slow.end", title="t", incident="I1", providers=("openai-chat",))
    async def slow_end(ctx: ScenarioContext) -> None:
        """The turn streams for 2 s; the harness waits 0.1 s for its end (plus stalls)."""
        ctx.fault("stream=true,tokens=20,pace=100ms")
        session = await ctx.new_session()
        if starved:  # as if the agent could not run for the next 3 s
            starve(ctx, 3.0)
        turn = await ctx.submit(session, "hi")
        ctx.checks.stop_reason(await ctx.outcome(turn, timeout=0.1), "completed")

    runner = Runner(RunConfig(seed=5, target="tiny", timeout=5.0), TinyAgent)
    result = await runner.run_case(Case(registry.get("slow.end"), "openai-chat"))
    if starved:
        assert result.status is Status.PASSED, result.message
    else:
        assert result.status is Status.FAILED
        assert result.message.startswith("expected turn t1 to end within 0.1 s of +")


def cancel_then_watch(*, starved_first: bool) -> Case:
    """Esc on a held stream, then no request may follow (starved, on its first run only, if
    asked: as if the agent could not run from before the cancel on)."""
    registry = Registry()
    attempts: list[int] = []

    @registry.scenario(id="esc.then-nothing", title="t", incident="I5", providers=("openai-chat",))
    async def then_nothing(ctx: ScenarioContext) -> None:
        """After Esc, the agent must send nothing."""
        attempts.append(1)
        ctx.fault("stream=true,hold-before=3,gate=main")
        session = await ctx.new_session()
        await stream_held(ctx, session, "hi", "main")
        if starved_first and len(attempts) == 1:
            starve(ctx, 10.0)
        await ctx.cancel(session)
        await ctx.checks.no_request_after()

    return Case(registry.get("esc.then-nothing"), "openai-chat")


@pytest.mark.parametrize("starved", [True, False])
async def test_a_new_call_after_the_cancel_was_answered_is_never_excused(starved: bool) -> None:
    """Sent 50 ms after the agent answered the cancel, a call of its own: a failure, starved
    or not (only a retry of an attempt that failed before the cancel can race it)."""
    runner = Runner(
        RunConfig(seed=5, target="tiny", timeout=5.0, reruns=4),
        tiny_factory(resend_after_cancel=True, resend_delay=0.05),
    )
    result = await runner.run_case(cancel_then_watch(starved_first=starved))
    assert [a.status for a in result.attempts] == [Status.FAILED]
    assert result.message.startswith("expected no request to the provider in the")


@pytest.mark.parametrize("starved", [True, False])
async def test_a_retry_of_the_agents_own_forced_close_is_never_excused(starved: bool) -> None:
    """The agent closes the stream for the cancel, takes the close for a network error and
    retries before it answers: the retry exists because of the cancel, starved or not."""
    runner = Runner(
        RunConfig(seed=5, target="tiny", timeout=5.0, reruns=4),
        tiny_factory(retry_before_ack=True),
    )
    result = await runner.run_case(cancel_then_watch(starved_first=starved))
    assert [a.status for a in result.attempts] == [Status.FAILED], result.attempts[0].message
    assert "(call 1, retry 1, main [" in result.message


async def test_a_new_call_the_agent_began_and_closed_before_answering_the_cancel_passes() -> None:
    """The cancel lands as the session's next turn starts: the agent closes that call too,
    then answers. It left before the agent read the cancel; no stall is needed to see it."""
    runner = Runner(
        RunConfig(seed=5, target="tiny", timeout=5.0, reruns=4), tiny_factory(raced_call=True)
    )
    result = await runner.run_case(cancel_then_watch(starved_first=False))
    # (A machine loaded enough to delay the provider's sight of the close past the bound
    # makes a run indeterminate, never failed.)
    assert result.status is Status.PASSED, result.message
    assert {a.status for a in result.attempts[:-1]} <= {Status.INDETERMINATE}
    assert "began before the agent answered the cancel" in result.timeline
    assert "(a new call, which the agent closed within 40 ms of the cancel)" in result.timeline

    # The excuse covers the raced call only: an agent that ignores the cancel still fails.
    left_open = Runner(
        RunConfig(seed=5, target="tiny", timeout=5.0, reruns=4),
        tiny_factory(raced_call=True, ignore_cancel=True),
    )
    result = await left_open.run_case(cancel_then_watch(starved_first=False))
    assert result.status is Status.FAILED


class _Ledger:
    def __init__(self, requests: list[RequestRecord]) -> None:
        self._requests = requests

    def requests(self) -> list[RequestRecord]:
        return self._requests


def _request(ordinal: int, started: int, **fields: Any) -> RequestRecord:
    return RequestRecord(
        ordinal, 1, "POST", "/v1/chat/completions", "", (), "", 0, started, **fields
    )


def _race_context(requests: list[RequestRecord], stall: tuple[int, int] | None) -> Any:
    log = StallLog("the agent process")
    if stall is not None:
        log.add(*stall)
    return SimpleNamespace(
        cancel_answers=[400 * MS],
        submits=[0],
        cancels=[100 * MS],
        stalls=StallMonitor((log,)),
        provider=SimpleNamespace(ledger=_Ledger(requests)),
        rel=lambda t: f"+{t / 1e6:.1f}ms",
    )


FAILED_BEFORE = _request(1, 10 * MS, call_id=1, finished_ns=20 * MS, outcome=Outcome.COMPLETE)
CLOSED_AFTER = _request(1, 10 * MS, call_id=1, finished_ns=150 * MS, outcome=Outcome.CLIENT_CLOSED)


@pytest.mark.parametrize(
    ("earlier", "retry_at", "stall", "verdict"),
    [
        # a back-off that expired as the starved agent read the cancel: cannot be judged
        (FAILED_BEFORE, 390 * MS, (100 * MS, 380 * MS), "indeterminate"),
        # the same 2 ms after the answer: two threads' stamps, within their tolerance
        (FAILED_BEFORE, 402 * MS, (100 * MS, 380 * MS), "indeterminate"),
        # no stall measured: the agent had the time to read the cancel first
        (FAILED_BEFORE, 390 * MS, None, "failed"),
        # well after the answer, with no stall in between: never excused
        (FAILED_BEFORE, 460 * MS, (100 * MS, 380 * MS), "failed"),
        # 30 ms after the answer, the agent starved all through those 30 ms: one wake-up
        (FAILED_BEFORE, 430 * MS, (100 * MS, 440 * MS), "indeterminate"),
        # a retry of the attempt the agent itself closed after the cancel: never excused
        (CLOSED_AFTER, 390 * MS, (100 * MS, 380 * MS), "failed"),
    ],
)
async def test_a_retry_after_a_cancel_is_excused_only_as_a_back_off_racing_a_starved_agent(
    earlier: RequestRecord, retry_at: int, stall: tuple[int, int] | None, verdict: str
) -> None:
    retry = _request(2, retry_at, call_id=1, attempt=1)
    race = await cancel_race(_race_context([earlier, retry], stall), [retry], 100 * MS)
    judged = "failed" if race is None else ("passed" if race.excused else "indeterminate")
    assert judged == verdict, race


async def test_a_deadline_overtaken_by_a_stall_before_the_stream_began_is_rerun() -> None:
    registry = Registry()
    attempts: list[int] = []

    @registry.scenario(id="deadline.anchor", title="t", incident="I2", providers=("openai-chat",))
    async def anchored(ctx: ScenarioContext) -> None:
        """T is computed from the submit; on a starved machine the stream began after it."""
        attempts.append(1)
        ctx.fault("stream=true,hold-before=3,gate=main")
        session = await ctx.new_session()
        await ctx.submit(session, "hi")
        deadline = ctx.submits[-1] + 150 * MS
        if len(attempts) == 1:
            stall_the_loop(0.3)  # the agent (on this loop) cannot even send its request
        await ctx.gate("main").wait_reached()
        await ctx.checks.connection_closed_within(0.05, after_ns=deadline)

    runner = Runner(RunConfig(seed=5, target="tiny", timeout=5.0, reruns=4), TinyAgent)
    result = await runner.run_case(Case(registry.get("deadline.anchor"), "openai-chat"))
    assert_rerun_until_judged(result, Status.FAILED)  # then: in flight at T, and never closed
    assert "no main call was in flight at the provider then" in result.attempts[0].message
    assert "this run cannot judge it" in result.attempts[0].message
    assert "was still open" in result.message


@pytest.mark.parametrize("starved", [True, False])
async def test_the_wait_for_the_target_to_stop_grows_by_the_stall_measured(starved: bool) -> None:
    """0.2 s allowed for the stop: an agent 0.3 s late while starved is not stuck; one that
    would take 30 s is abandoned once the limit and the most a stall may add (5 s) are spent,
    however loaded the machine running this test."""
    registry = Registry()

    @registry.scenario(id="slow.exit", title="t", incident="I1", providers=("openai-chat",))
    async def slow_exit(ctx: ScenarioContext) -> None:
        """Nothing but a start and a stop."""
        await ctx.new_session()
        if starved:
            starve(ctx, 10.0)

    config = RunConfig(seed=5, target="tiny", timeout=5.0, stop_limit=0.2, calibrate=False)
    runner = Runner(config, tiny_factory(stop_delay=0.5 if starved else 30.0))
    result = await runner.run_case(Case(registry.get("slow.exit"), "openai-chat"))
    if starved:
        assert result.status is Status.PASSED, result.message
    else:
        assert result.status is Status.ERROR
        assert "target did not stop within 0.2 s; abandoned" in result.timeline
