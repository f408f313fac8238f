"""Hypothesis strategies for schedules: small ones for faults and requests, one for a whole
schedule that draws step after step from what the world allows at that moment.

    from harness.explore import schedules, full_menu
    @given(schedules(full_menu(target.capabilities), kinds=("openai-chat",)))

`World` is the strategies' model of the run: which turns are queued, at which point of
their route, held or released. A step is drawn only where a correct agent can take it (a
wait for a point the turn surely reaches; a follow-up while a turn is surely held), so
examples are rarely wasted. Choices shrink toward the simplest: fewer steps, plain
answers, the first session, the earliest point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st

from fake_providers.kinds import ProviderKind
from harness.explore.expect import Stop, route
from harness.explore.menu import Menu
from harness.explore.schedule import (
    HOLDS,
    Await,
    Cancel,
    Fault,
    FaultKind,
    Leave,
    Point,
    Profile,
    Prompt,
    Reach,
    Release,
    Request,
    Schedule,
    Step,
    ToolKind,
    Twice,
)

MAX_STEPS = 10
MAX_TURNS = 4
MAX_QUEUED = 2
STATUSES = (500, 429, 503, 529)
FAILED_ATTEMPTS = (0, 0, 0, 0, 0, 0, 1, 1, 2, 3)  # failures before a call's last attempt

# ---------------------------------------------------------------------- small strategies


def retry_afters() -> st.SearchStrategy[float | None]:
    """None (the agent's own back-off), short (1-3 tempo) or long (15-30 tempo)."""
    return st.one_of(
        st.none(),
        st.integers(1, 3).map(float),
        st.integers(15, 30).map(float),
    )


def positions(streaming: bool) -> st.SearchStrategy[int]:
    """Events written before a fault: 0 (a silent body) to a few text deltas in."""
    return st.integers(0, 10) if streaming else st.just(0)


def failures(menu: Menu, streaming: bool) -> st.SearchStrategy[Fault]:
    """A request that fails: an HTTP error, a FIN or RST mid-stream, an in-stream error."""
    at = positions(streaming)
    http = st.builds(
        Fault,
        kind=st.just(FaultKind.HTTP),
        status=st.sampled_from(STATUSES),
        retry_after=retry_afters(),
    )
    drops = st.builds(Fault, kind=st.sampled_from((FaultKind.RST, FaultKind.FIN)), at=at)
    stream_error = st.builds(Fault, kind=st.just(FaultKind.STREAM_ERROR), at=at)
    return st.one_of(http, drops, *([stream_error] if streaming else []))


def pacing(menu: Menu, streaming: bool) -> st.SearchStrategy[tuple[float, int]]:
    """(tempo per event, drip bytes/s): mostly unpaced."""
    if not menu.pacing or not streaming:
        return st.just((0.0, 0))
    return st.tuples(st.sampled_from((0.0, 0.25, 0.5)), st.sampled_from((0, 4000)))


def final_faults(menu: Menu, profile: Profile, streaming: bool) -> st.SearchStrategy[Fault]:
    """How the attempt that is not a failure goes: answers, or is held at a gate."""

    # With a stale timeout, the held-before-headers hold is left out: how long an agent
    # waits for headers (a connect timeout, often long) is its own business.
    kinds = (FaultKind.OK, FaultKind.HOLD, FaultKind.HANG)
    if profile is not Profile.STALE:
        kinds = (FaultKind.OK, FaultKind.HOLD, FaultKind.HOLD_HEADERS)

    def build(kind: FaultKind, at: int, paced: tuple[float, int]) -> Fault:
        pace, drip = paced
        match kind:
            case FaultKind.OK:
                return Fault(kind, pace=pace, drip=drip)
            case FaultKind.HOLD_HEADERS:
                return Fault(kind)
            case FaultKind.HOLD:
                return Fault(kind, at=at, pace=pace)
            case _:
                return Fault(kind, at=at)

    return st.builds(build, st.sampled_from(kinds), positions(streaming), pacing(menu, streaming))


def calls(menu: Menu, profile: Profile, tool: ToolKind | None) -> st.SearchStrategy[list[Request]]:
    """One logical model call: a few failed attempts (retried), then the attempt that
    answers (with a tool call or text) or is held."""
    streaming = profile is not Profile.JSON
    count = st.integers(0, 9).map(lambda n: FAILED_ATTEMPTS[n]) if menu.errors else st.just(0)
    failed = count.flatmap(
        lambda n: st.lists(failures(menu, streaming), min_size=n, max_size=n)
    ).map(lambda faults: [Request(f) for f in faults])
    last = final_faults(menu, profile, streaming).map(lambda f: Request(f, tool))
    return st.builds(lambda head, tail: [*head, tail], failed, last)


def tool_kinds(menu: Menu, profile: Profile) -> st.SearchStrategy[tuple[ToolKind, ...]]:
    """Most turns answer at once; some ask for one tool, a few for two. With a stale timeout
    only quick ones: how long an agent lets a tool run is its own business."""
    if not menu.tools:
        return st.just(())
    kinds = (ToolKind.QUICK,) if profile is Profile.STALE else tuple(ToolKind)
    count = st.integers(0, 5).map(lambda n: (0, 0, 0, 1, 1, 2)[n])
    return count.flatmap(lambda n: st.lists(st.sampled_from(kinds), min_size=n, max_size=n)).map(
        tuple
    )


@st.composite
def requests(draw: st.DrawFn, menu: Menu, profile: Profile) -> tuple[Request, ...]:
    """A turn's requests: one logical call per tool it asks for, then the answer."""
    planned: list[Request] = []
    for tool in (*draw(tool_kinds(menu, profile)), None):
        planned += draw(calls(menu, profile, tool))
    return tuple(planned)


# ---------------------------------------------------------------------------- the world


@dataclass
class _Turn:
    prompt: Prompt
    stops: tuple[Stop, ...]
    ends_completed: bool
    state: str = "queued"  # queued | front | ended
    pos: int = 0  # index of the next stop not yet passed
    released: bool = False
    answered: bool = False
    completed: bool = False
    memory_reached: bool = False
    stuck: bool = False  # it waits at a gate it was seen at, until released


@dataclass
class World:
    """The strategies' model of the run so far (see the module docstring)."""

    menu: Menu
    profile: Profile
    turns: dict[int, _Turn] = field(default_factory=dict)
    history: set[int] = field(default_factory=set)  # sessions with a completed turn
    used: set[int] = field(default_factory=lambda: {0})
    last: Step | None = None

    def live(self, session: int) -> list[_Turn]:
        return [
            t for t in self.turns.values() if t.prompt.session == session and t.state != "ended"
        ]

    def front(self, session: int) -> _Turn | None:
        live = self.live(session)
        return live[0] if live else None

    def reachable(self, turn: _Turn) -> list[Stop]:
        """The stops a wait may aim at: up to and including the next gate."""
        if turn.state != "front" or turn.released or turn.answered or turn.stuck:
            return []
        found: list[Stop] = []
        for stop in turn.stops[turn.pos :]:
            found.append(stop)
            if stop.blocking:
                break
        return found

    def held_ahead(self, turn: _Turn) -> bool:
        """The turn will stop at a gate before it can end (it is surely held)."""
        if turn.released or self.profile in (Profile.DEADLINE, Profile.STALE):
            return False
        return any(s.blocking for s in turn.stops[turn.pos :])

    def may_hold(self, turn: _Turn) -> bool:
        """Some request of the turn has a gate it may reach (even past a point the route
        cannot predict): only a release lets it end by itself then."""
        if turn.released or self.profile in (Profile.DEADLINE, Profile.STALE):
            return False
        return turn.prompt.hold_compaction or any(
            r.fault.kind in HOLDS or r.tool in (ToolKind.SLOW, ToolKind.TREE)
            for r in turn.prompt.requests
        )

    def sessions(self) -> list[int]:
        return [0, 1] if self.menu.sessions else [0]

    # ------------------------------------------------------------------ applying steps

    def apply(self, step: Step) -> None:
        self.last = step
        match step:
            case Prompt():
                self.used.add(step.session)
                state = "queued" if self.live(step.session) else "front"
                self.turns[step.turn] = self._model(step, state)
            case Reach():
                turn = self.turns[step.turn]
                if step.point is Point.MEMORY:
                    turn.memory_reached = True
                    return
                index = next(
                    i
                    for i, s in enumerate(turn.stops)
                    if i >= turn.pos and (s.point, s.request) == (step.point, step.request)
                )
                turn.pos = index + 1
                turn.answered = step.point is Point.ANSWERED
                turn.stuck = turn.stops[index].blocking
            case Cancel():
                hit = self.live(step.session)
                if step.names is not None:
                    hit = [t for t in hit if t.prompt.turn == step.names]
                for turn in hit:
                    self._end(turn, completed=False)
            case Leave():
                self._end(self.turns[step.turn], completed=False)
            case Release():
                self.turns[step.turn].released = True
                self.turns[step.turn].stuck = False
            case Await():
                turn = self.turns[step.turn]
                self._end(turn, completed=turn.ends_completed and not self.held_ahead(turn))

    def _model(self, prompt: Prompt, state: str) -> _Turn:
        planned = route(prompt, self.profile, retries=self.menu.retries)
        stops = planned.stops
        if prompt.hold_compaction:
            stops = (Stop(Point.COMPACTION, blocking=True), *stops)
        ends = planned.certain and "completed" in planned.outcomes
        ends = ends and (self.profile is Profile.STALE or "error" not in planned.outcomes)
        return _Turn(prompt, stops, ends, state)

    def _end(self, turn: _Turn, *, completed: bool) -> None:
        session = turn.prompt.session
        was_front = turn.state == "front"
        turn.state, turn.completed = "ended", completed
        if completed:
            self.history.add(session)
        if was_front and (nxt := self.front(session)) is not None:
            nxt.state = "front"


# ------------------------------------------------------------------------- the steps


type Option = tuple[int, st.SearchStrategy[Step]]


def _prompt_options(world: World, turn: int) -> list[Option]:
    if len(world.turns) >= MAX_TURNS:
        return []
    found: list[Option] = []
    for session in world.sessions():
        live = world.live(session)
        followup = bool(live)
        if followup:
            front = live[0]
            queued_ok = world.menu.followups and len(live) <= MAX_QUEUED
            if not queued_ok or not world.held_ahead(front):
                continue
        compaction = world.profile is Profile.COMPACTION and session in world.history
        memory = world.profile is Profile.MEMORY
        strategy = st.builds(
            Prompt,
            turn=st.just(turn),
            session=st.just(session),
            requests=requests(world.menu, world.profile),
            followup=st.just(followup),
            hold_compaction=st.booleans() if compaction and not followup else st.just(False),
            hold_memory=st.just(memory),  # the memory profile is there to hold it
        )
        weight = 4 if followup else (3 if session == 0 else 2)
        found.append((weight, strategy))
    return found


def _reach_options(world: World) -> list[Option]:
    found: list[Option] = []
    for turn in world.turns.values():
        stops = world.reachable(turn)
        if stops:
            aims = [Reach(turn.prompt.turn, s.point, s.request) for s in stops]
            found.append((5, st.sampled_from(aims)))
        if turn.completed and turn.prompt.hold_memory and not turn.memory_reached:
            found.append((4, st.just(Reach(turn.prompt.turn, Point.MEMORY))))
    return found


def _cancel_options(world: World) -> list[Option]:
    menu = world.menu
    sessions = sorted(world.used)
    busy = [s for s in sessions if world.live(s)]
    if not busy and not menu.idle:
        return []
    weight = 8 if isinstance(world.last, Reach) else 3
    twice = list(Twice) if menu.twice else [Twice.NO]

    def on(session: int) -> st.SearchStrategy[Step]:
        names: list[int | None] = [None]
        if menu.named:
            names += [n for n, t in sorted(world.turns.items()) if t.prompt.session == session]
        return st.builds(
            Cancel,
            session=st.just(session),
            names=st.sampled_from(names),
            twice=st.sampled_from(twice),
        )

    return [(weight, st.sampled_from(busy or sessions).flatmap(on))]


def _other_options(world: World) -> list[Option]:
    found: list[Option] = []
    fronts = [t for t in world.turns.values() if t.state == "front"]
    awaitable = [t.prompt.turn for t in fronts if not world.may_hold(t)]
    if awaitable:
        weight = 6 if isinstance(world.last, Release) else 3
        found.append((weight, st.sampled_from([Await(n) for n in awaitable])))
    releasable = [t.prompt.turn for t in fronts if not t.released and world.may_hold(t)]
    if releasable:
        found.append((2, st.sampled_from([Release(n) for n in releasable])))
    if world.menu.leave:
        streaming = [t.prompt.turn for t in fronts if t.pos > 0 and not t.answered]
        if streaming:
            found.append((1, st.sampled_from([Leave(n) for n in streaming])))
    return found


def next_step(world: World) -> st.SearchStrategy[Step]:
    """One step the world allows now, chosen by weight; shrinks toward a prompt."""
    turn = len(world.turns) + 1
    options = [
        *_prompt_options(world, turn),
        *_reach_options(world),
        *_cancel_options(world),
        *_other_options(world),
    ]
    total = sum(weight for weight, _ in options)
    if not total:
        return st.nothing()

    def pick(n: int) -> st.SearchStrategy[Step]:
        for weight, strategy in options:
            if n < weight:
                return strategy
            n -= weight
        raise AssertionError("unreachable: n < total")

    return st.integers(0, total - 1).flatmap(pick)


def _can_step(world: World) -> bool:
    turn = len(world.turns) + 1
    return bool(
        _prompt_options(world, turn)
        or _reach_options(world)
        or _cancel_options(world)
        or _other_options(world)
    )


@st.composite
def schedules(
    draw: st.DrawFn,
    menu: Menu,
    kinds: Sequence[ProviderKind | str] = (ProviderKind.OPENAI_CHAT,),
    *,
    max_steps: int = MAX_STEPS,
) -> Schedule:
    """A whole schedule: a profile, a provider kind, then steps the world allows."""
    profile = draw(st.sampled_from(menu.profiles))
    kind = ProviderKind.parse(draw(st.sampled_from(list(kinds))))
    world = World(menu, profile)
    steps: list[Step] = []
    while len(steps) < max_steps:
        if steps and draw(st.integers(0, 7)) == 0:
            break
        if not _can_step(world):
            break
        step = draw(next_step(world))
        world.apply(step)
        steps.append(step)
    return Schedule(profile, kind, tuple(steps))


def examples_of(menu: Menu, kinds: Sequence[str]) -> Callable[[], st.SearchStrategy[Schedule]]:
    """A zero-argument factory, for `st.deferred` or a fixture."""
    return lambda: schedules(menu, kinds)
