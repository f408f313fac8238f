"""What a run is made of and what it produces: cases, their config, statuses and results."""

from __future__ import annotations

import math
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
    """How a case ended. Only `passed` is a pass; not-applicable is never a pass nor a failure.

    `indeterminate`: a timed bound was missed but the harness measured a stall of its own
    that explains it, in every run it was given (see harness/timing.py). `did-not-start`:
    the agent never came up, so nothing was judged (exit 2, a setup problem).
    """

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    NOT_APPLICABLE = "not-applicable"
    INDETERMINATE = "indeterminate"
    DID_NOT_START = "did-not-start"


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INDETERMINATE = 0, 1, 2, 3


class ConfigError(ValueError):
    """A run setting out of range; the message names the setting, the range and the fix."""


TEMPO_MIN, TEMPO_MAX = 0.001, 10.0  # s; outside, waits overflow or fault specs cannot say them
TEMPO_RELIABLE = 0.01  # below this, bounds of a few tempo are within the machine's noise
RERUNS_MAX = 20


def check_tempo(tempo: float, name: str = "tempo") -> str | None:
    """Raise ConfigError outside the valid range; return a warning in the too-fast band."""
    if not (math.isfinite(tempo) and TEMPO_MIN <= tempo <= TEMPO_MAX):
        raise ConfigError(
            f"{name} {tempo:g}: expected seconds from {TEMPO_MIN:g} to {TEMPO_MAX:g}, "
            "such as 0.02 (the default) or 0.05 on a slow machine"
        )
    if tempo < TEMPO_RELIABLE:
        return (
            f"{name} {tempo:g} is below {TEMPO_RELIABLE:g} s: bounds of a few tempo are close to "
            "what this machine can time, so expect indeterminate cases (or use the default 0.02)"
        )
    return None


def check_seconds(value: float, name: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} {value:g}: expected seconds above 0, such as 30")


@dataclass(frozen=True, slots=True)
class RunConfig:
    """What a run was asked to do; enough to replay any of its cases."""

    seed: int
    target: str = "reference"
    defects: tuple[str, ...] = ()
    tempo: float = 0.02
    timeout: float | None = None  # per case, start-up excluded; None: 200 tempo, at least 10 s
    stop_limit: float | None = None  # for target.stop(); None: 100 tempo, at least 5 s
    jobs: int = 1  # cases run at once (each with its own provider and target)
    tls: bool = False  # the fake provider serves https; agents get its CA as {ca_file}
    strict_side_traffic: bool = False  # side traffic that outlives a cancel fails the case
    calibrate: bool = True  # learn the agent's turn calls from one plain turn per kind first
    via: str | None = None  # run --via: "proxy" or "direct" over the target's own setting
    reruns: int = 2  # re-runs of a case whose verdict was indeterminate
    repetition: int = 0  # which repetition of a `--repeat` run this is (0-based)

    def __post_init__(self) -> None:
        check_tempo(self.tempo)
        if self.timeout is not None:
            check_seconds(self.timeout, "timeout")
        if not 0 <= self.reruns <= RERUNS_MAX:
            raise ConfigError(f"reruns {self.reruns}: expected 0 to {RERUNS_MAX}, such as 2")

    @property
    def case_timeout(self) -> float:
        """A hung case fails with its timeline instead of hanging the run (start-up excluded)."""
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
        if not self.calibrate:
            args.append("--no-calibration")
        if self.timeout is not None:
            args += ["--timeout", f"{self.timeout:g}"]
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
class Attempt:
    """One run of a case; a case is re-run while its verdict is indeterminate."""

    status: Status
    message: str
    duration: float

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "message": self.message,
            "duration": round(self.duration, 4),
        }


@dataclass(frozen=True, slots=True)
class CaseResult:
    """How one case went, as reports show it (the last attempt's verdict, and every attempt)."""

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
    seed: int = 0  # the case's own seed, drawn from the run seed (harness/seeds.py)
    attempts: tuple[Attempt, ...] = ()
    repetition: int = 0

    @property
    def name(self) -> str:
        return f"{self.id}[{self.kind}]"

    @property
    def reruns(self) -> int:
        return max(0, len(self.attempts) - 1)

    def history(self) -> str:
        """`after 1 indeterminate` when the verdict took re-runs, else ""."""
        if not self.reruns:
            return ""
        earlier = [a.status for a in self.attempts[:-1]]
        counts = {s: earlier.count(s) for s in dict.fromkeys(earlier)}
        return "after " + ", ".join(f"{n} {s.value}" for s, n in counts.items())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["catches"] = list(self.catches)
        data["warnings"] = list(self.warnings)
        data["duration"] = round(self.duration, 4)
        data["attempts"] = [a.to_json() for a in self.attempts]
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
    repetitions: int = 1  # `--repeat`: the results hold every repetition's cases
    shuffled: bool = False

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def ok(self) -> bool:
        """Every case passed or was not applicable."""
        return all(r.status in (Status.PASSED, Status.NOT_APPLICABLE) for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 all passed (or not applicable); 1 a check failed or the harness broke; 2 the
        target did not start (setup, not a verdict); 3 nothing failed but some case stayed
        indeterminate after its re-runs (the machine was too loaded to judge it)."""
        statuses = {r.status for r in self.results}
        if statuses & {Status.FAILED, Status.ERROR}:
            return EXIT_FAILED
        if Status.DID_NOT_START in statuses:
            return EXIT_USAGE
        if Status.INDETERMINATE in statuses:
            return EXIT_INDETERMINATE
        return EXIT_OK


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
