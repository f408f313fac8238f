"""`cancel-harness explore`: what the command prints and returns, given checked options.

Exit 0 when nothing was found, 1 for a counterexample (the minimal schedule, the replay
command, a scenario function, saved to the example database), 2 for bad usage (the CLI
turns `ExploreUsageError` and friends into one line).
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fake_providers.kinds import ProviderKind
from harness.explore import examples
from harness.explore.host import Host, HostError, Status
from harness.explore.menu import Menu
from harness.explore.scenario_code import scenario_source
from harness.explore.schedule import Schedule
from harness.explore.search import Explorer, Finding, Report, SearchConfig
from harness.explore.strategies import drawable, lacking
from harness.scenario import Tempo
from harness.target import Capability, Target

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2
PROGRESS_EVERY = 25


class ExploreUsageError(ValueError):
    """Bad explore options; one line, exit 2."""


@dataclass(frozen=True, slots=True)
class ExploreOptions:
    """Everything `explore` was asked to do, already checked."""

    target: str
    defects: tuple[str, ...]
    make_target: Callable[[], Target]
    menu: Menu
    kinds: tuple[ProviderKind, ...]
    search: SearchConfig
    tempo: float
    tls: bool
    calibrate: bool = True
    selectors: tuple[str, ...] = ()
    replay: Schedule | None = None
    db: Path | None = examples.DEFAULT_PATH
    out_dir: Path = Path("reports/explore")
    verbose: bool = False

    @property
    def label(self) -> str:
        """The target as the example database keys it (defects included)."""
        return "+".join((self.target, *self.defects))

    def replay_command(self, schedule: Schedule) -> str:
        args = ["cancel-harness", "explore", "--target", self.target]
        for defect in self.defects:
            args += ["--defect", defect]
        args += ["--tempo", f"{self.tempo:g}", "--seed", str(self.search.seed)]
        if self.tls:
            args.append("--tls")
        if not self.calibrate:
            args.append("--no-calibration")
        args += ["--replay", schedule.to_text()]
        return shlex.join(args)


def run(options: ExploreOptions) -> int:
    """Explore (or replay one schedule) and report; returns the exit code."""
    try:
        with Host(
            options.make_target,
            options.menu,
            tempo=Tempo(options.tempo),
            seed=options.search.seed,
            tls=options.tls,
            calibrate_kinds=options.calibrate,
        ) as host:
            if options.replay is not None:
                return _replay(host, options, options.replay)
            return _explore(host, options)
    except HostError as exc:
        print(f"cancel-harness: error: {exc}")
        return EXIT_USAGE


def _explore(host: Host, options: ExploreOptions) -> int:
    search = options.search
    amount = (
        f"budget {search.budget} examples"
        if search.duration is None
        else (f"duration {search.duration:g} s")
    )
    print(
        f"cancel-harness explore: target {options.label}, seed {search.seed}, tempo "
        f"{options.tempo:g}s, {amount}\n  kinds: {', '.join(options.kinds)}\n"
        f"  menu: {options.menu.describe()}",
        flush=True,
    )
    saved: list[Schedule] = []
    if options.db is not None:
        saved = _runnable_saved(options, examples.schedules_for(options.db, options.label))

    def progress(report: Report) -> None:
        if report.examples % PROGRESS_EVERY == 0:
            print(
                f"  {report.examples} examples, {report.rate:.2f}/s: {report.passed} passed, "
                f"{report.discarded} discarded, {report.indeterminate} indeterminate",
                flush=True,
            )

    explorer = Explorer(host, options.menu, options.kinds, search, progress=progress)
    report = explorer.explore(saved)
    for note in report.notes:
        print(f"note: {note}")
    if report.noted:
        print(f"findings (noted, not failures) in {report.noted} passed example(s); the first:")
        for finding in report.findings:
            print(f"  - {finding}")
    if report.finding is not None:
        _found(options, report.finding, host)
    print(
        f"\nexplored {report.examples} examples in {report.seconds:.1f} s ({report.rate:.2f} "
        f"examples/s running them; {report.runs} runs with re-runs and shrinking; "
        f"{host.starts} agent start(s)): {report.passed} passed, {report.discarded} discarded, "
        f"{report.indeterminate} indeterminate"
    )
    return EXIT_FOUND if report.finding is not None else EXIT_OK


def _found(options: ExploreOptions, finding: Finding, host: Host) -> None:
    schedule, verdict = finding.schedule, finding.verdict
    if finding.saved:
        how = "a saved counterexample still fails"
    else:
        how = (
            f"found after {finding.found_after} examples, shrunk over {finding.shrink_runs} "
            "more runs"
        )
    print(f"\n{verdict.status.upper()}: {how}\n  {verdict.message}\n")
    print(
        f"minimal schedule ({len(schedule.steps)} steps, profile {schedule.profile}, "
        f"{schedule.kind}):"
    )
    for n, line in enumerate(schedule.describe(), start=1):
        print(f"  {n}. {line}")
    print("  then: every gate opens, every turn ends, the next turn in each session completes")
    if verdict.timeline:
        print(f"\ntimeline:\n{verdict.timeline}")
    print(f"\nreplay: {options.replay_command(schedule)}")
    retries = Capability.RETRIES in host.capabilities and options.menu.retries
    source = scenario_source(schedule, verdict.message, retries=retries)
    digest = hashlib.sha256(schedule.to_text().encode()).hexdigest()[:8]
    options.out_dir.mkdir(parents=True, exist_ok=True)
    path = options.out_dir / f"found_{digest}.py"
    path.write_text(source)
    print(f"scenario: {path} (a scenario function reproducing it; paste it into your catalogue)")
    if options.verbose:
        print(source)
    if options.db is not None and not finding.saved:
        examples.save(options.db, options.label, schedule, verdict.status.value, verdict.message)
        print(f"saved: {options.db} (tried first on the next run)")


def _runnable_saved(options: ExploreOptions, saved: Sequence[Schedule]) -> list[Schedule]:
    """The saved counterexamples this run could have drawn itself. One that needs what the
    target cannot do (or this run's selectors and `--provider` leave out) is skipped, and
    said so: run on a target without it, it would fail for the wrong reason."""
    runnable, skipped = [], []
    for schedule in saved:
        fits = ProviderKind.parse(schedule.kind) in options.kinds
        if fits and drawable(schedule, options.menu):
            runnable.append(schedule)
        else:
            skipped.append(schedule)
    if runnable:
        print(f"  trying {len(runnable)} saved counterexample(s) from {options.db} first")
    if skipped:
        needs = sorted({n for s in skipped for n in lacking(s, options.menu, options.kinds)})
        why = f" (they need {', '.join(needs)})" if needs else ""
        print(
            f"  skipping {len(skipped)} saved counterexample(s) from {options.db} that this "
            f"run would not draw{why}: the target, or this run's SELECTOR or --provider, leaves "
            "that out; --replay runs one anyway"
        )
    return runnable


def _replay(host: Host, options: ExploreOptions, schedule: Schedule) -> int:
    print(f"cancel-harness explore: replaying {len(schedule.steps)} steps against {options.label}")
    for n, line in enumerate(schedule.describe(), start=1):
        print(f"  {n}. {line}")
    missing = lacking(schedule, options.menu, options.kinds)
    if missing or not drawable(schedule, options.menu):
        needs = f": it needs {', '.join(missing)}" if missing else ""
        print(
            f"note: explore would not draw this schedule for {options.label}{needs}; a failure "
            "may come from what the target cannot do rather than from a bug"
        )
    verdict = host.run(schedule)
    for _ in range(options.search.reruns):
        if verdict.status is not Status.INDETERMINATE:
            break
        verdict = host.run(schedule)
    print(f"\n{verdict.status}: {verdict.message}" if verdict.message else f"\n{verdict.status}")
    for finding in verdict.findings:
        print(f"finding (noted, not a failure): {finding}")
    if verdict.timeline and (options.verbose or verdict.status is not Status.PASSED):
        print(f"\ntimeline:\n{verdict.timeline}")
    return EXIT_FOUND if verdict.status in (Status.FAILED, Status.ERROR) else EXIT_OK


def kinds_for(target: Target, asked: Sequence[str]) -> tuple[ProviderKind, ...]:
    """The provider kinds to draw from: those asked for, else those the target speaks."""
    if asked:
        return tuple(dict.fromkeys(ProviderKind.parse(k) for k in asked))
    spoken = getattr(target, "providers", None)
    return tuple(spoken) if spoken else (ProviderKind.OPENAI_CHAT,)
