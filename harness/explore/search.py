"""The search: hypothesis draws schedules, the host runs them, a failure is shrunk.

Saved counterexamples (the example database) are tried first. Then hypothesis generates
up to the budget (or, with a duration, in seeded chunks until time is up). A run that
could not be observed in time is re-run; if it stays indeterminate, or the agent took a
legitimate other path, hypothesis is told to discard the example. A failure is shrunk
(within a bound of extra runs) and reported as the smallest failing schedule seen last.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, Verbosity, given, reject, seed, settings
from hypothesis.errors import Flaky, Unsatisfiable

from harness.explore.host import Host, Status, Verdict
from harness.explore.menu import Menu
from harness.explore.schedule import Schedule
from harness.explore.shrink import shrink_steps
from harness.explore.strategies import MAX_STEPS, schedules

CHUNK = 50  # examples per hypothesis run when exploring for a duration
FAILING = frozenset({Status.FAILED, Status.ERROR})


@dataclass(frozen=True, slots=True)
class SearchConfig:
    seed: int
    budget: int | None = 100  # examples, or None with a duration
    duration: float | None = None  # seconds
    reruns: int = 2  # extra runs of an example that stayed indeterminate
    shrink_budget: int = 200  # runs spent shrinking a failure
    max_steps: int = MAX_STEPS


@dataclass(frozen=True, slots=True)
class Finding:
    """The smallest failing schedule, its verdict, and how it was found."""

    schedule: Schedule
    verdict: Verdict
    found_after: int  # examples run before the first failure (0: a saved counterexample)
    shrink_runs: int
    saved: bool = False


MAX_FINDINGS = 3  # findings of passed examples shown in the report


@dataclass
class Report:
    """What one exploration did."""

    examples: int = 0  # schedules drawn and run (re-runs not counted)
    runs: int = 0  # runs, re-runs included
    passed: int = 0
    discarded: int = 0
    indeterminate: int = 0
    seconds: float = 0.0
    example_seconds: float = 0.0  # time inside the runs (start-up and shrinking excluded)
    finding: Finding | None = None
    notes: list[str] = field(default_factory=list)
    noted: int = 0  # examples that passed with findings (side traffic, user text written late)
    findings: list[str] = field(default_factory=list)  # the first few, one per example

    @property
    def rate(self) -> float:
        """Examples per second of running them."""
        return self.examples / self.example_seconds if self.example_seconds else 0.0


class Counterexample(Exception):
    """Raised inside the hypothesis test for a failing schedule."""


class _Spent(BaseException):
    """The budget (examples, time or shrink runs) is spent: stop hypothesis at once. A
    BaseException, so hypothesis does not take it for a failure to shrink."""


class Explorer:
    """One exploration over a host (see the module docstring)."""

    def __init__(
        self,
        host: Host,
        menu: Menu,
        kinds: Sequence[str],
        config: SearchConfig,
        *,
        progress: Callable[[Report], None] | None = None,
    ) -> None:
        self.host, self.menu, self.kinds, self.config = host, menu, list(kinds), config
        self.progress = progress
        self.report = Report()
        self._failures: dict[str, tuple[Schedule, Verdict]] = {}
        self._last_failing = ""
        self._first_at: int | None = None
        self._shrink_runs = 0

    # ---------------------------------------------------------------------------- runs

    def judge(self, schedule: Schedule) -> Verdict:
        """Run a schedule, re-running an indeterminate verdict up to `reruns` times."""
        verdict = self._run(schedule)
        for _ in range(self.config.reruns):
            if verdict.status is not Status.INDETERMINATE:
                break
            verdict = self._run(schedule)
        return verdict

    def _run(self, schedule: Schedule) -> Verdict:
        verdict = self.host.run(schedule)
        self.report.runs += 1
        self.report.example_seconds += verdict.seconds
        return verdict

    def explore(self, saved: Sequence[Schedule] = ()) -> Report:
        """Saved counterexamples first, then the search; returns the report."""
        began = time.perf_counter()
        try:
            for schedule in saved:
                verdict = self.judge(schedule)
                if verdict.status in FAILING:
                    self.report.finding = Finding(schedule, verdict, 0, 0, saved=True)
                    return self.report
            self._search()
        finally:
            self.report.seconds = time.perf_counter() - began
        return self.report

    def _search(self) -> None:
        config = self.config
        if config.duration is None:
            self._hypothesis(config.seed, config.budget or 100)
            return
        deadline = time.monotonic() + config.duration
        chunk = 0
        while time.monotonic() < deadline and self.report.finding is None:
            self._deadline = deadline
            self._hypothesis(random.Random(f"{config.seed}:{chunk}").randrange(2**32), CHUNK)
            chunk += 1

    _deadline: float | None = None

    def _spent(self) -> bool:
        if self.config.duration is not None:
            return self._deadline is not None and time.monotonic() >= self._deadline
        return self.report.examples >= (self.config.budget or 100)

    # ---------------------------------------------------------------------- hypothesis

    def _test(self, schedule: Schedule) -> None:
        verdict = self._verdict(schedule)
        if verdict.status in FAILING:
            # One raise site: hypothesis tells bugs apart by where they were raised.
            raise Counterexample(verdict.message)
        if verdict.status in (Status.DISCARDED, Status.INDETERMINATE):
            reject()

    def _verdict(self, schedule: Schedule) -> Verdict:
        """The schedule's verdict (a known failure from the cache). Raises `_Spent` when the
        budget is: the search keeps the smallest failure it has."""
        text = schedule.to_text()
        if text in self._failures:
            self._last_failing = text
            return self._failures[text][1]
        if self._first_at is not None:
            if self._shrink_runs >= self.config.shrink_budget - self._step_reserve():
                raise _Spent
            self._shrink_runs += 1
        elif self._spent():
            raise _Spent
        else:
            self.report.examples += 1
        verdict = self.judge(schedule)
        if verdict.status in FAILING:
            self._failures[text] = (schedule, verdict)
            self._last_failing = text
            if self._first_at is None:
                self._first_at = self.report.examples
            self._cut_after_failure(schedule, verdict)
        elif self._first_at is None:
            self._count(verdict)
        return verdict

    def _cut_after_failure(self, schedule: Schedule, verdict: Verdict) -> None:
        """Try the schedule cut after the step it failed at, once, as a shrink run.

        The steps after that point never ran in this example. Hypothesis would drop them
        in time, but it shrinks the choices behind the steps, not the steps themselves, and
        a shrink budget can run out before it tries; a seed then reported ten steps for a
        failure at the sixth. A prefix of a drawn schedule is one the strategies could have
        drawn, so it is a fair candidate; it counts only if it fails in its own run. Tried
        only when it would be the smallest failure yet."""
        cut = schedule.cut(verdict.at_step)
        if cut is None or cut.to_text() in self._failures:
            return
        if len(cut.steps) >= min(len(s.steps) for s, _ in self._failures.values()):
            return  # not smaller than a failure already known: not worth a run
        if self._shrink_runs >= self.config.shrink_budget:
            return
        self._shrink_runs += 1
        again = self.judge(cut)
        if again.status in FAILING:
            self._failures[cut.to_text()] = (cut, again)

    def _count(self, verdict: Verdict) -> None:
        report = self.report
        match verdict.status:
            case Status.PASSED:
                report.passed += 1
                if verdict.findings:
                    report.noted += 1
                    if len(report.findings) < MAX_FINDINGS:
                        report.findings.append(verdict.findings[0])
            case Status.DISCARDED:
                report.discarded += 1
            case _:
                report.indeterminate += 1
        if self.progress is not None:
            self.progress(report)

    def _hypothesis(self, run_seed: int, examples: int) -> None:
        strategy = schedules(self.menu, self.kinds, max_steps=self.config.max_steps)
        test = given(strategy)(self._test)
        test = seed(run_seed)(test)
        test = settings(
            max_examples=examples,
            database=None,
            deadline=None,
            derandomize=False,
            phases=(Phase.explicit, Phase.generate, Phase.shrink),
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            print_blob=False,
        )(test)
        try:
            test()
        except (Counterexample, Flaky, _Spent):
            pass
        except Unsatisfiable:
            self.report.notes.append(
                "every example this run was discarded: the target never reached the points "
                "the schedules aim at (see `cancel-harness explore --help` on selectors)"
            )
        if self._last_failing and self.report.finding is None:
            self._shrink_steps()
            schedule, verdict = self._smallest()
            first = self._first_at or self.report.examples
            self.report.finding = Finding(schedule, verdict, first, self._shrink_runs)

    def _step_reserve(self) -> int:
        """Shrink runs kept from hypothesis for the step shrinker (a quarter)."""
        return self.config.shrink_budget // 4

    def _shrink_steps(self) -> None:
        """After hypothesis: drop whole turns and steps from the smallest failure
        (`shrink.py`), with the shrink runs left."""

        def fails(schedule: Schedule) -> bool:
            verdict = self.judge(schedule)
            if verdict.status in FAILING:
                self._failures[schedule.to_text()] = (schedule, verdict)
            return verdict.status in FAILING

        left = self.config.shrink_budget - self._shrink_runs
        if left > 0:
            schedule, _ = self._smallest()
            _, runs = shrink_steps(schedule, self.menu, fails, left, self.config.max_steps)
            self._shrink_runs += runs

    def _smallest(self) -> tuple[Schedule, Verdict]:
        """The failure to report: the fewest steps, then hypothesis's last (its best
        shrink), so a cut prefix wins over a longer schedule it came from."""
        order = {text: n for n, text in enumerate(self._failures)}
        last = self._last_failing

        def key(text: str) -> tuple[int, int, int]:
            return (len(self._failures[text][0].steps), text != last, -order[text])

        return self._failures[min(self._failures, key=key)]
