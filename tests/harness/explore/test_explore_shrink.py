"""Shrinking by whole steps: turns and steps that play no part in a failure are dropped,
and a schedule the strategies could not have drawn is never run."""

from __future__ import annotations

from hypothesis import given, settings

from harness.explore.menu import Menu, full_menu
from harness.explore.schedule import (
    Await,
    Cancel,
    Fault,
    FaultKind,
    Point,
    Profile,
    Prompt,
    Reach,
    Release,
    Request,
    Schedule,
    ToolKind,
)
from harness.explore.shrink import shrink_steps, without_turn
from harness.explore.strategies import drawable, schedules
from harness.target import Capability

EVERYTHING = full_menu(Capability)
CANCEL_ONLY = full_menu({Capability.CANCEL})
HOLD, OK = Request(Fault(FaultKind.HOLD)), Request(Fault(FaultKind.OK))
HOLD_HEADERS = Request(Fault(FaultKind.HOLD_HEADERS))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(schedules(EVERYTHING))
def test_every_drawn_schedule_is_drawable(schedule: Schedule) -> None:
    assert drawable(schedule, EVERYTHING), schedule.describe()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(schedules(EVERYTHING))
def test_a_schedule_drawn_for_more_is_not_drawable_for_less(schedule: Schedule) -> None:
    """What a cancel-only target cannot do (a follow-up, a second session, a named cancel,
    a tool) makes the schedule one its search would never run."""
    beyond = (
        any(
            (isinstance(s, Prompt) and (s.followup or s.session or any(r.tool for r in s.requests)))
            or (isinstance(s, Cancel) and (s.names is not None or s.session))
            for s in schedule.steps
        )
        or schedule.profile not in CANCEL_ONLY.profiles
    )
    if beyond:
        assert not drawable(schedule, CANCEL_ONLY), schedule.describe()


def test_a_request_the_menu_could_not_draw_makes_the_schedule_undrawable() -> None:
    """A kept counterexample replayed on a target that cannot do what it needs (a tool, an
    error, a paced stream) is skipped, as is a fault no strategy draws."""
    plain = full_menu({Capability.CANCEL, Capability.TOOLS})
    quiet = Menu(profiles=(Profile.PLAIN,), tools=True)
    tool = Request(Fault(FaultKind.OK), ToolKind.QUICK)
    error = Request(Fault(FaultKind.HTTP, status=500))
    paced = Request(Fault(FaultKind.OK, pace=0.25))

    def one_turn(*planned: Request) -> Schedule:
        return Schedule(Profile.PLAIN, "openai-chat", (Prompt(1, 0, planned), Cancel(0)))

    assert drawable(one_turn(tool, OK), plain)
    assert not drawable(one_turn(tool, OK), CANCEL_ONLY)  # no tools there
    assert not drawable(one_turn(OK, tool), plain)  # a turn ends with its answer
    assert drawable(one_turn(error, OK), plain) and not drawable(one_turn(error, OK), quiet)
    assert not drawable(one_turn(OK, error), plain)  # a failure is retried
    assert drawable(one_turn(paced), plain) and not drawable(one_turn(paced), quiet)
    assert not drawable(one_turn(Request(Fault(FaultKind.HTTP, status=418))), plain)
    assert not drawable(one_turn(Request(Fault(FaultKind.OK, at=3))), plain)


# The hand-off a seed found, shrunk by hypothesis to 7 steps: t1 (session A) and t4 (a
# second follow-up) play no part in it.
FOUND = Schedule(
    Profile.PLAIN,
    "openai-chat",
    (
        Prompt(1, 0, (OK,)),
        Prompt(2, 1, (HOLD,)),
        Prompt(3, 1, (HOLD_HEADERS,), followup=True),
        Prompt(4, 1, (OK,), followup=True),
        Release(2),
        Await(2),
        Cancel(1),
    ),
)


def _hand_off(schedule: Schedule) -> bool:
    """The failure of an agent that loses a cancel at the hand-off: a turn is let go, waited
    for, and the cancel comes at once, while a held follow-up waits behind it."""
    steps = schedule.steps
    prompts = schedule.prompts()
    for n in range(len(steps) - 2):
        release, wait, cancel = steps[n : n + 3]
        if not (isinstance(release, Release) and wait == Await(release.turn)):
            continue
        session = prompts[release.turn].session
        behind = [p for p in prompts.values() if p.session == session and p.followup]
        held = any(r.fault.kind is FaultKind.HOLD_HEADERS for p in behind for r in p.requests)
        if isinstance(cancel, Cancel) and cancel.session == session and held:
            return True
    return False


def test_turns_that_play_no_part_are_dropped_and_what_is_left_is_renumbered() -> None:
    ran: list[Schedule] = []

    def fails(schedule: Schedule) -> bool:
        assert drawable(schedule, EVERYTHING), schedule.describe()  # never run otherwise
        ran.append(schedule)
        return _hand_off(schedule)

    assert _hand_off(FOUND)
    smallest, runs = shrink_steps(FOUND, EVERYTHING, fails, budget=40)
    assert smallest == Schedule(
        Profile.PLAIN,
        "openai-chat",
        (
            Prompt(1, 0, (HOLD,)),
            Prompt(2, 0, (HOLD_HEADERS,), followup=True),
            Release(1),
            Await(1),
            Cancel(0),
        ),
    ), smallest.describe()
    assert runs == len(ran) <= 40


def test_the_step_shrinker_stops_at_its_budget() -> None:
    smallest, runs = shrink_steps(FOUND, EVERYTHING, lambda s: False, budget=3)
    assert runs == 3 and smallest == FOUND


def test_dropping_a_turn_drops_the_steps_about_it_and_cancels_naming_it() -> None:
    schedule = Schedule(
        Profile.PLAIN,
        "openai-chat",
        (
            Prompt(1, 0, (HOLD,)),
            Prompt(2, 0, (HOLD,), followup=True),
            Reach(1, Point.HELD, 1),
            Cancel(0, names=1),
            Cancel(0, names=2),
        ),
    )
    assert without_turn(schedule, 1).steps == (
        Prompt(1, 0, (HOLD,), followup=True),
        Cancel(0, names=1),
    )
