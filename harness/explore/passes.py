"""`soak --explore N`: a seeded search of N examples after each catalogue pass.

The catalogue finds what someone placed; a soak that also explores keeps searching the
schedules nobody placed, night after night, each pass with a new seed. Pass k explores
with seed `explore_seed(SEED, k, shard)`, so a finding replays with the command it prints,
and the shards of a CI matrix search different schedules instead of the same ones.

Each pass starts its own host (agent and provider), on the soak's worker thread, so the
leak samples taken after the pass include whatever the exploration left behind. A pass's
finding is shrunk (within `SHRINK_RUNS` runs) and written as a scenario function beside
the soak's JSON report; no example database is read or written, so every pass is exactly
what its seed says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fake_providers.kinds import ProviderKind
from harness.explore.command import ExploreOptions, kinds_for
from harness.explore.host import Host, HostError
from harness.explore.menu import menu_for
from harness.explore.scenario_code import scenario_source
from harness.explore.search import Explorer, SearchConfig
from harness.scenario import Registry, Tempo
from harness.target import Capability, Target

SHRINK_RUNS = 100  # runs a pass may spend shrinking what it found


def explore_seed(seed: int, k: int, shard: tuple[int, int] | None = None) -> int:
    """The search seed of pass k (0-based); unique per (pass, shard) for one run seed."""
    index, count = shard if shard is not None else (1, 1)
    return (seed + k) * count + (index - 1)


@dataclass(frozen=True, slots=True)
class SoakExplore:
    """What each pass explores, checked before the soak starts."""

    options: ExploreOptions
    out_dir: Path
    shard: tuple[int, int] | None = None

    @property
    def examples(self) -> int:
        return self.options.search.budget or 0

    def run_pass(self, seed: int, k: int) -> dict[str, Any]:
        """Explore for pass k; a JSON-ready record (never raises for the agent's faults)."""
        search = replace(self.options.search, seed=explore_seed(seed, k, self.shard))
        options = replace(self.options, search=search)
        record: dict[str, Any] = {
            "pass": k + 1,
            "seed": search.seed,
            "examples": 0,
            "runs": 0,
            "passed": 0,
            "discarded": 0,
            "indeterminate": 0,
            "seconds": 0.0,
            "rate": 0.0,
            "notes": [],
            "finding": None,
            "error": None,
        }
        try:
            with Host(
                options.make_target,
                options.menu,
                tempo=Tempo(options.tempo),
                seed=search.seed,
                tls=options.tls,
                calibrate_kinds=options.calibrate,
            ) as host:
                report = Explorer(host, options.menu, options.kinds, search).explore()
                retries = Capability.RETRIES in host.capabilities and options.menu.retries
        except HostError as exc:
            record["error"] = str(exc)
            return record
        record.update(
            examples=report.examples,
            runs=report.runs,
            passed=report.passed,
            discarded=report.discarded,
            indeterminate=report.indeterminate,
            seconds=round(report.seconds, 3),
            rate=round(report.rate, 3),
            notes=list(report.notes),
        )
        found = report.finding
        if found is not None:
            schedule, verdict = found.schedule, found.verdict
            text = schedule.to_text()
            path = self.out_dir / f"found_{hashlib.sha256(text.encode()).hexdigest()[:8]}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(scenario_source(schedule, verdict.message, retries=retries))
            record["finding"] = {
                "status": verdict.status.value,
                "message": verdict.message,
                "found_after": found.found_after,
                "shrink_runs": found.shrink_runs,
                "steps": list(schedule.describe()),
                "schedule": text,
                "timeline": verdict.timeline,
                "replay": options.replay_command(schedule),
                "scenario": str(path),
            }
        return record


def soak_explore(
    *,
    examples: int,
    target: str,
    defects: tuple[str, ...],
    make: Callable[[str, Sequence[str]], Target],
    selectors: Sequence[str],
    registry: Registry,
    providers: Sequence[ProviderKind],
    tempo: float,
    tls: bool,
    calibrate: bool,
    out_dir: Path,
    shard: tuple[int, int] | None = None,
) -> SoakExplore:
    """The exploration each soak pass runs; raises ValueError for a bad count."""
    if examples < 1:
        raise ValueError(f"--explore {examples}: explore at least one example per pass")
    made = make(target, defects)
    options = ExploreOptions(
        target=target,
        defects=defects,
        make_target=lambda: make(target, defects),
        menu=menu_for(made.capabilities, selectors, registry if selectors else None),
        kinds=kinds_for(made, providers),
        search=SearchConfig(0, examples, None, shrink_budget=SHRINK_RUNS),
        tempo=tempo,
        tls=tls,
        calibrate=calibrate,
        selectors=tuple(selectors),
        db=None,
        out_dir=out_dir,
    )
    return SoakExplore(options, out_dir, shard)
