"""The strategies' model of the run: which turns are queued, where each is on its route,
held or released. A step is drawn only where this model says a correct agent can take it
(a wait for a point the turn surely reaches; a follow-up while a turn is surely held), so
examples are rarely wasted on an impossible premise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fake_providers.kinds import ProviderKind
from harness.explore.expect import Stop, route
from harness.explore.menu import Menu
from harness.explore.schedule import (
    HOLDS,
    Await,
    Cancel,
    Leave,
    Point,
    Profile,
    Prompt,
    Reach,
    Release,
    Step,
    ToolKind,
)

CLOCKS = (Profile.DEADLINE, Profile.STALE)  # the agent's own clock may end a held turn


@dataclass
class ModelTurn:
    """One turn as the model sees it: its route's stops and how far along them it is."""

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
    kind: ProviderKind = ProviderKind.OPENAI_CHAT
    turns: dict[int, ModelTurn] = field(default_factory=dict)
    history: set[int] = field(default_factory=set)  # sessions with a completed turn
    used: set[int] = field(default_factory=lambda: {0})
    last: Step | None = None

    def live(self, session: int) -> list[ModelTurn]:
        return [
            t for t in self.turns.values() if t.prompt.session == session and t.state != "ended"
        ]

    def front(self, session: int) -> ModelTurn | None:
        live = self.live(session)
        return live[0] if live else None

    def reachable(self, turn: ModelTurn) -> list[Stop]:
        """The stops a wait may aim at: up to and including the next gate."""
        if turn.state != "front" or turn.released or turn.answered or turn.stuck:
            return []
        found: list[Stop] = []
        for stop in turn.stops[turn.pos :]:
            found.append(stop)
            if stop.blocking:
                break
        return found

    def held_ahead(self, turn: ModelTurn) -> bool:
        """The turn will stop at a gate before it can end (it is surely held)."""
        if turn.released or self.profile in CLOCKS:
            return False
        return any(s.blocking for s in turn.stops[turn.pos :])

    def may_hold(self, turn: ModelTurn) -> bool:
        """Some request of the turn has a gate it may reach (even past a point the route
        cannot predict): only a release lets it end by itself then."""
        if turn.released or self.profile in CLOCKS:
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

    def _model(self, prompt: Prompt, state: str) -> ModelTurn:
        planned = route(prompt, self.profile, retries=self.menu.retries)
        stops = planned.stops
        if prompt.hold_compaction:
            stops = (Stop(Point.COMPACTION, blocking=True), *stops)
        ends = planned.certain and "completed" in planned.outcomes
        ends = ends and (self.profile is Profile.STALE or "error" not in planned.outcomes)
        return ModelTurn(prompt, stops, ends, state)

    def _end(self, turn: ModelTurn, *, completed: bool) -> None:
        session = turn.prompt.session
        was_front = turn.state == "front"
        turn.state, turn.completed = "ended", completed
        if completed:
            self.history.add(session)
        if was_front and (nxt := self.front(session)) is not None:
            nxt.state = "front"
