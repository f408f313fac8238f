"""The search as a user relies on it: a failure shrinks to the smallest schedule, an
indeterminate run is re-run and never reported, saved counterexamples come first."""

from __future__ import annotations

from collections import Counter

from harness.explore.host import Status, Verdict
from harness.explore.menu import full_menu
from harness.explore.schedule import Cancel, Profile, Prompt, Schedule
from harness.explore.search import Explorer, SearchConfig
from harness.target import Capability

MENU = full_menu(Capability)


class StubHost:
    """Judges schedules by a rule instead of running them, counting every run."""

    def __init__(self, rule: dict[str, Status] | None = None, fails: bool = True) -> None:
        self.runs: Counter[str] = Counter()
        self.fails = fails
        self.rule = rule or {}

    def run(self, schedule: Schedule) -> Verdict:
        text = schedule.to_text()
        self.runs[text] += 1
        if text in self.rule:
            return Verdict(self.rule[text])
        broken = self.fails and any(isinstance(s, Cancel) for s in schedule.steps)
        broken = broken and any(isinstance(s, Prompt) for s in schedule.steps)
        return Verdict(Status.FAILED, "the cancel broke it") if broken else Verdict(Status.PASSED)


def explorer(host: StubHost, **config: object) -> Explorer:
    return Explorer(host, MENU, ["openai-chat"], SearchConfig(seed=5, **config))  # type: ignore[arg-type]


def test_a_failure_is_shrunk_to_a_small_schedule_within_the_shrink_budget() -> None:
    host = StubHost()
    report = explorer(host, budget=50, shrink_budget=60).explore()
    assert report.finding is not None
    assert report.finding.found_after <= 50
    assert report.finding.shrink_runs <= 60
    assert len(report.finding.schedule.steps) <= 3
    assert report.finding.verdict.message == "the cancel broke it"


def test_nothing_found_runs_exactly_the_budget() -> None:
    host = StubHost(fails=False)
    report = explorer(host, budget=30).explore()
    assert report.finding is None
    assert report.examples == 30 == report.passed


def test_findings_of_passed_examples_are_counted_and_the_first_few_kept() -> None:
    """What a passed example noted (user text written late, side traffic) reaches the
    report: how many examples noted something, and the first few findings to read."""

    class Noting(StubHost):
        def run(self, schedule: Schedule) -> Verdict:
            n = sum(self.runs.values())
            self.runs[schedule.to_text()] += 1
            said = (f"finding {n}",) if n % 2 == 0 else ()
            return Verdict(Status.PASSED, findings=said)

    report = explorer(Noting(fails=False), budget=10).explore()
    assert report.finding is None and report.passed == 10
    assert report.noted == 5
    assert report.findings == ["finding 0", "finding 2", "finding 4"]


def test_an_indeterminate_example_is_re_run_and_never_reported_as_a_failure() -> None:
    class Unsure(StubHost):
        def run(self, schedule: Schedule) -> Verdict:
            self.runs[schedule.to_text()] += 1
            return Verdict(Status.INDETERMINATE, "closed late")

    host = Unsure(fails=False)
    report = explorer(host, budget=10, reruns=2).explore()
    assert report.finding is None
    assert report.indeterminate == report.examples == 10
    assert all(n % 3 == 0 for n in host.runs.values())  # each time: the run, two re-runs


def test_saved_counterexamples_are_tried_first() -> None:
    saved = Schedule(Profile.PLAIN, "openai-chat", (Prompt(1, 0, ()), Cancel(0)))
    host = StubHost(rule={saved.to_text(): Status.FAILED})
    report = explorer(host, budget=10).explore(saved=[saved])
    assert report.finding is not None and report.finding.saved
    assert report.finding.schedule == saved and report.examples == 0


def test_a_duration_explores_in_seeded_chunks_until_time_is_up() -> None:
    host = StubHost(fails=False)
    report = explorer(host, budget=None, duration=0.5).explore()
    assert report.finding is None and report.examples >= 1
    assert report.seconds < 30


def test_a_failure_is_cut_after_the_step_it_failed_at_when_hypothesis_has_no_budget_left() -> None:
    """A failure at the first cancel, found in a longer schedule: with one shrink run left,
    the report is the schedule up to that cancel, run again and failing, never the steps
    after it, which did not run."""

    class FailsAtCancel(StubHost):
        first: tuple[Schedule, int] | None = None

        def run(self, schedule: Schedule) -> Verdict:
            self.runs[schedule.to_text()] += 1
            prompted = False
            for n, step in enumerate(schedule.steps, start=1):
                prompted |= isinstance(step, Prompt)
                if prompted and isinstance(step, Cancel):
                    self.first = self.first or (schedule, n)
                    return Verdict(Status.FAILED, "the cancel broke it", at_step=n)
            return Verdict(Status.PASSED)

    host = FailsAtCancel()
    report = explorer(host, budget=200, shrink_budget=1).explore()
    assert report.finding is not None and host.first is not None
    first, at = host.first
    assert len(first.steps) > at, "premise: the first failure (seed 5) has steps after it"
    assert report.finding.schedule == first.cut(at)
    assert report.finding.shrink_runs == 1
    assert host.runs[report.finding.schedule.to_text()] == 1  # it ran as itself, and failed
