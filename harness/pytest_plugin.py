"""pytest plugin: gate a project's CI with plain `pytest`.

Fixtures `fake_provider` (a started FakeProvider; anyio tests), `cancel_harness_target`
(a factory for the `--cancel-harness-target` agent) and `cancel_harness_explorer` (explore's
schedule search as a hypothesis property, docs/explore.md). The catalogue as tests, either

    from harness.pytest_plugin import catalogue_cases

    @pytest.mark.parametrize("case", catalogue_cases())
    def test_cancellation(case): case.run()

or `pytest --cancel-harness`, which adds every case as a test item. A project plugs in its own
agent or catalogue with the hooks `pytest_cancel_harness_make_target(spec, defects)` and
`pytest_cancel_harness_catalogue(config)` in its conftest. Unused, the plugin changes nothing.

A failure's replay line is a pytest command (the test's node id and the seed, tempo, target
and defects it ran with), so it replays with the same target, whatever built it: a
`target_factory`, a conftest hook or `--cancel-harness-target`. A case the harness could not
judge (indeterminate after its re-runs) is skipped with the reason; one whose agent did not
start fails.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from fake_providers import FakeProvider
from harness.cases import Case, CaseResult, RunConfig, Status, new_seed, plan_cases
from harness.guard import run_guarded
from harness.runner import Runner
from harness.scenario import ALL_KINDS, DEFAULT_TEMPO, Registry, load_catalogue
from harness.target import Target

_CONFIGS: list[pytest.Config] = []  # the active pytest run(s); pytester nests them
_PROCESS_SEED = new_seed()


class CancelHarnessHooks:
    """Hooks a conftest may implement to supply its own target or catalogue."""

    @pytest.hookspec(firstresult=True)
    def pytest_cancel_harness_make_target(self, spec: str, defects: tuple[str, ...]) -> Any:
        """Return a fresh, unstarted Target for `spec`, or None to use the built-in kinds."""

    @pytest.hookspec(firstresult=True)
    def pytest_cancel_harness_catalogue(self, config: pytest.Config) -> Any:
        """Return the Registry `--cancel-harness` collects, or None for the scenarios package."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(CancelHarnessHooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cancel-harness", "cancel-harness: cancellation scenarios")
    group.addoption(
        "--cancel-harness",
        action="store_true",
        default=False,
        help="also collect the cancel-harness scenario catalogue as test items",
    )
    group.addoption("--cancel-harness-target", default="reference", metavar="SPEC")
    group.addoption("--cancel-harness-provider", action="append", default=[], metavar="KIND")
    group.addoption("--cancel-harness-select", action="append", default=[], metavar="SELECTOR")
    group.addoption("--cancel-harness-defect", action="append", default=[], metavar="NAME")
    group.addoption("--cancel-harness-seed", type=int, default=None, metavar="N")
    group.addoption("--cancel-harness-tempo", type=float, default=DEFAULT_TEMPO, metavar="SECONDS")


def pytest_configure(config: pytest.Config) -> None:
    _CONFIGS.append(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    if config in _CONFIGS:
        _CONFIGS.remove(config)


def _option(name: str, default: Any = None) -> Any:
    return _CONFIGS[-1].getoption(name, default) if _CONFIGS else default


def _defects(config: pytest.Config) -> tuple[str, ...]:
    names = config.getoption("cancel_harness_defect", [])
    if not names:
        return ()
    from reference_agent.defects import parse_defect

    return tuple(parse_defect(n).value for n in names)


def _make_target(spec: str, defects: Sequence[str]) -> Target:
    """A target from a conftest hook, else from the built-in kinds."""
    if _CONFIGS:
        hooked = _CONFIGS[-1].hook.pytest_cancel_harness_make_target(
            spec=spec, defects=tuple(defects)
        )
        if hooked is not None:
            made: Target = hooked
            return made
    from harness.targets import make_target

    return make_target(spec, defects)


@dataclass(frozen=True, slots=True)
class HarnessCase:
    """One catalogue case as a pytest parameter; `run()` passes, fails or skips the test."""

    case: Case
    target: str | None = None
    target_factory: Callable[[], Target] | None = None
    defects: tuple[str, ...] | None = None
    seed: int | None = None
    tempo: float | None = None

    @property
    def name(self) -> str:
        return self.case.name

    def config(self) -> RunConfig:
        """Explicit arguments first, then the --cancel-harness-* options, then defaults."""
        seed = self.seed if self.seed is not None else _option("cancel_harness_seed")
        defects = self.defects
        if defects is None:
            defects = _defects(_CONFIGS[-1]) if _CONFIGS else ()
        return RunConfig(
            seed=seed if seed is not None else _PROCESS_SEED,
            target=self.target or _option("cancel_harness_target", "reference"),
            defects=defects,
            tempo=self.tempo or _option("cancel_harness_tempo", DEFAULT_TEMPO),
        )

    def runner(self) -> Runner:
        config = self.config()
        factory = self.target_factory or (lambda: _make_target(config.target, config.defects))
        return Runner(config, factory, replay=self.replay)

    def replay(self, case: Case, config: RunConfig) -> str:
        """The command that runs this case again with everything that decides its verdict."""
        current = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
        if current.startswith("cancel-harness::") or (not current and self.target_factory):
            args = ["pytest", "--cancel-harness", "--cancel-harness-select", case.spec.id]
            args += ["--cancel-harness-provider", case.kind, "-k", case.name]
        elif current:
            args = ["pytest", current]
        else:
            return config.replay(case.spec.id, case.kind)
        args += ["--cancel-harness-seed", str(config.seed)]
        args += ["--cancel-harness-tempo", f"{config.tempo:g}"]
        if config.target != "reference" and self.target_factory is None:
            args += ["--cancel-harness-target", config.target]
        for defect in config.defects:
            args += ["--cancel-harness-defect", defect]
        return shlex.join(args)

    async def arun(self) -> CaseResult:
        """Run the case and return its result (no pytest outcome); for async tests."""
        return await self.runner().run_case(self.case)

    def run(self) -> CaseResult:
        """Run the case; a failure fails the test with message, timeline and replay command."""
        return judge(run_guarded(self.runner(), [self.case]).results[0])


def judge(result: CaseResult) -> CaseResult:
    """Turn a case result into the pytest outcome a user expects."""
    if result.status is Status.NOT_APPLICABLE:
        pytest.skip(f"not applicable: {result.message}")
    if result.status is Status.INDETERMINATE:
        pytest.skip(
            f"indeterminate after {len(result.attempts)} run(s), the harness itself was "
            f"stalled: {result.message}\nreplay: {result.replay}"
        )
    if result.status is not Status.PASSED:
        kind = {Status.FAILED: "failed", Status.DID_NOT_START: "did not start"}.get(
            result.status, "error"
        )
        pytest.fail(
            f"{result.name} {kind}: {result.message}\n{result.timeline}\nreplay: {result.replay}",
            pytrace=False,
        )
    return result


def catalogue_cases(
    selectors: Sequence[str] = (),
    *,
    providers: Iterable[str] = (),
    registry: Registry | None = None,
    target: str | None = None,
    target_factory: Callable[[], Target] | None = None,
    defects: Sequence[str] | None = None,
    seed: int | None = None,
    tempo: float | None = None,
) -> list[Any]:
    """The catalogue (or `registry`) as `pytest.param`s with ids like `esc.mid[anthropic]`."""
    specs = (registry if registry is not None else load_catalogue()).select(selectors)
    frozen = tuple(defects) if defects is not None else None
    return [
        pytest.param(HarnessCase(case, target, target_factory, frozen, seed, tempo), id=case.name)
        for case in plan_cases(specs, list(providers))
    ]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
async def fake_provider() -> AsyncIterator[FakeProvider]:
    """A started fake provider on loopback (use in `@pytest.mark.anyio` tests)."""
    async with FakeProvider() as provider:
        yield provider


@pytest.fixture(scope="session")
def cancel_harness_explorer(request: pytest.FixtureRequest) -> Iterator[Any]:
    """An `ExploreSession` (harness/explore/session.py) over the `--cancel-harness-target`
    agent: draw `.schedules()` with hypothesis and `.check()` each; see docs/explore.md."""
    from harness.explore.session import open_session

    config = request.config
    spec, defects = config.getoption("cancel_harness_target"), _defects(config)
    seed = config.getoption("cancel_harness_seed")
    with open_session(
        lambda: _make_target(spec, defects),
        label=spec,
        defects=defects,
        selectors=config.getoption("cancel_harness_select"),
        providers=config.getoption("cancel_harness_provider"),
        tempo=config.getoption("cancel_harness_tempo"),
        seed=seed if seed is not None else _PROCESS_SEED,
    ) as session:
        yield session


@pytest.fixture
def cancel_harness_target(request: pytest.FixtureRequest) -> Callable[..., Target]:
    """A factory: `cancel_harness_target(defects=())` -> a fresh, unstarted target."""
    spec = request.config.getoption("cancel_harness_target")

    def make(defects: Sequence[str] = ()) -> Target:
        return _make_target(spec, defects)

    return make


# ------------------------------------------------------------------ --cancel-harness


class CatalogueItem(pytest.Item):
    """One catalogue case collected by `--cancel-harness`."""

    def __init__(self, *, harness_case: HarnessCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.harness_case = harness_case

    def runtest(self) -> None:
        self.harness_case.run()

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "cancel-harness", None, f"cancel-harness {self.name}"


class CatalogueCollector(pytest.Collector):
    """The catalogue as a collector node, so ids read `cancel-harness::esc.mid[anthropic]`."""

    def collect(self) -> list[pytest.Item]:
        config = self.config
        providers = config.getoption("cancel_harness_provider")
        unknown = [k for k in providers if k not in ALL_KINDS]
        if unknown:
            raise ValueError(f"unknown provider '{unknown[0]}'; use one of {', '.join(ALL_KINDS)}")
        # A bad target spec or defect name fails collection once, not every case.
        _make_target(config.getoption("cancel_harness_target"), _defects(config))
        registry = config.hook.pytest_cancel_harness_catalogue(config=config)
        params = catalogue_cases(
            config.getoption("cancel_harness_select"),
            providers=providers,
            registry=registry if registry is not None else load_catalogue(),
        )
        items: list[pytest.Item] = [
            CatalogueItem.from_parent(self, name=p.id, harness_case=p.values[0]) for p in params
        ]
        return items


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection sees the items
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not config.getoption("cancel_harness", False):
        return
    try:
        collector = CatalogueCollector.from_parent(
            session, name="cancel-harness", nodeid="cancel-harness"
        )
        items.extend(collector.collect())
    except (ValueError, RuntimeError) as exc:  # bad selector, provider, catalogue module
        raise pytest.UsageError(f"cancel-harness: {exc}") from None


def pytest_report_header(config: pytest.Config) -> str | None:
    if not config.getoption("cancel_harness", False):
        return None
    seed = config.getoption("cancel_harness_seed")
    return (
        f"cancel-harness: target {config.getoption('cancel_harness_target')}, "
        f"seed {seed if seed is not None else _PROCESS_SEED}, "
        f"tempo {config.getoption('cancel_harness_tempo'):g}"
    )
