"""A found schedule as a scenario function a user can paste into their catalogue.

The code is what a scenario author would write with `ctx`, `harness.faults` and
`harness.steps`: the same faults on the same requests, the same waits and cancels, and
after them the checks explore made at that point (the connection closes, the answer says
`cancelled`, other turns run on, every turn ends as it may, no ghost turn, no request
after the cancel, one terminal event per stream, no orphan, the next turn completes).
The retry-contract checks (storms, `retry-after`) stay with explore itself.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from dataclasses import dataclass, field

from harness.explore.expect import route
from harness.explore.scenario_frame import TEMPLATE, fault_code, imports, requires, settings
from harness.explore.schedule import (
    HOLDS,
    Await,
    Cancel,
    FaultKind,
    Leave,
    Point,
    Profile,
    Prompt,
    Reach,
    Release,
    Schedule,
    Twice,
    session_name,
)

CLOCKS = (Profile.DEADLINE, Profile.STALE)  # profiles where the agent's own clock may end turns


@dataclass
class _Turn:
    plan: Prompt
    reported: bool = False
    targeted: bool = False
    expect_cancelled: bool = False
    stuck: bool = False  # seen held at the gate of one of its main requests
    backing_off: bool = False
    released: bool = False
    queued_cancel: bool = False
    left: bool = False
    cancel_var: str = ""  # the cancel after which it must send nothing
    memory: bool = False
    in_tool: bool = False  # seen running a tool
    gates: list[str] = field(default_factory=list)


class _Writer:
    """Emits the body, keeping the same model of the turns as the player's judge."""

    def __init__(self, schedule: Schedule, retries: bool) -> None:
        self.schedule, self.retries = schedule, retries
        self.lines: list[str] = []
        self.turns: dict[int, _Turn] = {}
        self.sessions: set[int] = set()

    def out(self, *lines: str) -> None:
        self.lines.extend(f"    {line}" for line in lines)

    def live(self, session: int) -> list[_Turn]:
        return [t for t in self.turns.values() if t.plan.session == session and not t.reported]

    def pinned(self, turn: _Turn) -> bool:
        if turn.reported or turn.targeted or self.schedule.profile in CLOCKS:
            return False
        planned = route(turn.plan, self.schedule.profile, retries=self.retries)
        if not turn.released and planned.first_hold is not None:
            return True
        ahead = [t for t in self.live(turn.plan.session) if t.plan.turn < turn.plan.turn]
        return bool(ahead) and turn.plan.followup and self.pinned(ahead[0])

    def allowed(self, turn: _Turn) -> list[str]:
        planned = route(turn.plan, self.schedule.profile, retries=self.retries)
        allowed = {"cancelled"} if turn.expect_cancelled else set(planned.outcomes)
        if turn.targeted:
            allowed.add("cancelled")
        if self.schedule.profile is Profile.DEADLINE:
            allowed.add("timeout")
        return sorted(allowed)

    # --------------------------------------------------------------------------- steps

    def session(self, index: int) -> str:
        name = session_name(index).lower()
        if index not in self.sessions:
            self.sessions.add(index)
            self.out(f"{name} = await ctx.new_session()")
        return name

    def outcome(self, turn: _Turn) -> None:
        if turn.reported:
            return
        n, turn.reported = turn.plan.turn, True
        self.out(f"out{n} = await ctx.outcome(turn{n})")
        if not turn.left:
            self.out(f"ctx.checks.stop_reason(out{n}, {self.allowed(turn)!r})")

    def ghost(self, session: int) -> None:
        ended = [t for t in self.turns.values() if t.plan.session == session and t.reported]
        if not ended or ended[-1].queued_cancel:
            return
        n, gates = ended[-1].plan.turn, [g for t in ended for g in t.gates]
        name = session_name(session).lower()
        self.out(
            f"if out{n}.turn_id in ctx.settled:  # it stopped: no ghost turn may follow",
            f"    settled = ctx.settled[out{n}.turn_id]",
            "    await ctx.checks.no_ghost_turn(",
            f"        {name}, settled, out{n}, release={gates!r}, settle=ctx.tempo(3)",
            "    )",
        )

    def prompt(self, step: Prompt) -> None:
        n, name = step.turn, self.session(step.session)
        if not step.followup:
            for turn in self.live(step.session):
                self.outcome(turn)
            self.ghost(step.session)
        turn = self.turns[n] = _Turn(step)
        self.out(f'p{n} = ctx.prompt("Question {n}.")')
        for number, request in enumerate(step.requests, start=1):
            gate = f"t{n}r{number}" if request.fault.kind in HOLDS else ""
            if gate:
                turn.gates.append(gate)
            long = any(
                isinstance(s, Reach) and s.turn == n and s.request == number
                for s in self.schedule.steps
            )
            plan = fault_code(request, gate, long)
            self.out("ctx.fault(", f"    {plan},", f"    on=p{n},", "    times=1,", ")")
        self.out(f"ctx.fault(says(tokens=8), on=p{n})")
        earlier = [t for t in self.turns if t < n and self.turns[t].plan.session == step.session]
        if step.hold_compaction and earlier:
            turn.gates.append(f"t{n}compaction")
            hold = f'hold(before=2, gate="t{n}compaction")'
            self.out(f"ctx.fault({hold}, on=side_of(p{max(earlier)}), times=1)")
        if step.hold_memory:
            self.out(f'ctx.fault(hold(before=2, gate="t{n}memory"), on=side_of(p{n}), times=1)')
        self.out(f"turn{n} = await ctx.submit({name}, p{n})")

    def reach(self, step: Reach) -> None:
        n, turn = step.turn, self.turns[step.turn]
        match step.point:
            case Point.HELD if turn.plan.requests[step.request - 1].fault.kind is FaultKind.HANG:
                pass  # silent until the agent gives up: nothing to wait for
            case Point.HELD:
                self.out(f'await reach(ctx, turn{n}, "t{n}r{step.request}")')
                turn.stuck = True
            case Point.COMPACTION:
                self.out(f'await reach(ctx, turn{n}, "t{n}compaction")')
            case Point.BACKOFF:
                self.out(
                    "await ctx.provider.ledger.wait_for(",
                    f"    lambda _: sum(1 for r in main_requests(ctx, p{n}) if r.outcome)",
                    f"    >= {step.request},",
                    "    wait_limit(ctx),",
                    ")",
                    'await ctx.settle(2, "the agent backs off")',
                )
                turn.backing_off = True
            case Point.TOOL:
                self.out("await tool_started(ctx, wait_limit(ctx))")
                turn.in_tool = True
            case Point.ANSWERED:
                self.out(
                    "await ctx.provider.ledger.wait_for(",
                    f"    lambda _: len(main_requests(ctx, p{n})) >= {step.request}",
                    f"    and main_requests(ctx, p{n})[-1].outcome is not None,",
                    "    wait_limit(ctx),",
                    ")",
                )
            case Point.MEMORY:
                self.out(f'await ctx.gate("t{n}memory").wait_reached(timeout=wait_limit(ctx))')
                turn.memory = True

    def cancel(self, step: Cancel, index: int) -> None:
        name = self.session(step.session)
        live = self.live(step.session)
        named = self.turns.get(step.names) if step.names is not None else None
        stream = f", turn{named.plan.turn}.stream_id" if named is not None else ""
        targets = [named] if named is not None and named in live else ([] if named else live)
        pinned = [t for t in targets if self.pinned(t)]
        front_held = bool(live) and self.pinned(live[0])
        others = [t for t in self.turns.values() if t not in targets and t.stuck and self.pinned(t)]
        at = f"cancel_at_{index}"
        if step.twice is Twice.CONCURRENT:
            self.out(f"{at} = time.monotonic_ns()", "async with anyio.create_task_group() as tg:")
            self.out(*[f"    tg.start_soon(ctx.cancel, {name}{stream})"] * 2)
        else:
            ack = "ack" if pinned or not targets else "_"
            self.out(f"{ack}, {at} = await ctx.cancel({name}{stream})")
            if pinned:
                self.out("if not ack.cancelled:", '    raise CheckFailed("the cancel was lost")')
            elif not targets:
                self.out(
                    "if ack.cancelled:", '    raise CheckFailed("nothing to cancel, yet true")'
                )
        for turn in targets:
            if not turn.targeted and (turn.stuck or turn.backing_off):
                turn.cancel_var = at
            turn.targeted = True
            turn.expect_cancelled |= turn in pinned
            turn.queued_cancel |= turn in pinned and turn is not live[0] and front_held
            if turn.in_tool and not turn.released:
                self.out("await no_live_tools(ctx, ctx.tempo(50))")
            if turn.stuck and not turn.released:
                n = turn.plan.turn
                self.out(
                    "await ctx.checks.connection_closed_within(",
                    f"    ctx.tempo(2), after_ns={at}, connection_id=connection_of(ctx, p{n})",
                    ")",
                )
        for turn in others:
            n = turn.plan.turn
            self.out(
                'await ctx.settle(2, "a cancel aimed elsewhere would show now")',
                f"if not ctx.provider.ledger.connection(connection_of(ctx, p{n})).open:",
                f'    raise CheckFailed("expected t{n} to run on: the cancel was not for it")',
            )
        if step.twice is Twice.SEQUENTIAL:
            self.out(f"await ctx.cancel({name}{stream})")

    def release(self, turn: _Turn) -> None:
        self.out(*(f'await ctx.release("{gate}")' for gate in turn.gates))
        turn.released = True

    # ----------------------------------------------------------------------------- end

    def end(self) -> None:
        self.out("# the end: the provider goes on, and every turn ends as it may")
        for turn in self.turns.values():
            if turn.memory:
                n = turn.plan.turn
                self.out(f'await ctx.checks.background_survived(p{n}, release=["t{n}memory"])')
        for turn in self.turns.values():
            if not turn.released:
                self.release(turn)
        for turn in self.turns.values():
            self.outcome(turn)
        for session in sorted(self.sessions):
            self.ghost(session)
        self.quiet()
        self.streams()
        if any(r.tool for t in self.turns.values() for r in t.plan.requests):
            self.out("await no_live_tools(ctx, ctx.tempo(50))")
        for session in sorted(self.sessions):
            name = session_name(session).lower()
            if self.schedule.profile in CLOCKS:
                self.out(
                    f'nxt = await ctx.outcome(await ctx.submit({name}, "Say hello."))',
                    'ctx.checks.stop_reason(nxt, {"completed", "timeout", "error"})',
                )
            else:
                self.out(f"await ctx.checks.next_turn_completes({name})")

    def quiet(self) -> None:
        watched = [t for t in self.turns.values() if t.cancel_var]
        if watched:
            longest = max(r.fault.retry_after or 0 for t in watched for r in t.plan.requests)
            self.out(f'await ctx.settle({5 + longest:g}, "a retry after the cancel comes now")')
        for turn in watched:
            n = turn.plan.turn
            self.out(
                f"late = [r for r in main_requests(ctx, p{n}) if r.started_ns > {turn.cancel_var}]",
                f'if out{n}.stop_reason != "completed" and late:',
                f'    raise CheckFailed(f"t{n} called the model after its cancel: {{late}}")',
            )
        for turn in self.turns.values():
            if turn.queued_cancel:
                n = turn.plan.turn
                self.out(
                    f'if out{n}.stop_reason == "cancelled" and main_requests(ctx, p{n}):',
                    f'    raise CheckFailed("t{n}, cancelled while queued, was sent")',
                )

    def streams(self) -> None:
        shown = [t.plan.turn for t in self.turns.values() if not t.left]
        if not shown:
            return
        pairs = ", ".join(f"(turn{n}, out{n})" for n in shown)
        self.out(
            "if ctx.has(Capability.STREAM_EVENTS):  # one terminal event per stream",
            f"    for turn, out in [{pairs}]:",
            "        log = await ctx.target.stream_log(turn, ctx.tempo(10))",
            "        kinds = [e.kind for e in log.terminals]",
            "        if kinds != [out.stop_reason] or not log.closed:",
            '            raise CheckFailed(f"{turn.stream_id} ended with {kinds}")',
        )


def scenario_source(schedule: Schedule, finding: str, *, retries: bool = True) -> str:
    """The schedule as a ready-to-paste scenario function (format it with `ruff format`)."""
    digest = hashlib.sha256(schedule.to_text().encode()).hexdigest()[:8]
    writer = _Writer(schedule, retries)
    for index, (step, said) in enumerate(zip(schedule.steps, schedule.describe(), strict=True)):
        for line in textwrap.wrap(f"{index + 1}. {said}", 90, subsequent_indent="   "):
            writer.out(f"# {line}")
        match step:
            case Prompt():
                writer.prompt(step)
            case Reach():
                writer.reach(step)
            case Cancel():
                writer.cancel(step, index + 1)
            case Leave():
                writer.out(f"await leave(ctx, turn{step.turn})")
                writer.turns[step.turn].left = writer.turns[step.turn].targeted = True
            case Release():
                writer.release(writer.turns[step.turn])
            case Await():
                writer.outcome(writer.turns[step.turn])
    writer.end()
    _drop_unused_cancel_times(writer.lines)
    head = finding.splitlines()[0] if finding else "a schedule explore found"
    doc = textwrap.wrap(head.replace('"', "'").replace("\\", "/"), 88)
    body = "\n".join(writer.lines)
    return TEMPLATE.format(
        digest=digest,
        kind=schedule.kind.value,
        requires=", ".join(sorted(requires(schedule))),
        settings=settings(schedule.profile),
        doc="\n    ".join(doc),
        imports=imports(body),
        body=body,
    )


def _drop_unused_cancel_times(lines: list[str]) -> None:
    """A cancel's time is kept only where a later check measures from it."""
    body = "\n".join(lines)
    for i, line in enumerate(lines):
        for at in re.findall(r"cancel_at_\d+", line):
            if body.count(at) > 1:
                continue
            if line.strip() == f"{at} = time.monotonic_ns()":
                lines[i] = ""
            elif line.strip().startswith("_, "):
                lines[i] = line.replace(f"_, {at} = ", "")
            else:
                lines[i] = line.replace(f", {at} = ", ", _ = ")
    lines[:] = [line for line in lines if line]
