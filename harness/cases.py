"""What a run is made of and what it produces: cases, their config, statuses and results."""

from __future__ import annotations

import random
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fake_providers.kinds import ProviderKind
from harness.scenario import ScenarioSpec


class Status(StrEnum):
    """How a case ended; not-applicable is never a pass, and never a failure."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    NOT_APPLICABLE = "not-applicable"


@dataclass(frozen=True, slots=True)
class RunConfig:
    """What a run was asked to do; enough to replay any of its cases."""

    seed: int
    target: str = "reference"
    defects: tuple[str, ...] = ()
    tempo: float = 0.02
    timeout: float | None = None  # per case; None: 200 tempo, at least 10 s
    stop_limit: float | None = None  # for target.stop(); None: 100 tempo, at least 5 s
    jobs: int = 1  # cases run at once (each with its own provider and target)
    tls: bool = False  # the fake provider serves https; agents get its CA as {ca_file}
    strict_side_traffic: bool = False  # side traffic that outlives a cancel fails the case
    calibrate: bool = True  # learn the agent's turn calls from one plain turn per kind first
    via: str | None = None  # run --via: "proxy" or "direct" over the target's own setting

    @property
    def case_timeout(self) -> float:
        """A hung case fails with its timeline instead of hanging the run."""
        return self.timeout if self.timeout is not None else max(10.0, 200 * self.tempo)

    @property
    def stop_timeout(self) -> float:
        """How long a target may take to stop before it is abandoned."""
        return self.stop_limit if self.stop_limit is not None else max(5.0, 100 * self.tempo)

    def replay(self, scenario_id: str, kind: str) -> str:
        args = ["cancel-harness", "run", scenario_id, "--provider", kind]
        args += ["--seed", str(self.seed), "--tempo", f"{self.tempo:g}"]
        for defect in self.defects:
            args += ["--defect", defect]
        if self.target != "reference":
            args += ["--target", self.target]
        if self.tls:
            args.append("--tls")
        if self.via is not None:
            args += ["--via", self.via]
        if self.strict_side_traffic:
            args.append("--strict-side-traffic")
        return shlex.join(args)


def new_seed() -> int:
    """A fresh run seed (printed, and part of every replay command)."""
    return random.SystemRandom().randrange(1, 2**31)


@dataclass(frozen=True, slots=True)
class Case:
    """One scenario against one provider kind."""

    spec: ScenarioSpec
    kind: ProviderKind

    @property
    def name(self) -> str:
        return f"{self.spec.id}[{self.kind}]"


def plan_cases(specs: Sequence[ScenarioSpec], providers: Sequence[str] = ()) -> list[Case]:
    """Every (scenario, kind) pair, kinds limited to `providers` when given."""
    return [
        Case(spec, kind)
        for spec in specs
        for kind in spec.providers
        if not providers or kind in providers
    ]


@dataclass(frozen=True, slots=True)
class CaseResult:
    """How one case went, as reports show it."""

    id: str
    kind: str
    incident: str
    title: str
    status: Status
    duration: float
    message: str
    timeline: str
    replay: str
    catches: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # findings about side traffic (harness.context.warn)

    @property
    def name(self) -> str:
        return f"{self.id}[{self.kind}]"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["catches"] = list(self.catches)
        data["warnings"] = list(self.warnings)
        data["duration"] = round(self.duration, 4)
        return data


@dataclass(slots=True)
class RunResult:
    config: RunConfig
    target_name: str
    started: str
    finished: str = ""
    wall_seconds: float = 0.0  # start to finish; cases overlap with jobs > 1
    results: list[CaseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # calibration, per provider kind

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def ok(self) -> bool:
        return not any(r.status in (Status.FAILED, Status.ERROR) for r in self.results)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
