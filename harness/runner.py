"""Runs (scenario, provider kind) cases: a fresh fake provider and target each, then checks.

Every case ends in one status: passed, failed (a check or invariant did not hold, or the
case ran out of time), error (the harness, scenario or target broke), or not-applicable
(the target lacks a required capability). Each result carries the exact replay command.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import queue
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anyio

from fake_providers import FakeProvider
from fake_providers.kinds import ProviderKind
from fake_providers.signals import WaitTimeout
from harness import invariants
from harness.calibration import Calibration, calibrate, calibration_budget
from harness.cases import Case, CaseResult, RunConfig, RunResult, Status, now_iso
from harness.checks import CheckFailed
from harness.context import NotApplicable, ScenarioContext
from harness.scenario import Tempo
from harness.target import AgentBroke, AgentSettings, Endpoint, Target, TargetStartError
from harness.timeline import Timeline

type TargetFactory = Callable[[], Target]


class _Outcome(Exception):
    """Internal: ends a case early with a status and message."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Runner:
    """Runs cases one after another with a target factory (one fresh target per case)."""

    def __init__(
        self, config: RunConfig, target_factory: TargetFactory, *, verbose: bool = False
    ) -> None:
        self.config = config
        self.target_factory = target_factory
        self.tempo = Tempo(config.tempo)
        self.verbose = verbose
        self._live: dict[Case, tuple[float, Timeline, FakeProvider]] = {}
        self._verdict: dict[Case, str] = {}  # a live case's message before its target stopped
        self._findings: dict[Case, tuple[str, ...]] = {}  # warnings a case's scenario raised
        self.calibrations: dict[ProviderKind, Calibration] = {}

    async def run(
        self, cases: Sequence[Case], on_result: Callable[[CaseResult], None] | None = None
    ) -> RunResult:
        """Run the cases, `config.jobs` at a time; results are reported in case order."""
        run = RunResult(self.config, self.config.target, now_iso())
        began = time.perf_counter()
        done: dict[int, CaseResult] = {}
        limiter = anyio.CapacityLimiter(max(1, self.config.jobs))

        def deliver() -> None:
            while len(run.results) in done:
                result = done.pop(len(run.results))
                run.results.append(result)
                if on_result is not None:
                    on_result(result)

        async def one(index: int, case: Case) -> None:
            async with limiter:
                done[index] = await self.run_case(case)
            deliver()

        if self.config.calibrate:
            await self.calibrate(cases)
            run.notes += [c.describe() for c in self.calibrations.values()]
        # Cases share nothing (each has its own provider and target), and mostly wait in
        # watch windows, so a couple at a time keeps the catalogue fast on two cores.
        async with anyio.create_task_group() as tg:
            for index, case in enumerate(cases):
                tg.start_soon(one, index, case)
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

    def _result(
        self,
        case: Case,
        began: float,
        status: Status,
        message: str,
        rendered: str = "",
        warnings: tuple[str, ...] = (),
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
            replay=self.config.replay(case.spec.id, case.kind),
            catches=case.spec.catches,
            warnings=warnings,
        )

    async def run_case(self, case: Case) -> CaseResult:
        began = time.perf_counter()
        timeline = Timeline()
        try:
            target = self.target_factory()
        except Exception as exc:
            message = f"cannot make the target: {_describe_error(exc)}"
            return self._result(case, began, Status.ERROR, message)
        missing = sorted(c.value for c in case.spec.requires - target.capabilities)
        if missing:
            message = (
                f"needs capability {', '.join(missing)}, which target '{target.name}' does not have"
            )
            return self._result(case, began, Status.NOT_APPLICABLE, message)
        provider = FakeProvider(tls=self.config.tls)
        known = self.calibrations.get(case.kind)
        provider.resolver.profile = known.profile if known is not None else None
        self._live[case], self._verdict[case] = (began, timeline, provider), ""
        try:
            with _no_gc_pauses():
                async with provider:
                    status, message = await self._drive(case, provider, target, timeline)
        except Exception as exc:  # the provider itself failed to start or stop
            status, message = Status.ERROR, _describe_error(exc)
        finally:
            self._live.pop(case, None)
        try:
            notes = target.notes()
        except Exception:
            notes = []
        rendered = timeline.render(provider.ledger, notes, limit=None if self.verbose else 25)
        warnings = self._findings.pop(case, ())
        return self._result(case, began, status, message, rendered, warnings)

    def abandoned(self, case: Case, waited: float) -> CaseResult:
        """The result for a case whose target could be neither stopped nor cancelled."""
        message = (
            f"the case did not end within {waited:g} s: the target ignores cancellation "
            "(a shielded or blocking wait) and could not be stopped; the run was abandoned here"
        )
        live = self._live.get(case)
        if live is None:
            return self._result(case, time.perf_counter() - waited, Status.ERROR, message)
        began, timeline, provider = live
        if self._verdict.get(case):
            message += f"; before that: {self._verdict[case]}"
        timeline.stamp("case abandoned")
        rendered = timeline.render(provider.ledger, limit=None if self.verbose else 25)
        return self._result(case, began, Status.ERROR, message, rendered)

    async def _drive(
        self, case: Case, provider: FakeProvider, target: Target, timeline: Timeline
    ) -> tuple[Status, str]:
        ca_file = str(provider.tls.ca_path) if provider.tls is not None else None
        endpoint = Endpoint(case.kind, provider.url(case.kind), ca_file=ca_file)
        settings = case.spec.agent_settings(self.tempo)
        ctx = ScenarioContext(
            spec=case.spec,
            provider=provider,
            target=target,
            endpoint=endpoint,
            tempo=self.tempo,
            rng=random.Random(f"{self.config.seed}:{case.spec.id}:{case.kind}"),
            timeline=timeline,
            settings=settings,
            close_within=getattr(target, "close_within", None),
            strict_side_traffic=self.config.strict_side_traffic,
        )
        self._findings[case] = ()
        host = _TargetHost(target, endpoint, settings)
        grace = self.tempo(10)
        timeout = self.config.case_timeout
        status, message = Status.PASSED, ""
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.run)
            with anyio.move_on_after(timeout) as scope:
                try:
                    await host.started.wait()
                    if host.start_error is not None:
                        raise _Outcome(Status.ERROR, _describe_error(host.start_error))
                    timeline.stamp(f"target {target.name} started against {endpoint.base_url}")
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
                    f"the case did not finish within {timeout:g} s{why}; last harness step: {last}"
                )
            self._verdict[case] = message
            host.finish.set()
            stop_limit = self.config.stop_timeout
            with anyio.move_on_after(stop_limit):
                await host.stopped.wait()
            if not host.stopped.is_set():
                timeline.stamp(f"target did not stop within {stop_limit:g} s; abandoned")
                tg.cancel_scope.cancel()
                host.force_cancel()
                stuck = f"the target did not stop within {stop_limit:g} s"
                return (
                    (Status.ERROR, stuck)
                    if status is Status.PASSED
                    else (
                        status,
                        f"{message} (and {stuck})",
                    )
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


def run_guarded(
    runner: Runner,
    cases: Sequence[Case],
    on_result: Callable[[CaseResult], None] | None = None,
    *,
    slack: float = 10.0,
) -> RunResult:
    """Run on a worker thread, so a target that swallows cancellation cannot hang the caller.

    A case that reports nothing within its timeout + stop limit + `slack` is abandoned with its
    timeline so far; the cases after it are reported as not run (errors).
    """
    inbox: queue.Queue[CaseResult | BaseException | None] = queue.Queue()
    calibrated = threading.Event()

    def work() -> None:
        try:
            if runner.config.calibrate:
                anyio.run(runner.calibrate, cases)
            calibrated.set()
            anyio.run(runner.run, cases, inbox.put)
        except BaseException as exc:  # handed to the caller's thread
            inbox.put(exc)
        finally:
            calibrated.set()

    threading.Thread(target=work, name="cancel-harness-run", daemon=True).start()
    run = RunResult(runner.config, runner.config.target, now_iso())
    began = time.perf_counter()
    limit = calibration_budget(runner.target_factory) + slack
    if not calibrated.wait(limit):
        why = (
            f"not run: the plain calibration turn did not end within {limit:g} s; the target "
            "could not be stopped (it ignores cancellation), so the run was abandoned"
        )
        run.results = [runner._result(c, time.perf_counter(), Status.ERROR, why) for c in cases]
        if on_result is not None:
            for result in run.results:
                on_result(result)
        run.finished = now_iso()
        return run
    budget = runner.config.case_timeout + runner.config.stop_timeout + slack
    for i, case in enumerate(cases):
        try:
            item = inbox.get(timeout=budget)
        except queue.Empty:
            results = [runner.abandoned(case, budget)]
            why = f"not run: the run was abandoned when {case.name} hung"
            results += [
                runner._result(c, time.perf_counter(), Status.ERROR, why) for c in cases[i + 1 :]
            ]
            for result in results:
                run.results.append(result)
                if on_result is not None:
                    on_result(result)
            break
        if isinstance(item, BaseException):
            raise item
        assert item is not None
        run.results.append(item)
        if on_result is not None:
            on_result(item)
    run.finished = now_iso()
    run.wall_seconds = time.perf_counter() - began
    run.notes = [c.describe() for c in runner.calibrations.values()]
    return run


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
    except WaitTimeout as exc:
        ctx.timeline.stamp("gave up waiting")
        raise _Outcome(Status.FAILED, f"gave up waiting: {exc}") from None
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


class _TargetHost:
    """Runs a target's start..stop in one task, so its own task groups nest correctly.

    The scenario talks to the target from the runner's task; stopping is bounded from there.
    """

    def __init__(self, target: Target, endpoint: Endpoint, settings: AgentSettings) -> None:
        self.target, self.endpoint, self.settings = target, endpoint, settings
        self.started, self.finish, self.stopped = anyio.Event(), anyio.Event(), anyio.Event()
        self.start_error: Exception | None = None
        self.stop_error: Exception | None = None
        self._task: asyncio.Task[Any] | None = None

    def force_cancel(self) -> None:
        """Break a stop() stuck in a shielded scope: a native cancel reaches through shields."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def run(self) -> None:
        with contextlib.suppress(RuntimeError):  # not on asyncio: no native task to cancel
            self._task = asyncio.current_task()
        try:
            await self.target.start(self.endpoint, self.settings)
        except Exception as exc:
            self.start_error = exc
            self.started.set()
            self.stopped.set()
            return
        self.started.set()
        try:
            await self.finish.wait()
        finally:
            try:
                await self.target.stop()
            except Exception as exc:
                self.stop_error = exc
            self.stopped.set()


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
