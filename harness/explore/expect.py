"""What a turn's plan implies, before anything runs: its route and its natural outcomes.

Pure functions of a `Prompt` and the profile, shared by the strategies (which draw only
steps whose points a correct agent reaches) and the player (which judges outcomes). A
turn's *route* is the sequence of observable points it passes if nobody stops it; its
*natural outcomes* are how a correct agent may end it then. Where the contract leaves the
agent a choice (is an in-stream error worth a retry?) the route stops and both outcomes
are allowed: explore judges contracts, never one agent's habits.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.explore.schedule import (
    HOLDS,
    OPEN_ENDED,
    STALE_TEMPO,
    FaultKind,
    Point,
    Profile,
    Prompt,
    ToolKind,
)

LONG_BACKOFF = 10  # tempo: a back-off this long is a window a cancel can be aimed at
BACKOFF_BASE, BACKOFF_MAX = 1, 40  # tempo: the retry settings every profile gives the agent
RETRIES = 2  # retries every profile but `stale` allows


def max_retries(profile: Profile) -> int:
    return 0 if profile is Profile.STALE else RETRIES


@dataclass(frozen=True, slots=True)
class Stop:
    """A point on a turn's route: `blocking` ones stay until released (a gate)."""

    point: Point
    request: int = 0
    blocking: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """The points a turn passes if nobody stops it, and how it may end then."""

    stops: tuple[Stop, ...]
    outcomes: frozenset[str]
    certain: bool  # False: the route stops early at a choice the contract leaves open
    budget: float  # tempo within which it ends by itself, once released

    @property
    def first_hold(self) -> int | None:
        """Index in `stops` of the first gate, if the turn surely gets there."""
        for i, stop in enumerate(self.stops):
            if stop.blocking:
                return i
        return None


def route(prompt: Prompt, profile: Profile, *, retries: bool) -> Route:
    """Walk the requests as a correct agent would (`retries`: it retries as configured)."""
    stops: list[Stop] = []
    budget = 20.0
    failures = 0
    allowed = max_retries(profile)
    for n, request in enumerate(prompt.requests, start=1):
        fault = request.fault
        budget += fault.pace * max(fault.at, 12) + (5 if fault.drip else 0)
        if fault.kind in HOLDS:
            stops.append(Stop(Point.HELD, n, blocking=True))
        elif fault.kind is FaultKind.HANG:
            stops.append(Stop(Point.HELD, n))
            return _ended(stops, {"error"}, profile, budget + STALE_TEMPO * 3)
        elif fault.fails:
            if fault.kind in OPEN_ENDED or not retries:
                return _ended(stops, {"completed", "error"}, profile, budget, certain=False)
            failures += 1
            if failures > allowed:
                return _ended(stops, {"error"}, profile, budget)
            wait = fault.retry_after if fault.retry_after is not None else BACKOFF_MAX / 4
            budget += min(wait, BACKOFF_MAX)
            if fault.retry_after is not None and fault.retry_after >= LONG_BACKOFF:
                stops.append(Stop(Point.BACKOFF, n))
            continue
        failures = 0
        if request.tool is None:
            stops.append(Stop(Point.ANSWERED, n))
            return _ended(stops, {"completed"}, profile, budget)
        if request.tool is ToolKind.BROKEN:  # the agent may report it to the model, or fail
            return _ended(stops, {"completed", "error"}, profile, budget, certain=False)
        if request.tool is not ToolKind.QUICK:
            stops.append(Stop(Point.TOOL, n, blocking=True))  # a tool hold
    # Requests beyond the plan get a plain answer.
    stops.append(Stop(Point.ANSWERED, len(prompt.requests) + 1))
    return _ended(stops, {"completed"}, profile, budget)


def _ended(
    stops: list[Stop], outcomes: set[str], profile: Profile, budget: float, *, certain: bool = True
) -> Route:
    if profile is Profile.DEADLINE:
        outcomes.add("timeout")  # the deadline may always come first
    if profile is Profile.STALE:
        outcomes.add("error")  # a held or slow stream may go stale first
    return Route(tuple(stops), frozenset(outcomes), certain, budget)


def surely_held(prompt: Prompt, profile: Profile, *, retries: bool) -> bool:
    """The turn cannot end by itself before a gate holds it (unless its gates are opened).

    Never in the deadline and stale profiles: there the agent's own clock may end it.
    """
    if profile in (Profile.DEADLINE, Profile.STALE):
        return False
    return route(prompt, profile, retries=retries).first_hold is not None
