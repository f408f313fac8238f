"""Hypothesis strategies for schedules: small ones for faults, requests and tools, and one
for a whole schedule, drawn step after step from what the world allows at that moment.

    from harness.explore.menu import full_menu
    from harness.explore.strategies import schedules

    @given(schedules(full_menu(target.capabilities), kinds=("openai-chat",)))

Every choice is an index into a fixed tuple, drawn from a cached integer strategy, so a
draw builds no strategy objects (that kept generation to a fraction of a run) and shrinks
toward the first entry: fewer steps, plain answers, the first session, the earliest point.
Weights say what tends to come next: after a wait, most likely a cancel.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from hypothesis import strategies as st

from fake_providers.kinds import ProviderKind
from harness.explore.menu import Menu
from harness.explore.schedule import (
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
from harness.explore.world import ModelTurn, World

MAX_STEPS = 10
MAX_TURNS = 4
MAX_QUEUED = 2
STATUSES = (500, 429, 503, 529)
FAILED_ATTEMPTS = (0, 0, 0, 0, 0, 0, 1, 1, 2, 3)  # failures before a call's last attempt
TOOL_COUNTS = (0, 0, 0, 1, 1, 2)  # tools a turn asks for
# Wire formats whose tool-call arguments are a string, so they can be broken JSON (and
# Anthropic's when streamed, as `partial_json`); Gemini's are always an object.
BROKEN_ARGUMENTS = frozenset(
    {ProviderKind.OPENAI_CHAT, ProviderKind.OPENAI_RESPONSES, ProviderKind.AZURE}
)
RETRY_AFTERS: tuple[float | None, ...] = (None, 1.0, 2.0, 3.0, 15.0, 20.0, 25.0, 30.0)
QUOTAS = ("requests", "tokens")
PACES = ((0.0, 0), (0.25, 0), (0.5, 0), (0.0, 4000), (0.25, 4000))  # tempo/event, drip B/s
EVENT_POINTS = 11  # a fault mid-stream comes after 0 to 10 events

type Draw = Callable[[st.SearchStrategy[Any]], Any]


@functools.cache
def _below(n: int) -> st.SearchStrategy[int]:
    return st.integers(0, n - 1)


def choose[T](draw: Draw, options: Sequence[T]) -> T:
    """One of `options`, shrinking toward the first."""
    return options[draw(_below(len(options)))] if len(options) > 1 else options[0]


# ------------------------------------------------------------------------- small draws


def failure(draw: Draw, *, streaming: bool) -> Fault:
    """A request that fails: an HTTP error (with a short, long or no retry-after), a used-up
    quota (429 with rate-limit headers), a FIN or RST mid-stream, an in-stream error, or a
    request too long for the context window."""
    kinds = (FaultKind.HTTP, FaultKind.RST, FaultKind.FIN, FaultKind.QUOTA, FaultKind.CONTEXT)
    kind = choose(draw, (*kinds, FaultKind.STREAM_ERROR) if streaming else kinds)
    match kind:
        case FaultKind.HTTP:
            status, after = choose(draw, STATUSES), choose(draw, RETRY_AFTERS)
            return Fault(kind, status=status, retry_after=after)
        case FaultKind.QUOTA:
            reset = choose(draw, RETRY_AFTERS[1:])
            return Fault(kind, status=429, retry_after=reset, quota=choose(draw, QUOTAS))
        case FaultKind.CONTEXT:
            return Fault(kind, status=400)
        case _:
            return Fault(kind, at=draw(_below(EVENT_POINTS)) if streaming else 0)


def last_attempt(draw: Draw, menu: Menu, profile: Profile) -> Fault:
    """The attempt that is not a failure: it answers (paced or dripped, maybe), or is held
    at a gate. Under a stale timeout the agent gives up on a silent stream, so the provider
    may hang instead; it never holds before headers there (how long an agent waits for
    headers is its own business)."""
    streaming = profile is not Profile.JSON
    kind = choose(draw, _last_kinds(profile))
    at = draw(_below(EVENT_POINTS)) if streaming and kind in (FaultKind.HOLD, FaultKind.HANG) else 0
    pace, drip = (
        choose(draw, PACES)
        if menu.pacing and streaming and kind is not FaultKind.HANG
        else (0.0, 0)
    )
    if kind is FaultKind.HOLD_HEADERS:
        return Fault(kind)
    return Fault(kind, at=at, pace=pace, drip=drip if kind is FaultKind.OK else 0)


def _last_kinds(profile: Profile) -> tuple[FaultKind, ...]:
    if profile is Profile.STALE:
        return (FaultKind.OK, FaultKind.HOLD, FaultKind.HANG)
    return (FaultKind.OK, FaultKind.HOLD, FaultKind.HOLD_HEADERS)


def _ats(streaming: bool) -> range:
    """The event counts a fault mid-stream may come after (none without a stream)."""
    return range(EVENT_POINTS) if streaming else range(1)


def tool_kinds(profile: Profile, kind: ProviderKind) -> tuple[ToolKind, ...]:
    """Quick tools always; held ones unless a stale timeout is set (how long an agent lets a
    tool run is its own business); broken arguments where the wire can carry them."""
    found = [ToolKind.QUICK]
    if profile is not Profile.STALE:
        found += [ToolKind.SLOW, ToolKind.TREE]
    streamed = profile is not Profile.JSON
    if kind in BROKEN_ARGUMENTS or (kind is ProviderKind.ANTHROPIC and streamed):
        found.append(ToolKind.BROKEN)
    return tuple(found)


def requests(
    draw: Draw, menu: Menu, profile: Profile, kind: ProviderKind = ProviderKind.OPENAI_CHAT
) -> tuple[Request, ...]:
    """A turn's requests: for each tool it asks for, then for its answer, a few failed
    attempts (retried) and the attempt that answers or is held."""
    tools: list[ToolKind | None] = []
    if menu.tools:
        kinds = tool_kinds(profile, kind)
        tools = [choose(draw, kinds) for _ in range(choose(draw, TOOL_COUNTS))]
    planned: list[Request] = []
    for tool in (*tools, None):
        if menu.errors:
            streaming = profile is not Profile.JSON
            for _ in range(choose(draw, FAILED_ATTEMPTS)):
                planned.append(Request(failure(draw, streaming=streaming)))
        last = last_attempt(draw, menu, profile)
        if tool is ToolKind.BROKEN and last.kind in (FaultKind.HOLD, FaultKind.HANG):
            # Held only before the arguments go out: once they are sent an agent may fail
            # the turn at once, so "held, it cannot end by itself" would not hold.
            last = replace(last, at=0)
        planned.append(Request(last, tool))
    return tuple(planned)


# ----------------------------------------------------------------------------- steps

type Move = Step | tuple[Step, ...]  # one step, or a few drawn as one (see `_hand_off`)
type Option = tuple[int, Callable[[Draw], Move]]


def _one_of(steps: Sequence[Step]) -> Callable[[Draw], Move]:
    return lambda draw: choose(draw, steps)


def _prompt(
    world: World, session: int, *, followup: bool, compaction: bool
) -> Callable[[Draw], Step]:
    turn = len(world.turns) + 1
    memory = world.profile is Profile.MEMORY  # the memory profile is there to hold it

    def prompt(draw: Draw) -> Step:
        planned = requests(draw, world.menu, world.profile, world.kind)
        held = compaction and not followup and choose(draw, (False, True))
        return Prompt(turn, session, planned, followup, held, memory)

    return prompt


# The rules for what may be drawn now. The option builders below and `allowed` (which
# checks a schedule the step shrinker edited) both use these, so they cannot drift apart.


def _may_prompt(world: World, session: int) -> bool:
    """A turn is left, and the session is idle, or busy with a front that is surely held
    and room in its queue (a follow-up)."""
    if len(world.turns) >= MAX_TURNS:
        return False
    live = world.live(session)
    return not live or (
        world.menu.followups and len(live) <= MAX_QUEUED and world.held_ahead(live[0])
    )


def _may_hold_compaction(world: World, session: int) -> bool:
    return world.profile is Profile.COMPACTION and session in world.history


def _route_aims(world: World, turn: ModelTurn) -> list[Reach]:
    return [Reach(turn.prompt.turn, s.point, s.request) for s in world.reachable(turn)]


def _memory_aim(turn: ModelTurn) -> Reach | None:
    if turn.completed and turn.prompt.hold_memory and not turn.memory_reached:
        return Reach(turn.prompt.turn, Point.MEMORY)
    return None


def _cancel_sessions(world: World) -> list[int]:
    """The sessions a cancel may be drawn for: the busy ones, else (idle cancels) any."""
    sessions = sorted(world.used)
    busy = [s for s in sessions if world.live(s)]
    return busy or (sessions if world.menu.idle else [])


def _cancel_names(world: World, session: int) -> list[int | None]:
    """No stream, or (stream-id targets) any turn of the session, stale ones included."""
    names: list[int | None] = [None]
    if world.menu.named:
        names += [n for n, t in sorted(world.turns.items()) if t.prompt.session == session]
    return names


def _twice(menu: Menu) -> tuple[Twice, ...]:
    return tuple(Twice) if menu.twice else (Twice.NO,)


def _fronts(world: World) -> list[ModelTurn]:
    return [t for t in world.turns.values() if t.state == "front"]


def _may_leave(world: World, turn: ModelTurn) -> bool:
    return world.menu.leave and turn.pos > 0 and not turn.answered


def _prompt_options(world: World) -> list[Option]:
    found: list[Option] = []
    for session in world.sessions():
        if not _may_prompt(world, session):
            continue
        live = world.live(session)
        compaction = _may_hold_compaction(world, session)
        make = _prompt(world, session, followup=bool(live), compaction=compaction)
        found.append((4 if live else (3 if session == 0 else 2), make))
    return found


def _reach_options(world: World) -> list[Option]:
    found: list[Option] = []
    for turn in world.turns.values():
        aims: list[Step] = [*_route_aims(world, turn)]
        if aims:
            found.append((5, _one_of(aims)))
        memory = _memory_aim(turn)
        if memory is not None:
            found.append((4, _one_of([memory])))
    return found


def _cancel_options(world: World) -> list[Option]:
    sessions = _cancel_sessions(world)
    if not sessions:
        return []
    twice = _twice(world.menu)

    def cancel(draw: Draw) -> Step:
        session = choose(draw, sessions)
        return Cancel(session, choose(draw, _cancel_names(world, session)), choose(draw, twice))

    return [(8 if _aimed(world) else 3, cancel)]


def _aimed(world: World) -> bool:
    """The last step reached an observable point a cancel can be aimed at: a point of a
    turn's route, or the end of a turn with another queued behind it (the hand-off window,
    where the session is between two runs)."""
    last = world.last
    if isinstance(last, Reach):
        return True
    if isinstance(last, Await):
        return bool(world.live(world.turns[last.turn].prompt.session))
    return False


def _hand_off_options(world: World, room: int) -> list[Option]:
    """A cancel at the hand-off: the front turn of a session is let go (if it is held) and
    waited for, and the cancel comes the moment it has ended, while a turn is queued behind
    it. The session is then between two runs for a few turns of the agent's loop; an agent
    that hands its queue over late looks idle there and loses the cancel.

    Those steps are drawn one by one too, but five in a row (prompt, follow-up, release,
    wait, cancel) came out of about 1 schedule in 1,000, so a search of 1,000 examples
    missed that window at 4 seeds of 5. Drawn as one move, once a turn is queued behind a
    held one, it is one choice away. The cancel names no stream, or the queued turn's:
    naming the turn that just ended is a stale-name cancel, drawn step by step elsewhere."""
    if not world.menu.followups:
        return []
    found: list[Option] = []
    for session in sorted(world.used):
        live = world.live(session)
        if len(live) < 2:
            continue
        front, behind = live[0], live[1]
        lead: tuple[Step, ...] = (Release(front.prompt.turn),) if world.may_hold(front) else ()
        if len(lead) + 2 > room:
            continue
        names = (None, behind.prompt.turn) if world.menu.named else (None,)
        then = (*lead, Await(front.prompt.turn))
        move = _then_cancel(world, then, session, names)
        found.append((4 if world.held_ahead(behind) else 1, move))
    return found


def _background_options(world: World, room: int) -> list[Option]:
    """A cancel during background work: a turn is let go (if it is held) and waited for,
    its memory extraction is waited for (the call held at the provider), and the session
    gets a cancel at once: an idle one, or one of the turn that runs there next.
    Background work the user did not start must outlive it.

    Step by step that is up to five draws in a row, in the memory profile only, and a
    search of 1,000 examples found it after 52 to 384 examples at 4 seeds of 5 and missed
    it at the fifth. Drawn as one move it is one choice away once a turn is running."""
    found: list[Option] = []
    for turn in world.turns.values():
        if not turn.prompt.hold_memory or turn.memory_reached:
            continue
        lead: tuple[Step, ...] = ()
        if turn.state == "front" and turn.ends_completed:
            release = (Release(turn.prompt.turn),) if world.may_hold(turn) else ()
            lead = (*release, Await(turn.prompt.turn))
        elif not turn.completed:
            continue
        if len(lead) + 2 > room:
            continue
        after = copy.deepcopy(world)
        for step in lead:
            after.apply(step)
        aim = _memory_aim(after.turns[turn.prompt.turn])
        session = turn.prompt.session
        if aim is None or session not in _cancel_sessions(after):
            continue
        names = tuple(_cancel_names(after, session))
        found.append((1, _then_cancel(world, (*lead, aim), session, names)))
    return found


def _then_cancel(
    world: World, then: tuple[Step, ...], session: int, names: tuple[int | None, ...]
) -> Callable[[Draw], Move]:
    """The steps `then`, and a cancel of `session` at once (naming one of `names`)."""
    twice = _twice(world.menu)

    def move(draw: Draw) -> Move:
        return (*then, Cancel(session, choose(draw, names), choose(draw, twice)))

    return move


def _other_options(world: World) -> list[Option]:
    found: list[Option] = []
    fronts = _fronts(world)
    awaitable: list[Step] = [Await(t.prompt.turn) for t in fronts if not world.may_hold(t)]
    if awaitable:
        weight = 6 if isinstance(world.last, Release) else 3
        found.append((weight, _one_of(awaitable)))
    releasable: list[Step] = [Release(t.prompt.turn) for t in fronts if world.may_hold(t)]
    if releasable:
        found.append((2, _one_of(releasable)))
    streaming: list[Step] = [Leave(t.prompt.turn) for t in fronts if _may_leave(world, t)]
    if streaming:
        found.append((1, _one_of(streaming)))
    return found


def options(world: World) -> list[Option]:
    """The steps that may come next, by weight; the first (a prompt) is what shrinking
    tends to."""
    return [
        *_prompt_options(world),
        *_reach_options(world),
        *_cancel_options(world),
        *_other_options(world),
    ]


MOVE_ODDS = (False, False, False, True)  # a window move, where one is possible


def next_move(draw: Draw, world: World, room: int = MAX_STEPS) -> Move | None:
    """What the world allows now: a window move (a quarter of the time where one is
    possible: a hand-off to a queued turn, or background work to cancel over), else one
    step chosen by weight. None: nothing is possible.

    Whether to make a window move is its own choice, drawn before the step's, and only
    where one is possible: so a shrinker that drops an earlier step (a third follow-up,
    say) finds the same choice at the same place, and "no" is what it shrinks toward."""
    moves = [*_hand_off_options(world, room), *_background_options(world, room)]
    take: bool = bool(moves) and choose(draw, MOVE_ODDS)
    if take:
        return _weighted(draw, moves)
    return _weighted(draw, options(world))


def _weighted(draw: Draw, found: list[Option]) -> Move | None:
    total = sum(weight for weight, _ in found)
    if not total:
        return None
    n = draw(_below(total))
    for weight, make in found:
        if n < weight:
            return make(draw)
        n -= weight
    raise AssertionError("unreachable: n < total")


# ------------------------------------------------------------------------- validity


def allowed(world: World, step: Step) -> bool:
    """Whether the strategies could draw `step` now (with the same draws), by the rules
    the options are built on. Used to check a schedule edited by the step shrinker
    (`shrink.py`): an edit that leaves a step the world does not allow (a wait for a point
    the turn no longer reaches, a follow-up with nothing to follow) is never run."""
    match step:
        case Prompt():
            return _prompt_allowed(world, step)
        case Reach():
            turns = world.turns.values()
            return step in [a for t in turns for a in (*_route_aims(world, t), _memory_aim(t))]
        case Cancel():
            return (
                step.session in _cancel_sessions(world)
                and step.names in _cancel_names(world, step.session)
                and step.twice in _twice(world.menu)
            )
        case Release() | Await() | Leave():
            turn = world.turns.get(step.turn)
            if turn is None or turn not in _fronts(world):
                return False
            if isinstance(step, Release):
                return world.may_hold(turn)
            if isinstance(step, Await):
                return not world.may_hold(turn)
            return _may_leave(world, turn)


def _failure_allowed(fault: Fault, *, streaming: bool) -> bool:
    """Whether `failure` could have drawn `fault`."""
    match fault.kind:
        case FaultKind.HTTP:
            plain = Fault(fault.kind, status=fault.status, retry_after=fault.retry_after)
            return fault == plain and fault.status in STATUSES and fault.retry_after in RETRY_AFTERS
        case FaultKind.QUOTA:
            plain = Fault(fault.kind, status=429, retry_after=fault.retry_after, quota=fault.quota)
            return (
                fault == plain and fault.retry_after in RETRY_AFTERS[1:] and fault.quota in QUOTAS
            )
        case FaultKind.CONTEXT:
            return fault == Fault(fault.kind, status=400)
        case FaultKind.RST | FaultKind.FIN | FaultKind.STREAM_ERROR:
            if fault.kind is FaultKind.STREAM_ERROR and not streaming:
                return False
            return fault == Fault(fault.kind, at=fault.at) and fault.at in _ats(streaming)
        case _:
            return False


def _last_allowed(fault: Fault, menu: Menu, profile: Profile, tool: ToolKind | None) -> bool:
    """Whether `last_attempt` could have drawn `fault` for a request asking for `tool`."""
    streaming = profile is not Profile.JSON
    if fault.kind not in _last_kinds(profile):
        return False
    if fault.kind is FaultKind.HOLD_HEADERS:
        return fault == Fault(fault.kind)
    held = fault.kind in (FaultKind.HOLD, FaultKind.HANG)
    ats = _ats(streaming) if held and tool is not ToolKind.BROKEN else range(1)
    paced = menu.pacing and streaming and fault.kind is not FaultKind.HANG
    paces = [(p, d if fault.kind is FaultKind.OK else 0) for p, d in PACES] if paced else []
    return (
        fault == Fault(fault.kind, at=fault.at, pace=fault.pace, drip=fault.drip)
        and fault.at in ats
        and (fault.pace, fault.drip) in (paces or [(0.0, 0)])
    )


def _requests_allowed(world: World, planned: Sequence[Request]) -> bool:
    """Whether `requests` could have drawn `planned`: for each tool asked for, then for the
    answer, failed attempts (if errors are on) and the attempt that answers or is held."""
    menu, profile = world.menu, world.profile
    streaming = profile is not Profile.JSON
    kinds = tool_kinds(profile, ProviderKind.parse(world.kind)) if menu.tools else ()
    tools, failed = 0, 0
    for n, request in enumerate(planned):
        final = n == len(planned) - 1
        if request.fault.fails:
            failed += 1
            if (
                final
                or request.tool is not None
                or not menu.errors
                or failed > max(FAILED_ATTEMPTS)
                or not _failure_allowed(request.fault, streaming=streaming)
            ):
                return False
            continue
        failed = 0
        if final != (request.tool is None) or (request.tool and request.tool not in kinds):
            return False
        if not _last_allowed(request.fault, menu, profile, request.tool):
            return False
        tools += request.tool is not None
    return bool(planned) and tools <= max(TOOL_COUNTS)


def _prompt_allowed(world: World, step: Prompt) -> bool:
    session = step.session
    if not _requests_allowed(world, step.requests):
        return False
    if step.turn != len(world.turns) + 1 or session not in world.sessions():
        return False
    if not _may_prompt(world, session) or step.followup != bool(world.live(session)):
        return False
    if step.hold_memory != (world.profile is Profile.MEMORY):
        return False
    return not step.hold_compaction or (_may_hold_compaction(world, session) and not step.followup)


def drawable(schedule: Schedule, menu: Menu, max_steps: int = MAX_STEPS) -> bool:
    """Whether the strategies could have drawn the whole schedule for this menu."""
    if schedule.profile not in menu.profiles or len(schedule.steps) > max_steps:
        return False
    world = World(menu, schedule.profile, schedule.kind)
    for step in schedule.steps:
        if not allowed(world, step):
            return False
        world.apply(step)
    return True


# What each menu item lets a schedule do, as a user reads it.
ITEM_WORDS = {
    "followups": "a follow-up while a turn runs",
    "named": "a cancel naming a stream",
    "sessions": "a second session",
    "twice": "a second cancel",
    "errors": "a failed request",
    "tools": "a tool call",
    "pacing": "a paced or dripped stream",
    "leave": "a caller that stops reading",
}


def uses(schedule: Schedule) -> list[str]:
    """The menu items (`ITEM_WORDS`' keys) a schedule cannot be drawn without."""
    used: set[str] = set()
    for step in schedule.steps:
        match step:
            case Prompt():
                faults = [r.fault for r in step.requests]
                found = {
                    "followups": step.followup,
                    "sessions": bool(step.session),
                    "tools": any(r.tool for r in step.requests),
                    "errors": any(f.fails for f in faults),
                    "pacing": any(f.pace or f.drip for f in faults),
                }
                used |= {item for item, yes in found.items() if yes}
            case Cancel():
                found = {
                    "named": step.names is not None,
                    "sessions": bool(step.session),
                    "twice": step.twice is not Twice.NO,
                }
                used |= {item for item, yes in found.items() if yes}
            case Leave():
                used.add("leave")
    return [item for item in ITEM_WORDS if item in used]


def lacking(schedule: Schedule, menu: Menu, kinds: Sequence[ProviderKind] = ()) -> list[str]:
    """What a schedule needs that the menu (or the provider kinds, when given) does not
    offer, as a user reads it; empty when the menu offers all it uses."""
    missing = [ITEM_WORDS[item] for item in uses(schedule) if not getattr(menu, item)]
    if schedule.profile not in menu.profiles:
        missing.insert(0, f"the {schedule.profile} profile")
    if kinds and ProviderKind.parse(schedule.kind) not in kinds:
        missing.insert(0, f"the {schedule.kind} provider kind")
    return missing


@st.composite
def schedules(
    draw: st.DrawFn,
    menu: Menu,
    kinds: Sequence[ProviderKind | str] = (ProviderKind.OPENAI_CHAT,),
    *,
    max_steps: int = MAX_STEPS,
) -> Schedule:
    """A whole schedule: a profile, a provider kind, then steps the world allows."""
    profile = choose(draw, menu.profiles)
    kind = ProviderKind.parse(choose(draw, list(kinds)))
    world = World(menu, profile, kind)
    steps: list[Step] = []
    while len(steps) < max_steps:
        if steps and draw(_below(8)) == 0:
            break
        move = next_move(draw, world, max_steps - len(steps))
        if move is None:
            break
        for step in move if isinstance(move, tuple) else (move,):
            world.apply(step)
            steps.append(step)
    return Schedule(profile, kind, tuple(steps))
