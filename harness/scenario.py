"""Scenarios: small async functions with metadata, a registry, and the context they run in.

    @scenario(id="esc.mid-stream", title="Esc mid-stream closes the socket", incident="I1",
              requires=frozenset({Capability.CANCEL}), catches=("provider-ignores-cancel",))
    async def esc_mid_stream(ctx: ScenarioContext) -> None:
        '''The user presses Esc and the model keeps writing into a channel nobody reads.'''

The docstring is the user-visible failure the scenario guards against; it is required.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import pkgutil
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from fake_providers import FakeProvider, Gate
from fake_providers.kinds import ProviderKind, UnknownProviderKind
from harness.checks import CheckFailed, Checks
from harness.target import (
    AgentSettings,
    CancelAck,
    Capability,
    Endpoint,
    Outcome,
    Submission,
    Target,
    Transcript,
)
from harness.timeline import Timeline
from harness.timing import NO_STALLS, StallMonitor  # runner branch: ctx.stalls

DEFAULT_TEMPO = 0.02
# The kinds a scenario runs on unless it says otherwise.
# TODO(gemini): the reference agent learns Gemini next; then this becomes every kind.
ALL_KINDS: tuple[ProviderKind, ...] = tuple(k for k in ProviderKind if k is not ProviderKind.GEMINI)
CATALOGUE_PACKAGE = "scenarios"


@dataclass(frozen=True, slots=True)
class Tempo:
    """The one interval every wait is a multiple of: `tempo(5)` is five intervals, in seconds."""

    interval: float = DEFAULT_TEMPO

    def __call__(self, n: float) -> float:
        return n * self.interval


type ScenarioFn = Callable[[ScenarioContext], Awaitable[None]]
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
    fn: ScenarioFn = field(repr=False)
    doc: str = ""
    tags: tuple[str, ...] = ()
    providers: tuple[ProviderKind, ...] = ALL_KINDS
    requires: frozenset[Capability] = frozenset()
    catches: tuple[str, ...] = ()
    settings: SettingsFactory | None = field(default=None, repr=False)
    origin: str = ""  # module.qualname, to tell a re-import from a duplicate id

    def agent_settings(self, tempo: Tempo) -> AgentSettings:
        return self.settings(tempo) if self.settings is not None else AgentSettings()


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
    ) -> Callable[[ScenarioFn], ScenarioFn]:
        """Register the decorated `async def fn(ctx)` here; the function is returned unchanged."""

        def register(fn: ScenarioFn) -> ScenarioFn:
            self.add(_spec(fn, id, title, incident, tags, providers, requires, catches, settings))
            return fn

        return register

    def select(self, selectors: Sequence[str] = ()) -> list[ScenarioSpec]:
        """Scenarios matching any selector (all when none), in catalogue order.

        A selector is an exact id, a glob on ids (`esc.*`), an incident (`I1`) or `tag:NAME`.
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
    if not scenario_id or any(ch.isspace() or ch in "[]*?" for ch in scenario_id):
        raise ScenarioDefinitionError(f"{where}: the id must be non-empty, without spaces or []*?")
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


class ScenarioContext:
    """What a scenario gets: provider, target, tempo, seeded RNG, checks and stamped helpers."""

    def __init__(
        self,
        *,
        spec: ScenarioSpec,
        provider: FakeProvider,
        target: Target,
        endpoint: Endpoint,
        tempo: Tempo,
        rng: random.Random,
        timeline: Timeline,
        settings: AgentSettings,
        stalls: StallMonitor = NO_STALLS,
    ) -> None:
        self.spec = spec
        self.provider = provider
        self.target = target
        self.endpoint = endpoint
        self.kind = endpoint.kind
        self.tempo = tempo
        self.rng = rng
        self.timeline = timeline
        self.settings = settings
        self.stalls = stalls  # the harness's own stalls this case (harness/timing.py)
        self.submits: list[int] = []  # monotonic ns right before each submit
        self.cancels: list[int] = []  # monotonic ns right before each cancel
        self.ended_at: dict[str, int] = {}  # turn id -> when its outcome reached the harness
        self.checks = Checks(self)

    @property
    def last_cancel_ns(self) -> int | None:
        return self.cancels[-1] if self.cancels else None

    def rel(self, t_ns: int) -> str:
        """A stamp as the timeline shows it (`+412.3ms`)."""
        return self.timeline.rel(t_ns)

    def note(self, what: str) -> int:
        """Stamp a harness step of your own on the timeline."""
        return self.timeline.stamp(what)

    def fault(self, spec: str) -> int:
        """Add a fault rule to the provider (see fake_providers/README.md) and stamp it."""
        rule_id = self.provider.add_fault(spec)
        self.timeline.stamp(f"fault rule #{rule_id}: {spec}")
        return rule_id

    def gate(self, name: str = "default") -> Gate:
        return self.provider.gate(name)

    async def release(self, name: str = "default") -> None:
        """Open a gate and stamp it."""
        self.provider.gate(name).release()
        self.timeline.stamp(f"gate {name!r} released")

    async def new_session(self) -> str:
        session = await self.target.new_session()
        self.timeline.stamp(f"new session {session}")
        return session

    async def submit(self, session: str, prompt: str) -> Submission:
        self.submits.append(time.monotonic_ns())
        sub = await self.target.submit(session, prompt)
        stream = f", stream {sub.stream_id}" if sub.stream_id else ""
        self.timeline.stamp(
            f"submit {_short(prompt)} to {session}: accepted turn {sub.turn_id}{stream}"
        )
        return sub

    async def cancel(self, session: str, stream_id: str | None = None) -> tuple[CancelAck, int]:
        """Cancel, returning the agent's answer and the instant right before the cancel call."""
        named = f" stream {stream_id}" if stream_id else ""
        t_ns = time.monotonic_ns()
        self.cancels.append(t_ns)
        self.timeline.stamp(f"cancel {session}{named}", t_ns)
        ack = await self.target.cancel(session, stream_id)
        turn = f" turn {ack.turn_id}" if ack.turn_id else ""
        self.timeline.stamp(f"cancel answered: cancelled={str(ack.cancelled).lower()}{turn}")
        return ack, t_ns

    async def outcome(self, submission: Submission, timeout: float | None = None) -> Outcome:
        """Wait for the turn to end (default: 100 tempo, at least 2 s)."""
        limit = max(2.0, self.tempo(100)) if timeout is None else timeout
        asked = time.monotonic_ns()
        try:
            out = await self.target.wait_outcome(submission, limit)
        except TimeoutError:
            now = time.monotonic_ns()
            self.timeline.stamp(f"turn {submission.turn_id} still running after {limit:g} s")
            raise CheckFailed(
                f"expected turn {submission.turn_id} to end within {limit:g} s of "
                f"{self.rel(asked)}; it was still running at {self.rel(now)}"
            ) from None
        error = f" ({_short(out.error)})" if out.error else ""
        self.ended_at[out.turn_id] = self.timeline.stamp(
            f"turn {out.turn_id} ended: {out.stop_reason}{error}"
        )
        return out

    async def transcript(self, session: str) -> Transcript:
        snap = await self.target.transcript(session)
        self.timeline.stamp(
            f"transcript of {session}: {len(snap.entries)} entries, usage {snap.usage}"
        )
        return snap


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")
