"""Where examples run: one fake provider and one started agent per (profile, kind), reused.

Starting an agent is the slow part of a case (a process for the ACP and HTTP doors), so the
host keeps them: each example gets a fresh session (or two) on an agent already running,
and the provider's rules, gates, prompt tags and ledger are reset in between. An agent is
restarted after any example that did not pass, and after one that left a request in
flight, so no state of one example can leak into the next. Everything runs on an event
loop of its own (a thread with a blocking portal), so hypothesis drives it synchronously.

As in the runner, the host measures its own stalls (a heartbeat on its loop, which the
provider and an in-process agent share, and the run-queue waits of agent processes): the
judge turns a timed verdict the harness could not have observed in time into
`Indeterminate` (harness/timing.py), and the search re-runs that example. Every random
choice follows the seed: the provider's jitter and the agent's own (`AgentSettings.seed`).
"""

from __future__ import annotations

import contextlib
import gc
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from enum import StrEnum

import anyio
import anyio.abc
from anyio.from_thread import BlockingPortal, start_blocking_portal

from fake_providers import ContentSpec, FakeProvider, FaultPlan, WaitTimeout
from fake_providers.kinds import ProviderKind
from harness.calibration import calibrate
from harness.checks import CheckFailed, wait_quietly
from harness.context import ScenarioContext
from harness.explore.judge import OWN_BACKOFF_S
from harness.explore.menu import Menu
from harness.explore.play import Player
from harness.explore.profiles import settings_for
from harness.explore.schedule import Schedule
from harness.explore.trace import PremiseNotMet, Trace
from harness.scenario import ScenarioSpec, Tempo
from harness.seeds import SeededResolver, case_seed
from harness.target import AgentBroke, AgentSettings, Capability, Endpoint, Target
from harness.timeline import Timeline
from harness.timing import ChildSampler, Indeterminate, StallLog, StallMonitor, heartbeat

STOP_LIMIT = 10.0
# An example's limit where the agent retries by its own policy: room for a few of its
# pauses (`judge.OWN_BACKOFF_S`) between failed requests.
OWN_BACKOFFS_S = 4 * OWN_BACKOFF_S
# An agent is restarted after this many examples: what it keeps of past sessions (events,
# transcripts) would otherwise make every later example a little slower.
AGENT_EXAMPLES = 100


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # a contract did not hold
    INDETERMINATE = "indeterminate"  # could not be observed in time: re-run, never a failure
    DISCARDED = "discarded"  # the agent legitimately took another path
    ERROR = "error"  # the agent crashed or the harness broke


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one run of a schedule went."""

    status: Status
    message: str = ""
    timeline: str = ""
    seconds: float = 0.0
    at_step: int = 0  # the step it failed at (1-based); 0: it did not fail in a step
    findings: tuple[str, ...] = ()  # noted, not failed: side traffic, user text written late


class HostError(RuntimeError):
    """The agent could not be started or stopped; the message says why."""


async def _explore_scenario(ctx: ScenarioContext) -> None:
    """A schedule explored by `cancel-harness explore` (never run from the catalogue)."""


SPEC = ScenarioSpec(
    id="explore",
    title="an explored schedule",
    incident="explore",
    fn=_explore_scenario,
    doc=_explore_scenario.__doc__ or "",
)


@dataclass
class _Agent:
    """A target started on the host's loop, its start..stop in one task."""

    target: Target
    endpoint: Endpoint
    settings: AgentSettings
    started: anyio.Event = field(default_factory=anyio.Event)
    finish: anyio.Event = field(default_factory=anyio.Event)
    stopped: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None
    examples: int = 0

    async def run(self) -> None:
        try:
            await self.target.start(self.endpoint, self.settings)
        except Exception as exc:
            self.error = exc
            self.started.set()
            self.stopped.set()
            return
        self.started.set()
        try:
            await self.finish.wait()
        finally:
            with contextlib.suppress(Exception):
                await self.target.stop()
            self.stopped.set()


class Host:
    """Runs schedules against agents made by `make_target` (see the module docstring)."""

    def __init__(
        self,
        make_target: Callable[[], Target],
        menu: Menu,
        *,
        tempo: Tempo,
        seed: int,
        tls: bool = False,
        calibrate_kinds: bool = True,
    ) -> None:
        self.make_target, self.menu, self.tempo, self.seed = make_target, menu, tempo, seed
        self.tls, self.calibrate_kinds = tls, calibrate_kinds
        self.capabilities = frozenset(make_target().capabilities)
        self.runs = 0
        self.starts = 0
        self._portal: BlockingPortal | None = None
        self._portal_cm: contextlib.AbstractContextManager[BlockingPortal] | None = None
        self._provider: FakeProvider | None = None
        self._provider_cm: contextlib.AbstractContextManager[FakeProvider] | None = None
        self._agents: dict[tuple[str, ProviderKind], _Agent] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = anyio.Event()
        self._nursery_done: Future[None] | None = None
        self._calibrated: dict[ProviderKind, object] = {}
        self.loop_stalls = StallLog("the explore loop")
        self.stalls = StallMonitor(())

    # ------------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Host:
        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        # Short answers for every request no rule of the example's picks (the next turns).
        self._provider = FakeProvider(tls=self.tls, default=FaultPlan(content=ContentSpec(8)))
        self._provider.resolver = SeededResolver(self.seed, self._provider.resolver.default)
        self.stalls = StallMonitor((self.loop_stalls, ChildSampler.acquire()))
        self._provider_cm = self._portal.wrap_async_context_manager(self._provider)
        self._provider_cm.__enter__()
        self._nursery_done, _ = self._portal.start_task(self._nursery)
        return self

    async def _nursery(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The task group the agents run in: it outlives every example."""
        self._closing = anyio.Event()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(heartbeat, self.loop_stalls)
            task_status.started()
            await self._closing.wait()
            tg.cancel_scope.cancel()

    def __exit__(self, *exc: object) -> None:
        portal = self._portal
        if portal is None:
            return
        with contextlib.suppress(Exception):
            portal.call(self._stop_all)
        portal.call(self._closing.set)
        if self._nursery_done is not None:
            with contextlib.suppress(Exception):
                self._nursery_done.result(timeout=STOP_LIMIT)
        if self._provider_cm is not None:
            with contextlib.suppress(Exception):
                self._provider_cm.__exit__(None, None, None)
        assert self._portal_cm is not None
        self._portal_cm.__exit__(None, None, None)
        self._portal = None
        ChildSampler.release()

    @property
    def provider(self) -> FakeProvider:
        assert self._provider is not None, "use the host inside `with`"
        return self._provider

    # -------------------------------------------------------------------------- running

    def run(self, schedule: Schedule, *, limit: float | None = None) -> Verdict:
        """Run one schedule to its verdict (synchronously)."""
        assert self._portal is not None, "use the host inside `with`"
        if limit is None:
            limit = max(30.0, self.tempo(1500))
            if self.menu.errors and Capability.RETRIES not in self.capabilities:
                limit = max(limit, OWN_BACKOFFS_S)  # the agent's own pauses (judge.py)
        self.runs += 1
        future = self._portal.start_task_soon(self._example, schedule, self.runs, limit)
        try:
            return future.result(timeout=limit + STOP_LIMIT + 10)
        except FutureTimeout:
            raise HostError(
                f"an example did not end within {limit + STOP_LIMIT:g} s and the agent could not "
                "be stopped (it ignores cancellation); the exploration was abandoned"
            ) from None

    async def _example(self, schedule: Schedule, nonce: int, limit: float) -> Verdict:
        began = time.perf_counter()
        provider = self.provider
        agent = await self._agent(schedule)
        provider.reset()
        known = self._calibrated.get(schedule.kind)
        provider.resolver.profile = getattr(known, "profile", None)
        timeline = Timeline()
        timeline.stamp(f"explore: {schedule.profile} on {schedule.kind}, agent {agent.target.name}")
        rng = random.Random(f"{self.seed}:{schedule.to_text()}:{nonce}")
        ctx = ScenarioContext(
            spec=SPEC,
            provider=provider,
            target=agent.target,
            endpoint=agent.endpoint,
            tempo=self.tempo,
            rng=rng,
            timeline=timeline,
            settings=agent.settings,
            close_within=getattr(agent.target, "close_within", None),
            stalls=self.stalls,
        )
        retries = self.menu.retries and Capability.RETRIES in self.capabilities
        trace = Trace(schedule.profile, provider, retries)
        status, message = Status.PASSED, ""
        player = Player(ctx, schedule, trace)
        with _no_gc_pauses():
            try:
                with anyio.fail_after(limit):
                    await player.play()
            except Exception as exc:
                status, message = classify(exc, limit)
        forgotten = ctx.unawaited()
        if forgotten and status is Status.PASSED:
            status, message = Status.ERROR, f"steps never awaited: {', '.join(forgotten)}"
        if status is not Status.PASSED:
            timeline.stamp(f"verdict: {status}")
        rendered = ""
        if status is not Status.PASSED:  # the agent's notes of this example only
            notes = [n for n in agent.target.notes() if n.t_ns >= timeline.start_ns]
            rendered = timeline.render(provider.ledger, notes, limit=60)
        clean = await self._quiesce()
        agent.examples += 1
        if status is not Status.PASSED or not clean or agent.examples >= AGENT_EXAMPLES:
            await self._retire(schedule)
        seconds = time.perf_counter() - began
        at_step = player.at if status is not Status.PASSED else 0
        return Verdict(status, message, rendered, seconds, at_step, tuple(ctx.warnings))

    async def _quiesce(self) -> bool:
        """Open every gate and let what is still in flight end; False when something hangs."""
        provider = self.provider
        provider.gates.clear()
        return bool(
            await wait_quietly(
                provider.ledger,
                lambda led: all(r.outcome for r in led.requests()),
                max(1.0, self.tempo(50)),
            )
        )

    # --------------------------------------------------------------------------- agents

    async def _agent(self, schedule: Schedule) -> _Agent:
        key = (schedule.profile.value, schedule.kind)
        agent = self._agents.get(key)
        if agent is not None and not agent.stopped.is_set():
            return agent
        if self.calibrate_kinds and schedule.kind not in self._calibrated:
            self._calibrated[schedule.kind] = await calibrate(
                self.make_target, schedule.kind, tls=self.tls
            )
        provider = self.provider
        ca_file = str(provider.tls.ca_path) if provider.tls is not None else None
        endpoint = Endpoint(schedule.kind, provider.url(schedule.kind), ca_file=ca_file)
        settings = settings_for(schedule.profile, self.tempo)
        settings = replace(
            settings, seed=case_seed(self.seed, f"{schedule.profile}:{schedule.kind}")
        )
        agent = _Agent(self.make_target(), endpoint, settings)
        assert self._tg is not None
        self._tg.start_soon(agent.run)
        startup = float(getattr(agent.target, "startup_timeout", 30.0))
        with anyio.move_on_after(startup + 5):
            await agent.started.wait()
        if not agent.started.is_set() or agent.error is not None:
            raise HostError(f"the agent did not start: {agent.error or 'no answer in time'}")
        self._agents[key] = agent
        self.starts += 1
        return agent

    async def _retire(self, schedule: Schedule) -> None:
        agent = self._agents.pop((schedule.profile.value, schedule.kind), None)
        if agent is not None:
            await _stop(agent)

    async def _stop_all(self) -> None:
        agents, self._agents = list(self._agents.values()), {}
        for agent in agents:
            await _stop(agent)


async def _stop(agent: _Agent) -> None:
    agent.finish.set()
    with anyio.move_on_after(STOP_LIMIT):
        await agent.stopped.wait()


def classify(exc: BaseException, limit: float) -> tuple[Status, str]:
    """A verdict from what the player raised (inside a task group: the most telling one)."""
    found = _leaves(exc)
    for kinds, status in _ORDER:
        hit = next((e for e in found if isinstance(e, kinds)), None)
        if hit is None:
            continue
        if isinstance(hit, TimeoutError):
            return status, f"the example did not finish within {limit:g} s"
        if isinstance(hit, AgentBroke):
            return status, f"the agent failed on its own: {hit}"
        if status is Status.ERROR:
            return status, f"{type(hit).__name__}: {hit}"
        return status, str(hit)
    return Status.ERROR, repr(exc)


_ORDER: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Status], ...] = (
    (CheckFailed, Status.FAILED),
    ((Indeterminate, WaitTimeout), Status.INDETERMINATE),
    (TimeoutError, Status.ERROR),  # every wait is bounded: the example limit is ours
    (AgentBroke, Status.ERROR),
    (PremiseNotMet, Status.DISCARDED),
    (Exception, Status.ERROR),
)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


@contextlib.contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """No cyclic GC pass during an example (a pause reads as a slow close); one between."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
