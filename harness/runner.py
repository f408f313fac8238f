"""Runs (scenario, provider kind) cases: a fresh fake provider and target each, then checks.

Every case ends in one status (`harness.cases.Status`): passed; failed (a check or invariant
did not hold, or the case ran out of time); error (the harness, scenario or target broke);
not-applicable (the target lacks a required capability); did-not-start (the agent never came
up); or indeterminate (a timed bound was missed, but the harness measured a stall of its own
that explains it, see harness/timing.py). An indeterminate case is re-run, up to
`config.reruns` times; its result keeps every attempt.

Start-up is outside the case budget: the target has its own `startup_timeout` (30 s unless
it declares one) to start, then the scenario has `config.case_timeout`. Each case gets its own
seed from the run seed (harness/seeds.py) and its provider runs on its own thread
(harness/provider_host.py). `harness.guard.run_guarded` runs cases on a worker thread so a
target that swallows cancellation cannot hang the caller. Each result carries the exact
replay command.
"""

from __future__ import annotations

import contextlib
import gc
import random
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import anyio

from fake_providers import FakeProvider
from fake_providers.kinds import ProviderKind
from fake_providers.signals import WaitTimeout
from harness import invariants
from harness.calibration import Calibration, calibrate
from harness.cases import Attempt, Case, CaseResult, RunConfig, RunResult, Status, now_iso
from harness.checks import CheckFailed, wait_quietly
from harness.context import NotApplicable, ScenarioContext
from harness.provider_host import ProviderThread
from harness.scenario import Tempo
from harness.seeds import case_seed
from harness.slots import JobSlots, Slot, alone
from harness.target import AgentBroke, Endpoint, Target, TargetStartError
from harness.target_host import TargetHost
from harness.timeline import Timeline
from harness.timing import (
    EXTENSION_CAP,
    ChildSampler,
    Indeterminate,
    StallLog,
    StallMonitor,
    heartbeat,
)

type TargetFactory = Callable[[], Target]
type ReplayCommand = Callable[[Case, RunConfig], str]

DEFAULT_STARTUP = 30.0  # s, for targets that declare no startup_timeout of their own
STARTUP_GRACE = 5.0  # s beyond the target's startup_timeout, for it to stop and say why
STALLED_WAIT = 5  # tempo of stall during a set-up wait that makes its timeout indeterminate


class _Outcome(Exception):
    """Internal: ends a case early with a status and message."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def cli_replay(case: Case, config: RunConfig) -> str:
    return config.replay(case.spec.id, case.kind)


class Runner:
    """Runs cases with a target factory (one fresh target per attempt), `config.jobs` at once.

    `replay` words the command that replays a case (default: `cancel-harness run ...`).
    """

    def __init__(
        self,
        config: RunConfig,
        target_factory: TargetFactory,
        *,
        verbose: bool = False,
        replay: ReplayCommand = cli_replay,
    ) -> None:
        self.config = config
        self.target_factory = target_factory
        self.tempo = Tempo(config.tempo)
        self.verbose = verbose
        self.replay = replay
        self._live: dict[Case, tuple[float, Timeline, FakeProvider | None]] = {}
        self._verdict: dict[Case, str] = {}  # a live case's message before its target stopped
        # time.monotonic() by which each live case must have ended (read by run_guarded).
        self.deadlines: dict[Case, float] = {}
        self._started_any = False
        self._start_failure = ""  # the first did-not-start, while no target has started
        self._loop_stalls: StallLog | None = None  # run_each's heartbeat, shared by its cases
        self._findings: dict[Case, tuple[str, ...]] = {}  # warnings a case's scenario raised
        self.calibrations: dict[ProviderKind, Calibration] = {}
        # Provider connections still open when their case ended (after the target stopped):
        # a soak watches it grow (harness/soak.py).
        self.left_open = 0
        self.left_open_cases: list[str] = []

    async def run(
        self, cases: Sequence[Case], on_result: Callable[[CaseResult], None] | None = None
    ) -> RunResult:
        """Run the cases, `config.jobs` at a time; results are reported in case order."""
        run = RunResult(self.config, self.config.target, now_iso())
        began = time.perf_counter()
        done: dict[int, CaseResult] = {}
        if self.config.calibrate:
            await self.calibrate(cases)
            run.notes += [c.describe() for c in self.calibrations.values()]

        def arrived(index: int, result: CaseResult) -> None:
            done[index] = result
            while len(run.results) in done:
                ready = done.pop(len(run.results))
                run.results.append(ready)
                if on_result is not None:
                    on_result(ready)

        await self.run_each(cases, arrived)
        run.finished = now_iso()
        run.wall_seconds = time.perf_counter() - began
        return run

    async def calibrate(self, cases: Sequence[Case]) -> None:
        """One plain turn per provider kind that any case will run on (harness.calibration)."""
        try:
            capabilities = self.target_factory().capabilities
        except Exception:
            return  # each case reports the target it cannot make
        kinds = dict.fromkeys(c.kind for c in cases if c.spec.requires <= capabilities)
        for kind in kinds:
            if kind not in self.calibrations:
                found = await calibrate(self.target_factory, kind, tls=self.config.tls)
                self.calibrations[kind] = found

    async def run_each(
        self, cases: Sequence[Case], on_done: Callable[[int, CaseResult], None]
    ) -> None:
        """Run the cases, `config.jobs` at a time, reporting each as it ends (any order)."""
        slots = JobSlots(max(1, self.config.jobs))

        async def one(index: int, case: Case) -> None:
            held = await slots.take()
            try:
                result = await self.run_case(case, slots=slots, held=held)
            finally:
                held.give_back()
            on_done(index, result)

        # Cases share nothing (each has its own provider and target), and mostly wait in
        # watch windows, so a couple at a time keeps the catalogue fast on two cores. One
        # heartbeat on this loop serves every case.
        loop_stalls = StallLog("the harness loop")
        async with anyio.create_task_group() as beat:
            beat.start_soon(heartbeat, loop_stalls)
            self._loop_stalls = loop_stalls
            try:
                async with anyio.create_task_group() as tg:
                    for index, case in enumerate(cases):
                        tg.start_soon(one, index, case)
            finally:
                self._loop_stalls = None
                beat.cancel_scope.cancel()

    def _result(
        self,
        case: Case,
        began: float,
        status: Status,
        message: str,
        rendered: str = "",
        seed: int = 0,
        warnings: tuple[str, ...] = (),
        trace: dict[str, Any] | None = None,
    ) -> CaseResult:
        return CaseResult(
            id=case.spec.id,
            kind=case.kind,
            incident=case.spec.incident,
            title=case.spec.title,
            status=status,
            duration=time.perf_counter() - began,
            message=message,
            timeline=rendered,
            replay=self.replay(case, self.config),
            catches=case.spec.catches,
            warnings=warnings,
            seed=seed or case_seed(self.config.seed, case.name),
            repetition=self.config.repetition,
            trace=trace if status not in (Status.PASSED, Status.NOT_APPLICABLE) else None,
        )

    async def run_case(
        self, case: Case, *, slots: JobSlots | None = None, held: Slot | None = None
    ) -> CaseResult:
        """Run one case; while its verdict is indeterminate, re-run it (`config.reruns`).

        A re-run runs alone (with `slots`: no other case of this run beside it), since the
        harness's own concurrency is part of the load that made the verdict indeterminate.
        """
        seed = case_seed(self.config.seed, case.name)
        attempts: list[Attempt] = []
        try:
            result = await self._attempt(case, seed)
            attempts.append(Attempt(result.status, result.message, result.duration))
            while result.status is Status.INDETERMINATE and len(attempts) <= self.config.reruns:
                self.deadlines.pop(case, None)  # waiting for the others is not hanging
                async with alone(slots, held):
                    result = await self._attempt(case, seed)
                attempts.append(Attempt(result.status, result.message, result.duration))
        finally:
            self.deadlines.pop(case, None)
        total = sum(a.duration for a in attempts)
        return replace(result, duration=total, attempts=tuple(attempts))

    def _deadline(self, case: Case, seconds: float) -> None:
        self.deadlines[case] = time.monotonic() + seconds

    def overdue(self, slack: float) -> Case | None:
        """A live case past its deadline by `slack` s: its target could not be stopped."""
        now = time.monotonic()
        late = [(d, c) for c, d in list(self.deadlines.items()) if now > d + slack]
        return min(late, key=lambda pair: pair[0])[1] if late else None

    async def _attempt(self, case: Case, seed: int) -> CaseResult:
        began = time.perf_counter()
        timeline = Timeline()
        try:
            target = self.target_factory()
        except Exception as exc:
            message = f"cannot make the target: {_describe_error(exc)}"
            return self._result(case, began, Status.DID_NOT_START, message, seed=seed)
        missing = sorted(c.value for c in case.spec.requires - target.capabilities)
        if missing:
            message = (
                f"needs capability {', '.join(missing)}, which target '{target.name}' does not have"
            )
            return self._result(case, began, Status.NOT_APPLICABLE, message, seed=seed)
        if self._start_failure and not self._started_any:
            message = f"not run: no target has started in this run ({self._start_failure})"
            return self._result(case, began, Status.DID_NOT_START, message, seed=seed)
        known = self.calibrations.get(case.kind)
        profile = known.profile if known is not None else None
        host = ProviderThread(seed=seed, tls=self.config.tls, profile=profile)
        shared = self._loop_stalls
        loop_stalls = shared or StallLog("the harness loop")
        monitor = StallMonitor((loop_stalls, host.stalls, ChildSampler.acquire()))
        self._live[case], self._verdict[case] = (began, timeline, None), ""
        try:
            with _no_gc_pauses():
                async with anyio.create_task_group() as beat:
                    if shared is None:  # a case run on its own (run_case), not by run_each
                        beat.start_soon(heartbeat, loop_stalls)
                    try:
                        async with host as provider:
                            self._live[case] = (began, timeline, provider)
                            status, message = await self._drive(
                                case, provider, target, timeline, monitor, seed
                            )
                            await self._count_left_open(case, provider)
                    finally:
                        beat.cancel_scope.cancel()
        except Exception as exc:  # the provider itself failed to start or stop
            status, message = Status.ERROR, _describe_error(exc)
        finally:
            self._live.pop(case, None)
            ChildSampler.release()
        try:
            notes = target.notes()
        except Exception:
            notes = []
        ledger = host.provider.ledger if host.provider is not None else None
        rendered = timeline.render(ledger, notes, limit=None if self.verbose else 25)
        warnings = self._findings.pop(case, ())
        trace = timeline.trace(ledger, notes) if status is not Status.PASSED else None
        return self._result(case, began, status, message, rendered, seed, warnings, trace)

    async def _count_left_open(self, case: Case, provider: FakeProvider) -> None:
        """Connections still open once the case is over (the target stopped), after a grace
        for a close already on its way (a socket the provider accepts only after the agent
        closed it is open in the ledger until its EOF is read)."""
        ledger = provider.ledger
        if ledger.open_connections():
            await wait_quietly(ledger, lambda led: not led.open_connections(), self.tempo(10))
        left = len(ledger.open_connections())
        if left:
            self.left_open += left
            self.left_open_cases.append(case.name)

    def abandoned(self, case: Case) -> CaseResult:
        """The result for a case whose target could be neither stopped nor cancelled."""
        live = self._live.get(case)
        began = live[0] if live is not None else time.perf_counter()
        waited = time.perf_counter() - began
        message = (
            f"the case did not end within {waited:.1f} s: the target ignores cancellation "
            "(a shielded or blocking wait) and could not be stopped; the run was abandoned here"
        )
        if live is None:
            return self._result(case, began, Status.ERROR, message)
        _, timeline, provider = live
        if self._verdict.get(case):
            message += f"; before that: {self._verdict[case]}"
        timeline.stamp("case abandoned")
        ledger = provider.ledger if provider is not None else None
        rendered = timeline.render(ledger, limit=None if self.verbose else 25)
        trace = timeline.trace(ledger)
        return self._result(case, began, Status.ERROR, message, rendered, trace=trace)

    async def _drive(
        self,
        case: Case,
        provider: FakeProvider,
        target: Target,
        timeline: Timeline,
        monitor: StallMonitor,
        seed: int,
    ) -> tuple[Status, str]:
        ca_file = str(provider.tls.ca_path) if provider.tls is not None else None
        endpoint = Endpoint(case.kind, provider.url(case.kind), ca_file=ca_file)
        settings = case.spec.agent_settings(self.tempo)
        if not settings.seed:
            settings = replace(settings, seed=seed)
        ctx = ScenarioContext(
            spec=case.spec,
            provider=provider,
            target=target,
            endpoint=endpoint,
            tempo=self.tempo,
            rng=random.Random(seed),
            timeline=timeline,
            settings=settings,
            close_within=getattr(target, "close_within", None),
            strict_side_traffic=self.config.strict_side_traffic,
            stalls=monitor,
        )
        self._findings[case] = ()
        host = TargetHost(target, endpoint, settings)
        grace = self.tempo(10)
        startup = _startup_timeout(target)
        startup_limit = startup + STARTUP_GRACE
        stop_limit = self.config.stop_timeout
        status, message = Status.PASSED, ""
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.run)
            # Start-up is outside the case budget: the target's own startup_timeout bounds it.
            self._deadline(case, startup_limit + stop_limit)
            with anyio.move_on_after(startup_limit):
                await host.started.wait()
            if not host.started.is_set():
                timeline.stamp(f"target did not start within {startup:g} s")
                status = Status.DID_NOT_START
                message = (
                    f"the target did not start within its startup_timeout of {startup:g} s "
                    "and did not report why; raise startup_timeout or check the agent"
                )
            elif host.start_error is not None:
                status, message = Status.DID_NOT_START, _describe_error(host.start_error)
            else:
                self._started_any = True
                timeline.stamp(f"target {target.name} started against {endpoint.base_url}")
                status, message = await self._scenario(case, ctx, grace, timeline)
            if status is Status.DID_NOT_START and not self._started_any:
                self._start_failure = self._start_failure or message
            self._verdict[case] = message
            host.finish.set()
            if not host.started.is_set():
                host.abandon_start()  # a cancel its start() honours, shields and all
            # Like every watch window, the stop's grows by the stall measured meanwhile: an
            # agent process starved on a loaded machine exits late, not never.
            stop_began = time.monotonic_ns()
            with anyio.move_on_after(stop_limit):
                await host.stopped.wait()
            while not host.stopped.is_set():
                now = time.monotonic_ns()
                extra = min(EXTENSION_CAP * 1e9, ctx.stalls.stalled_ns(stop_began, now))
                left = (stop_began + stop_limit * 1e9 + extra - now) / 1e9
                if left <= 0:
                    break
                with anyio.move_on_after(left):
                    await host.stopped.wait()
            if not host.stopped.is_set():
                if host.started.is_set():
                    timeline.stamp(f"target did not stop within {stop_limit:g} s; abandoned")
                tg.cancel_scope.cancel()
                host.force_cancel()
                if not host.started.is_set():
                    return status, message
                stuck = f"the target did not stop within {stop_limit:g} s"
                return (
                    (Status.ERROR, stuck)
                    if status is Status.PASSED
                    else (status, f"{message} (and {stuck})")
                )
        timeline.stamp("target stopped")
        if host.stop_error is not None and status is Status.PASSED:
            return Status.ERROR, f"the target failed to stop: {_describe_error(host.stop_error)}"
        if status is Status.PASSED:
            try:
                await invariants.after_stop(ctx, grace)
            except CheckFailed as exc:
                return Status.FAILED, str(exc)
        return status, message

    async def _scenario(
        self, case: Case, ctx: ScenarioContext, grace: float, timeline: Timeline
    ) -> tuple[Status, str]:
        """The scenario and its invariants, bounded by the case timeout (start-up excluded)."""
        timeout = self.config.case_timeout
        self._deadline(case, timeout + self.config.stop_timeout)
        status, message = Status.PASSED, ""
        with anyio.move_on_after(timeout) as scope:
            try:
                await _run_scenario(ctx, grace)
            except _Outcome as out:
                status, message = out.status, out.message
            finally:
                self._findings[case] = tuple(dict.fromkeys(ctx.warnings))
        if scope.cancelled_caught:
            last = _last_step(timeline)
            timeline.stamp(f"case timed out after {timeout:g} s")
            why = "" if self.config.timeout else " (200 x tempo, at least 10 s)"
            status = Status.FAILED
            message = (
                f"the case did not finish within {timeout:g} s{why}, start-up excluded; "
                f"last harness step: {last}"
            )
        return status, message


async def _run_scenario(ctx: ScenarioContext, grace: float) -> None:
    """Run the scenario function, turning what it raises into a case outcome."""
    try:
        try:
            await ctx.spec.fn(ctx)
        except BaseExceptionGroup as group:  # a check failed inside the scenario's task group
            raise _unwrap(group) from None
    except CheckFailed as exc:
        ctx.timeline.stamp("check failed")
        raise _Outcome(Status.FAILED, str(exc)) from None
    except Indeterminate as exc:
        ctx.timeline.stamp("check indeterminate (the harness was stalled)")
        raise _Outcome(Status.INDETERMINATE, str(exc)) from None
    except WaitTimeout as exc:
        raise _gave_up(ctx, exc) from None
    except TargetStartError as exc:
        raise _Outcome(Status.ERROR, f"the target failed: {exc}") from None
    except AgentBroke as exc:
        ctx.timeline.stamp("the agent failed on its own")
        message = f"the agent failed before the cancel was staged: {exc}"
        raise _Outcome(Status.ERROR, message) from None
    except NotApplicable as exc:
        ctx.timeline.stamp("not applicable")
        raise _Outcome(Status.NOT_APPLICABLE, f"not applicable to this agent: {exc}") from None
    except Exception as exc:
        raise _Outcome(Status.ERROR, _describe_error(exc)) from None
    forgotten = ctx.unawaited()
    if forgotten:
        calls = ", ".join(f"{name}()" for name in forgotten)
        raise _Outcome(
            Status.ERROR, f"the scenario called {calls} without await, so it never ran; add await"
        )
    try:
        await invariants.end_of_scenario(ctx, grace)
    except CheckFailed as exc:
        ctx.timeline.stamp("invariant failed")
        raise _Outcome(Status.FAILED, str(exc)) from None
    except Indeterminate as exc:
        ctx.timeline.stamp("invariant indeterminate (the harness was stalled)")
        raise _Outcome(Status.INDETERMINATE, str(exc)) from None


def _gave_up(ctx: ScenarioContext, exc: WaitTimeout) -> _Outcome:
    """A wait for the scenario's own set-up (a stream held at a gate) ran out.

    If the harness or the agent could not run for STALLED_WAIT tempo of that wait, the agent's
    own timers (deadlines of a few tempo) may have raced the set-up: indeterminate.
    """
    steps = [e.t_ns for e in ctx.timeline.entries() if e.source == "harness"]
    now = ctx.timeline.stamp("gave up waiting")
    since = steps[-1] if steps else now
    stalled = ctx.stalls.stalled_ns(since, now)
    message = f"gave up waiting: {exc}"
    if stalled >= ctx.tempo(STALLED_WAIT) * 1e9:
        return _Outcome(
            Status.INDETERMINATE,
            f"{message}; but the harness measured {stalled / 1e6:.0f} ms of stall while it "
            f"waited ({ctx.stalls.describe(since, now)}): this run cannot judge it",
        )
    return _Outcome(Status.FAILED, message)


def _startup_timeout(target: Target) -> float:
    declared = getattr(target, "startup_timeout", None)
    if isinstance(declared, int | float) and declared > 0:
        return float(declared)
    return DEFAULT_STARTUP


_gc_holds = 0
_gc_was_enabled = True


@contextlib.contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Hold the cyclic GC during a case: in a big process (a pytest run) a gen-2 pass stalls
    the loop ~100 ms, which would read as "the agent took 100 ms to close". It runs after
    the last overlapping case ends."""
    global _gc_holds, _gc_was_enabled
    if _gc_holds == 0:
        _gc_was_enabled = gc.isenabled()
        gc.disable()
    _gc_holds += 1
    try:
        yield
    finally:
        _gc_holds -= 1
        if _gc_holds == 0 and _gc_was_enabled:
            gc.enable()


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe_error(exc: BaseException) -> str:
    """One line: the exception and where it was raised."""
    exc = _unwrap(exc)
    if isinstance(exc, TargetStartError):
        return f"the target did not start: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    where = (
        f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    )
    return f"{type(exc).__name__}: {exc}{where}"


def _last_step(timeline: Timeline) -> str:
    steps = [e for e in timeline.entries() if e.source == "harness"]
    return f"{steps[-1].what} at {timeline.rel(steps[-1].t_ns)}" if steps else "none"
