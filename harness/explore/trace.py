"""What happened in one example, from the harness's side: turns, gates, cancels, outcomes.

The player writes it as it drives the agent; the judge reads it with the ledger. Nothing in
it is the agent's word except the outcomes and acks the target reported, and every verdict
drawn from those is checked against the socket ledger too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fake_providers import FakeProvider, RequestRecord
from fake_providers.roles import Role
from harness.explore.expect import Route, route
from harness.explore.schedule import HOLDS, Profile
from harness.explore.schedule import Prompt as PlannedPrompt
from harness.explore.tool_holds import ToolHolds
from harness.processes import marked_processes
from harness.prompts import Prompt
from harness.target import CancelAck, Outcome, Submission

STOPPED = frozenset({"cancelled", "timeout"})


class PremiseNotMet(Exception):
    """The agent legitimately took another path (it did not retry, it did not compact), so
    the rest of the schedule is moot for it: the example is discarded, never judged."""


@dataclass
class TurnTrace:
    """One turn: its plan, its prompt, and what the harness did to it and saw of it."""

    plan: PlannedPrompt
    prompt: Prompt
    route: Route
    tool_tag: str  # the mark its tools' processes carry
    sub: Submission | None = None
    gates: dict[int, str] = field(default_factory=dict)  # request number -> gate
    compaction_gate: str = ""
    tool_holds: dict[int, str] = field(default_factory=dict)  # request number -> tool hold
    hold_paths: dict[int, Path] = field(default_factory=dict)
    memory_gate: str = ""
    released: bool = False
    outcome: Outcome | None = None
    targeted_ns: int | None = None  # the first cancel aimed at it while it ran
    quiet_ns: int | None = None  # it was held or backing off then: nothing may start after
    ack_ns: int | None = None  # when that cancel was answered
    expect_cancelled: bool = False  # it could not have ended by itself when the cancel came
    cancelled_queued: bool = False  # it was still queued then: the model is never called
    left: bool = False
    backoff_until_ns: int | None = None
    memory_reached: bool = False

    @property
    def turn(self) -> int:
        return self.plan.turn

    @property
    def session(self) -> int:
        return self.plan.session

    @property
    def reported(self) -> bool:
        return self.outcome is not None

    def all_gates(self) -> list[str]:
        named = [*self.gates.values(), self.compaction_gate]
        return [g for g in named if g]


@dataclass(frozen=True, slots=True)
class CancelRecord:
    session: int
    t_ns: int
    named: int | None
    targets: tuple[int, ...]
    pinned: tuple[int, ...]
    acks: tuple[CancelAck, ...]


@dataclass
class Trace:
    """The whole example."""

    profile: Profile
    provider: FakeProvider
    retries: bool  # the agent retries as configured (Capability.RETRIES)
    holds: ToolHolds = field(default_factory=ToolHolds)
    turns: dict[int, TurnTrace] = field(default_factory=dict)
    sessions: dict[int, str] = field(default_factory=dict)  # index -> session id
    latest: dict[int, TurnTrace] = field(default_factory=dict)  # session -> last reported
    cancels: list[CancelRecord] = field(default_factory=list)

    def add(self, plan: PlannedPrompt, prompt: Prompt, tool_tag: str) -> TurnTrace:
        planned = route(plan, self.profile, retries=self.retries)
        turn = TurnTrace(plan, prompt, planned, tool_tag)
        self.turns[plan.turn] = turn
        return turn

    def of_session(self, session: int) -> Iterator[TurnTrace]:
        return (t for t in self.turns.values() if t.session == session)

    def live(self, session: int) -> list[TurnTrace]:
        return [t for t in self.of_session(session) if t.sub is not None and not t.reported]

    def main_requests(self, turn: TurnTrace) -> list[RequestRecord]:
        tag = turn.prompt.tag
        return [
            r for r in self.provider.ledger.requests() if r.role is Role.MAIN and r.prompt == tag
        ]

    def in_flight(self, turn: TurnTrace) -> list[RequestRecord]:
        """The turn's requests still under way: its main calls, and its compaction call."""
        found = [r for r in self.main_requests(turn) if r.outcome is None]
        if turn.compaction_gate and self.provider.gate(turn.compaction_gate).arrivals:
            found += [
                r
                for r in self.provider.ledger.requests()
                if r.role is Role.SIDE
                and r.outcome is None
                and r not in found
                and any(t.prompt.tag.encode() in r.body for t in self.of_session(turn.session))
            ]
        return found

    def tool_running(self, turn: TurnTrace) -> list[int]:
        """Live processes of the turn's tools (found by the mark in their environment)."""
        if not turn.tool_holds:
            return []
        return marked_processes(turn.tool_tag)

    def held_now(self, turn: TurnTrace) -> bool:
        """One of its gates holds a request now (each gate serves exactly one request), or
        one of its held tools runs."""
        if turn.released:
            return False
        if self.tool_running(turn):
            return True
        reached = [
            g
            for g in turn.all_gates()
            if self.provider.gate(g).arrivals and not self.provider.gate(g).released
        ]
        return bool(reached) and bool(self.in_flight(turn))

    def pinned(self, turn: TurnTrace) -> bool:
        """It cannot end by itself before the harness acts: held at a closed gate, surely
        getting to one, or queued behind a turn that is (never with the agent's own clocks),
        and no cancel has been aimed at it yet."""
        if turn.reported or turn.sub is None or turn.targeted_ns is not None:
            return False  # ended, or already on its way out: a second cancel may find nothing
        if self.profile in (Profile.DEADLINE, Profile.STALE):
            return False
        if self.held_now(turn):
            return True
        if not turn.released and turn.route.first_hold is not None:
            return True
        ahead = [t for t in self.live(turn.session) if t.turn < turn.turn]
        return bool(ahead) and turn.plan.followup and self.pinned(ahead[0])


def holds_ahead(plan: PlannedPrompt) -> bool:
    return any(r.fault.kind in HOLDS for r in plan.requests)
