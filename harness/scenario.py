"""Scenarios: small async functions with metadata, and the registry that holds them.

    @scenario(id="esc.mid-stream", title="Esc mid-stream closes the socket", incident="I1",
              requires=frozenset({Capability.CANCEL}), catches=("provider-ignores-cancel",))
    async def esc_mid_stream(ctx: ScenarioContext) -> None:
        '''The user presses Esc and the model keeps writing into a channel nobody reads.'''

The docstring is the user-visible failure the scenario guards against; it is required.
`catches` names what the scenario proves it can catch: reference-agent defects (the
mutants matrix runs them) or external references (an incident or issue URL), for users
reproducing a bug in their own agent. `variants` registers one scenario per parameter set:

    @scenario(id="esc.stall", ..., variants={"before-text": {"events": 1}, "after-text": ...})
    async def esc_stall(ctx: ScenarioContext, *, events: int) -> None: ...

registers `esc.stall/before-text` and `esc.stall/after-text`. The context a scenario gets is
`harness.context.ScenarioContext`; scenario authors' helpers are in `harness.steps` and
`harness.faults`.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import inspect
import pkgutil
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fake_providers.kinds import ProviderKind, UnknownProviderKind
from harness.context import NotApplicable, ScenarioContext
from harness.target import AgentSettings, Capability
from reference_agent.defects import Defect

__all__ = [
    "ALL_KINDS",
    "CATALOGUE",
    "DEFAULT_TEMPO",
    "CatalogueError",
    "NotApplicable",
    "Registry",
    "ScenarioContext",
    "ScenarioDefinitionError",
    "ScenarioSpec",
    "Tempo",
    "UnknownSelectorError",
    "load_catalogue",
    "scenario",
]

DEFAULT_TEMPO = 0.02
# The kinds a scenario runs on unless it says otherwise.
ALL_KINDS: tuple[ProviderKind, ...] = tuple(ProviderKind)
CATALOGUE_PACKAGE = "scenarios"
DEFECT_NAMES = frozenset(d.value for d in Defect)


@dataclass(frozen=True, slots=True)
class Tempo:
    """The one interval every wait is a multiple of: `tempo(5)` is five intervals, in seconds."""

    interval: float = DEFAULT_TEMPO

    def __call__(self, n: float) -> float:
        return n * self.interval


type ScenarioFn = Callable[..., Awaitable[None]]
type SettingsFactory = Callable[[Tempo], AgentSettings]


class ScenarioDefinitionError(ValueError):
    """A scenario declared wrongly (bad id, unknown provider kind, no docstring, duplicate)."""


class UnknownSelectorError(ValueError):
    """A selector that matches no scenario; the message says what selectors look like."""


class CatalogueError(RuntimeError):
    """A scenario module failed to import; the message names the module and the error."""


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """A registered scenario: the function and everything the runner and reports need."""

    id: str
    title: str
    incident: str
    fn: Callable[[ScenarioContext], Awaitable[None]] = field(repr=False)
    doc: str = ""
    tags: tuple[str, ...] = ()
    providers: tuple[ProviderKind, ...] = ALL_KINDS
    requires: frozenset[Capability] = frozenset()
    catches: tuple[str, ...] = ()
    settings: SettingsFactory | None = field(default=None, repr=False)
    origin: str = ""  # module.qualname, to tell a re-import from a duplicate id
    params: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def agent_settings(self, tempo: Tempo) -> AgentSettings:
        return self.settings(tempo) if self.settings is not None else AgentSettings()

    @property
    def defects(self) -> tuple[str, ...]:
        """The reference-agent defects this scenario claims to catch (the mutants matrix)."""
        return tuple(c for c in self.catches if c in DEFECT_NAMES)

    @property
    def references(self) -> tuple[str, ...]:
        """External references it reproduces (incident or issue URLs)."""
        return tuple(c for c in self.catches if c not in DEFECT_NAMES)


class Registry:
    """Scenarios by id, in registration order. Tests make their own; the catalogue is global."""

    def __init__(self) -> None:
        self._specs: dict[str, ScenarioSpec] = {}

    def __iter__(self) -> Iterator[ScenarioSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, scenario_id: object) -> bool:
        return scenario_id in self._specs

    def get(self, scenario_id: str) -> ScenarioSpec:
        try:
            return self._specs[scenario_id]
        except KeyError:
            raise UnknownSelectorError(_no_match(scenario_id, list(self._specs))) from None

    def add(self, spec: ScenarioSpec) -> None:
        old = self._specs.get(spec.id)
        if old is not None and old.origin != spec.origin:
            raise ScenarioDefinitionError(
                f"scenario id {spec.id!r} is defined twice ({old.origin} and {spec.origin}); "
                "give one of them another id"
            )
        self._specs[spec.id] = spec

    def scenario(
        self,
        *,
        id: str,
        title: str,
        incident: str,
        tags: Sequence[str] = (),
        providers: Sequence[str] = ALL_KINDS,
        requires: Iterable[Capability] = frozenset(),
        catches: Sequence[str] = (),
        settings: SettingsFactory | None = None,
        variants: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Callable[[ScenarioFn], ScenarioFn]:
        """Register the decorated `async def fn(ctx, **params)` here; it is returned unchanged.

        With `variants`, one scenario `ID/NAME` per entry, called with that entry's params.
        """

        def register(fn: ScenarioFn) -> ScenarioFn:
            base = _spec(fn, id, title, incident, tags, providers, requires, catches, settings)
            if variants is None:
                self.add(base)
                return fn
            if not variants:
                raise ScenarioDefinitionError(f"scenario {id!r}: `variants` is empty")
            for name, params in variants.items():
                if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
                    raise ScenarioDefinitionError(
                        f"scenario {id!r}: variant name {name!r} takes letters, digits, -, _, ."
                    )
                bound = functools.partial(fn, **params)
                self.add(
                    ScenarioSpec(
                        id=f"{id}/{name}",
                        title=f"{title} ({name})",
                        incident=base.incident,
                        fn=bound,
                        doc=base.doc,
                        tags=base.tags,
                        providers=base.providers,
                        requires=base.requires,
                        catches=base.catches,
                        settings=base.settings,
                        origin=f"{base.origin}/{name}",
                        params=dict(params),
                    )
                )
            return fn

        return register

    def select(self, selectors: Sequence[str] = ()) -> list[ScenarioSpec]:
        """Scenarios matching any selector (all when none), in catalogue order.

        A selector is an exact id, a glob on ids (`esc.*`), an incident (`I1`), `tag:NAME`,
        or a scenario's id without its variant (`esc.stall` selects every `esc.stall/...`).
        """
        if not selectors:
            return list(self)
        chosen: set[str] = set()
        for selector in selectors:
            found = self._match(selector)
            if not found:
                raise UnknownSelectorError(_no_match(selector, list(self._specs)))
            chosen.update(found)
        return [s for s in self if s.id in chosen]

    def _match(self, selector: str) -> list[str]:
        specs = list(self)
        if selector.startswith("tag:"):
            return [s.id for s in specs if selector[4:] in s.tags]
        if selector in self._specs:
            return [selector]
        if any(ch in selector for ch in "*?["):
            return [s.id for s in specs if fnmatch.fnmatchcase(s.id, selector)]
        variants = [s.id for s in specs if s.id.startswith(selector + "/")]
        if variants:
            return variants
        return [s.id for s in specs if s.incident.lower() == selector.lower()]


def _no_match(selector: str, ids: list[str]) -> str:
    close = difflib.get_close_matches(selector, ids, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (
        f"no scenario matches '{selector}'{hint}; select by id, glob (esc.*), incident (I1) "
        "or tag:NAME; `cancel-harness list` shows the catalogue"
    )


def _spec(
    fn: ScenarioFn,
    scenario_id: str,
    title: str,
    incident: str,
    tags: Sequence[str],
    providers: Sequence[str],
    requires: Iterable[Capability],
    catches: Sequence[str],
    settings: SettingsFactory | None,
) -> ScenarioSpec:
    origin = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
    where = f"scenario {scenario_id!r} ({origin})"
    if not scenario_id or any(ch.isspace() or ch in "[]*?/" for ch in scenario_id):
        raise ScenarioDefinitionError(f"{where}: the id must be non-empty, without spaces or []*?/")
    if not inspect.iscoroutinefunction(fn):
        raise ScenarioDefinitionError(f"{where}: must be an `async def fn(ctx)`")
    doc = inspect.getdoc(fn)
    if not doc:
        raise ScenarioDefinitionError(
            f"{where}: needs a docstring saying which user-visible failure it guards against"
        )
    try:
        kinds = tuple(ProviderKind.parse(k) for k in providers)
    except UnknownProviderKind as exc:
        raise ScenarioDefinitionError(f"{where}: {exc}") from None
    if not kinds:
        raise ScenarioDefinitionError(f"{where}: no providers; use some of {', '.join(ALL_KINDS)}")
    for claim in catches:
        if claim not in DEFECT_NAMES and not claim.startswith(("https://", "http://")):
            close = difflib.get_close_matches(claim, sorted(DEFECT_NAMES), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ScenarioDefinitionError(
                f"{where}: catches {claim!r}{hint}; name a reference-agent defect "
                "(reference_agent/defects.py) or an incident/issue URL"
            )
    return ScenarioSpec(
        id=scenario_id,
        title=title,
        incident=incident,
        fn=fn,
        doc=doc,
        tags=tuple(tags),
        providers=kinds,
        requires=frozenset(Capability(c) for c in requires),
        catches=tuple(catches),
        settings=settings,
        origin=origin,
    )


CATALOGUE = Registry()


def scenario(
    *,
    id: str,
    title: str,
    incident: str,
    tags: Sequence[str] = (),
    providers: Sequence[str] = ALL_KINDS,
    requires: Iterable[Capability] = frozenset(),
    catches: Sequence[str] = (),
    settings: SettingsFactory | None = None,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register a scenario in the global catalogue (see `Registry.scenario`)."""
    return CATALOGUE.scenario(
        id=id,
        title=title,
        incident=incident,
        tags=tags,
        providers=providers,
        requires=requires,
        catches=catches,
        settings=settings,
        variants=variants,
    )


def load_catalogue(package: str = CATALOGUE_PACKAGE) -> Registry:
    """Import every module of the scenarios package, which fills the global catalogue."""
    module = package
    try:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            module = info.name
            importlib.import_module(module)
    except ScenarioDefinitionError:
        raise
    except Exception as exc:
        raise CatalogueError(
            f"cannot load scenario module {module}: {type(exc).__name__}: {exc}"
        ) from exc
    return CATALOGUE
