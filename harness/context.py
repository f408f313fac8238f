"""What a scenario gets: the provider, the target, tempo, seeded RNG, checks and stamped steps.

Every step a scenario awaits (`submit`, `cancel`, `release`, ...) is stamped on the timeline
and tracked: one called without `await` never runs, and the runner reports it by name
instead of letting the case hang until its timeout. Prompts are tagged (harness.prompts) so
the fault rules and checks can tell the turn's own model call from side traffic.
"""

from __future__ import annotations

import functools
import inspect
import random
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate

import anyio

from fake_providers import FakeProvider, FaultPlan, Gate, Match, Rule, parse_rule
from harness.checks import CheckFailed, Checks
from harness.faults import target_of
from harness.prompts import Prompt, new_tag
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
from harness.timing import NO_STALLS, StallMonitor

if TYPE_CHECKING:
    from harness.scenario import ScenarioSpec, Tempo

SETTLED = frozenset({"cancelled", "timeout"})


class NotApplicable(Exception):
    """The agent's behaviour shows the scenario's premise does not hold for it (for example,
    it does not retry a 500, so a cancel during its back-off cannot be staged)."""


class Tracker:
    """Remembers the coroutines of tracked steps so never-awaited ones can be named."""

    def __init__(self) -> None:
        self._started: list[tuple[str, Coroutine[Any, Any, Any]]] = []

    def add(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        self._started.append((name, coro))

    def unawaited(self) -> list[str]:
        """Names of steps called without `await` (they never ran); closes them."""
        names = []
        for name, coro in self._started:
            if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                names.append(name)
                coro.close()
        self._started.clear()
        return names


def step[**P, T](
    fn: Callable[Concatenate[ScenarioContext, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[ScenarioContext, P], Coroutine[Any, Any, T]]:
    """Track a context step's coroutine (see `Tracker`)."""

    @functools.wraps(fn)
    def start(
        self: ScenarioContext, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        coro = fn(self, *args, **kwargs)
        self.tracker.add(f"ctx.{fn.__name__}", coro)
        return coro

    return start


class ScenarioContext:
    """What a scenario gets: provider, target, tempo, seeded RNG, checks and stamped steps."""

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
        close_within: float | None = None,
        strict_side_traffic: bool = False,
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
        self.close_within = close_within  # the target's bound on closing after a cancel
        self.strict_side_traffic = strict_side_traffic
        self.stalls = stalls  # the harness's own stalls this case (harness/timing.py)
        # Marks the processes this case's tools start. Not from the seed: a process left by
        # an earlier run of the same seed must never count as this run's.
        self.case_tag = new_tag(random.SystemRandom())
        self.submits: list[int] = []  # monotonic ns right before each submit
        self.cancels: list[int] = []  # monotonic ns right before each cancel
        self.ended_at: dict[str, int] = {}  # turn id -> when its outcome reached the harness
        self.settled: dict[str, Transcript] = {}  # cancelled/timed-out turn -> state then
        self.prompts: list[Prompt] = []
        self.warnings: list[str] = []
        self.tracker = Tracker()
        self.checks = Checks(self)

    # ---------------------------------------------------------------------- basics

    @property
    def last_cancel_ns(self) -> int | None:
        return self.cancels[-1] if self.cancels else None

    def has(self, capability: Capability) -> bool:
        return capability in self.target.capabilities

    def rel(self, t_ns: int) -> str:
        """A stamp as the timeline shows it (`+412.3ms`)."""
        return self.timeline.rel(t_ns)

    def note(self, what: str) -> int:
        """Stamp a harness step of your own on the timeline."""
        return self.timeline.stamp(what)

    def warn(self, finding: str) -> None:
        """A finding about side traffic: a warning by default, a failure when asked for."""
        self.timeline.stamp(f"finding: {finding}")
        if self.strict_side_traffic:
            raise CheckFailed(f"{finding} (side traffic is judged strictly in this run)")
        self.warnings.append(finding)

    def prompt(self, said: str) -> Prompt:
        """A tagged prompt; the provider will know its main call from its side traffic."""
        prompt = Prompt(said, new_tag(self.rng))
        self.provider.expect_prompt(prompt.tag)
        self.prompts.append(prompt)
        return prompt

    def fault(
        self,
        fault: str | FaultPlan | Rule,
        *,
        on: Prompt | Match | None = None,
        times: int | None = None,
    ) -> int:
        """Add a fault rule to the provider and stamp it: a text spec, a typed plan, a rule.

        `on` says which requests it applies to (a Prompt: its main call; see harness.faults).
        """
        rule = parse_rule(fault) if isinstance(fault, str) else fault
        if isinstance(rule, FaultPlan):
            rule = Rule(rule)
        match = target_of(on)
        if match is not None or times is not None:
            rule = Rule(rule.plan, match or rule.match, times if times is not None else rule.times)
        rule_id = self.provider.add_fault(rule)
        self.timeline.stamp(f"fault rule #{rule_id}: {rule.spec()}")
        return rule_id

    def gate(self, name: str = "default") -> Gate:
        return self.provider.gate(name)

    # ----------------------------------------------------------------- tracked steps

    @step
    async def release(self, name: str = "default") -> None:
        """Open a gate and stamp it."""
        self.provider.gate(name).release()
        self.timeline.stamp(f"gate {name!r} released")

    @step
    async def settle(self, intervals: float, why: str = "") -> None:
        """Let `intervals` tempo pass: a watch window, never a way to order events."""
        self.timeline.stamp(f"settle {intervals:g} tempo" + (f" ({why})" if why else ""))
        await anyio.sleep(self.tempo(intervals))

    @step
    async def new_session(self) -> str:
        session = await self.target.new_session()
        self.timeline.stamp(f"new session {session}")
        return session

    @step
    async def submit(self, session: str, prompt: Prompt | str) -> Submission:
        """Send a prompt (a plain string is tagged first) and return once it is accepted."""
        if not isinstance(prompt, Prompt):
            prompt = self.prompt(prompt)
        self.submits.append(time.monotonic_ns())
        sub = await self.target.submit(session, prompt.text)
        stream = f", stream {sub.stream_id}" if sub.stream_id else ""
        self.timeline.stamp(
            f"submit {_short(prompt.said)} [{prompt.tag}] to {session}: "
            f"accepted turn {sub.turn_id}{stream}"
        )
        return sub

    @step
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

    @step
    async def outcome(self, submission: Submission, timeout: float | None = None) -> Outcome:
        """Wait for the turn to end (default: 100 tempo, at least 2 s).

        A turn that ends cancelled or timed out has its session's state read at once, with a
        transcript-capable target: that is the state no later change may touch (no ghost turn).
        """
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
        if out.stop_reason in SETTLED and self.has(Capability.TRANSCRIPT):
            self.settled[out.turn_id] = await self.target.transcript(submission.session_id)
        return out

    @step
    async def transcript(self, session: str) -> Transcript:
        snap = await self.target.transcript(session)
        self.timeline.stamp(
            f"transcript of {session}: {len(snap.entries)} entries, usage {snap.usage}"
        )
        return snap

    def unawaited(self) -> list[str]:
        """Steps and checks called without `await` (they never ran)."""
        return self.tracker.unawaited()


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")
