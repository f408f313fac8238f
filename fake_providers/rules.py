"""Choosing a plan per request: model-name specs, then rules in order, then the default.

Real agents send side requests (titles, suggestions, memory, model probes) next to the
main call, so one fault rarely fits all. Rules select by path, model, header, request
ordinal, body substring, stream flag or wire kind; the first live match wins. An agent we
cannot configure can still pick a plan through its model name: `gpt-4o~pace=50ms,hang-after=5`.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, replace

from fake_providers.conversation import Shape
from fake_providers.faults import FaultPlan, FaultSpecError, Match, Rule, parse_rule
from fake_providers.roles import (
    HINT_HEADER,
    Classification,
    MainCallProfile,
    PromptTags,
    classify,
)

MODEL_SPEC_SEPARATOR = "~"
MAX_RULES = 10_000  # a rule table larger than this is a runaway script, not a scenario


@dataclass(frozen=True, slots=True)
class RequestView:
    """The parts of a request that rules may look at."""

    path: str
    kind: str
    model: str
    stream: bool
    ordinal: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    shape: Shape | None = None  # None: the body was not read as a model call
    classification: Classification | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True, slots=True)
class PlanSelection:
    """The plan chosen for a request, why, and the model name with any spec removed."""

    plan: FaultPlan
    source: str  # "model-name" | "rule #N" | "default"
    model: str
    classification: Classification | None = None

    def describe(self) -> str:
        spec = self.plan.spec()
        return f"{self.source}: {spec}" if spec else self.source


def matches(match: Match, view: RequestView) -> bool:
    """True when every selector given in `match` fits the request."""
    if match.path is not None and not fnmatch.fnmatchcase(view.path, match.path):
        return False
    if match.model is not None and not fnmatch.fnmatchcase(view.model, match.model):
        return False
    if match.kind is not None and match.kind != view.kind:
        return False
    if match.stream is not None and match.stream != view.stream:
        return False
    if match.nth is not None and match.nth != view.ordinal:
        return False
    if match.header is not None:
        name, pattern = match.header
        values = [v for k, v in view.headers if k == name]
        if not any(fnmatch.fnmatchcase(v, pattern) for v in values):
            return False
    if match.role is not None or match.prompt is not None:
        found = view.classification
        if found is None:
            return False
        if match.role is not None and found.role != match.role:
            return False
        if match.prompt is not None and found.prompt != match.prompt:
            return False
    return match.body_contains is None or match.body_contains.encode() in view.body


class PlanResolver:
    """The provider's rule table. Thread-safe: the control API and tests edit it live."""

    def __init__(self, default: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[tuple[int, Rule]] = []
        self._uses: dict[int, int] = {}
        self._next_id = 1
        self.default = default or FaultPlan()
        self.prompts = PromptTags()  # the harness's prompt tags: how main calls are told apart
        self.profile: MainCallProfile | None = None  # the agent's calibrated turn calls

    def classify(self, view: RequestView) -> RequestView:
        """The view with its role (main, side, probe) filled in; see fake_providers.roles."""
        base = view.model.partition(MODEL_SPEC_SEPARATOR)[0]
        found = classify(
            view.shape,
            self.prompts.snapshot(),
            view.header(HINT_HEADER),
            model=base,
            profile=self.profile,
        )
        return replace(view, classification=found)

    def add(self, rule: Rule | str) -> int:
        """Add a rule (or a text spec) after the existing ones; returns its id."""
        parsed = parse_rule(rule) if isinstance(rule, str) else rule
        with self._lock:
            if len(self._rules) >= MAX_RULES:
                raise FaultSpecError(
                    f"the rule table is full ({MAX_RULES:,} rules); clear it first "
                    "(DELETE /__harness/faults or provider.clear_faults())"
                )
            rule_id = self._next_id
            self._next_id += 1
            self._rules.append((rule_id, parsed))
            self._uses[rule_id] = 0
        return rule_id

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._uses.clear()

    def rules(self) -> list[tuple[int, Rule, int]]:
        """(id, rule, times used) for each rule, in matching order."""
        with self._lock:
            return [(i, r, self._uses[i]) for i, r in self._rules]

    def select(self, view: RequestView) -> PlanSelection:
        """Pick the plan for a request. Raises ValueError for a bad spec in the model name."""
        if view.classification is None:
            view = self.classify(view)
        found = view.classification
        base, sep, spec = view.model.partition(MODEL_SPEC_SEPARATOR)
        if sep:
            try:
                plan = FaultPlan.parse(spec)
            except FaultSpecError as exc:
                raise ValueError(f"fault spec in model name {view.model!r}: {exc}") from None
            return PlanSelection(plan, "model-name", base, found)
        with self._lock:
            for rule_id, rule in self._rules:
                if rule.times is not None and self._uses[rule_id] >= rule.times:
                    continue
                if matches(rule.match, view):
                    self._uses[rule_id] += 1
                    return PlanSelection(rule.plan, f"rule #{rule_id}", view.model, found)
        return PlanSelection(self.default, "default", view.model, found)
