"""A `FaultPlan` (faults plus what the model says) and the `Rule` that picks requests for it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fake_providers.content import ContentSpec
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import Layout, Schedule
from fake_providers.faults.values import FaultSpecError

Step = Fault  # the name the plan's parts had before faults became registered classes


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """A composable response script: fault steps plus what the model says."""

    steps: tuple[Fault, ...] = ()
    content: ContentSpec = field(default_factory=ContentSpec)
    seed: int = 0

    def __add__(self, other: FaultPlan | Fault) -> FaultPlan:
        if isinstance(other, FaultPlan):
            content = other.content if other.content != ContentSpec() else self.content
            return FaultPlan(self.steps + other.steps, content, other.seed or self.seed)
        return replace(self, steps=(*self.steps, other))

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Parse a text spec such as `pace=50ms,hang-after=5` (selectors are not allowed)."""
        from fake_providers.faults.spec import parse_rule

        rule = parse_rule(spec)
        if rule.match != Match():
            bad = next(iter(rule.match.describe()))
            raise FaultSpecError(
                f"'{bad}' selects requests, which a plain fault plan cannot do; "
                "use it in a rule (--fault or POST /__harness/faults) instead"
            )
        return rule.plan

    def spec(self) -> str:
        """The text spec of this plan (round-trips through `parse`)."""
        from fake_providers.faults.spec import plan_tokens

        return ",".join(plan_tokens(self))

    def compile(self, *, request_ordinal: int = 0) -> Schedule:
        """Lay the plan out as a schedule for one response."""
        layout = Layout()
        for step in self.steps:
            step.compile(layout)
        return layout.freeze(seed=self.seed, request_ordinal=request_ordinal)


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a rule applies to; every given field must match."""

    path: str | None = None
    model: str | None = None
    header: tuple[str, str] | None = None
    nth: int | None = None
    body_contains: str | None = None
    stream: bool | None = None
    kind: str | None = None
    role: str | None = None  # main | side | probe (fake_providers.roles)
    prompt: str | None = None  # the prompt tag the request's latest user message carries

    def describe(self) -> tuple[str, ...]:
        tokens: list[str] = []
        if self.path is not None:
            tokens.append(f"path={self.path}")
        if self.model is not None:
            tokens.append(f"model={self.model}")
        if self.header is not None:
            tokens.append(f"header={self.header[0]}:{self.header[1]}")
        if self.nth is not None:
            tokens.append(f"nth={self.nth}")
        if self.body_contains is not None:
            tokens.append(f"body-contains={self.body_contains}")
        if self.stream is not None:
            tokens.append(f"stream={'true' if self.stream else 'false'}")
        if self.kind is not None:
            tokens.append(f"kind={self.kind}")
        if self.role is not None:
            tokens.append(f"role={self.role}")
        if self.prompt is not None:
            tokens.append(f"prompt={self.prompt}")
        return tuple(tokens)


@dataclass(frozen=True, slots=True)
class Rule:
    """A plan for the requests that `match` selects, for at most `times` of them."""

    plan: FaultPlan
    match: Match = field(default_factory=Match)
    times: int | None = None

    def spec(self) -> str:
        from fake_providers.faults.spec import plan_tokens

        tokens = [*self.match.describe(), *plan_tokens(self.plan)]
        if self.times is not None:
            tokens.append(f"times={self.times}")
        return ",".join(tokens)
