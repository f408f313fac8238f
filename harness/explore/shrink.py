"""Shrinking by whole steps: drop a turn (its prompt and every step about it), drop one
step, or move everything to the first session, and keep an edit only if the schedule still
fails.

Hypothesis shrinks the choices the steps were drawn from. Each step's choices are read
against the world the earlier steps built, so dropping an early prompt changes what every
later choice means, and such a schedule rarely survives. A seed found the hand-off window
in a 7-step schedule with two prompts that had nothing to do with it, after 181 shrink
runs. Edits here are made on the steps themselves, with turns renumbered, and an edited
schedule is run only if the strategies could have drawn it (`strategies.drawable`), so a
correct agent is never asked to do something the search itself would not ask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from harness.explore.menu import Menu
from harness.explore.schedule import (
    Await,
    Cancel,
    Leave,
    Prompt,
    Reach,
    Release,
    Schedule,
    Step,
)
from harness.explore.strategies import MAX_STEPS, drawable


def _renumbered(step: Step, dropped: int) -> Step | None:
    """The step with turns after `dropped` moved down by one; None if it is about it."""

    def moved(turn: int) -> int:
        return turn - 1 if turn > dropped else turn

    match step:
        case Prompt() | Reach() | Release() | Await() | Leave():
            return None if step.turn == dropped else replace(step, turn=moved(step.turn))
        case Cancel():
            if step.names is None:
                return step
            return None if step.names == dropped else replace(step, names=moved(step.names))


def without_turn(schedule: Schedule, turn: int) -> Schedule:
    """The schedule without turn `turn`: its prompt, the steps about it, cancels naming it."""
    kept = [s for s in (_renumbered(step, turn) for step in schedule.steps) if s is not None]
    return Schedule(schedule.profile, schedule.kind, tuple(kept))


def without_step(schedule: Schedule, index: int) -> Schedule:
    steps = schedule.steps
    return Schedule(schedule.profile, schedule.kind, steps[:index] + steps[index + 1 :])


def on_first_session(schedule: Schedule) -> Schedule | None:
    """Everything moved from the second session to the first, if the first has no steps."""
    sessions = {s.session for s in schedule.steps if isinstance(s, Prompt | Cancel)}
    if sessions != {1}:
        return None
    return Schedule(
        schedule.profile,
        schedule.kind,
        tuple(
            replace(s, session=0) if isinstance(s, Prompt | Cancel) else s for s in schedule.steps
        ),
    )


def edits(schedule: Schedule) -> Iterator[Schedule]:
    """Smaller schedules, the biggest cuts first: whole turns (the last first), then single
    steps other than prompts (the last first), then the session."""
    turns = sorted((s.turn for s in schedule.steps if isinstance(s, Prompt)), reverse=True)
    for turn in turns:
        yield without_turn(schedule, turn)
    for index in reversed(range(len(schedule.steps))):
        if not isinstance(schedule.steps[index], Prompt):
            yield without_step(schedule, index)
    moved = on_first_session(schedule)
    if moved is not None:
        yield moved


def shrink_steps(
    schedule: Schedule,
    menu: Menu,
    fails: Callable[[Schedule], bool],
    budget: int,
    max_steps: int = MAX_STEPS,
) -> tuple[Schedule, int]:
    """Greedy: take the first edit that the strategies could have drawn and that still
    fails, and start over from it, until no edit does or `budget` runs are spent. Returns
    the smallest failing schedule and the runs spent."""
    runs = 0
    tried: set[str] = set()
    while runs < budget:
        for edit in edits(schedule):
            text = edit.to_text()
            if text in tried or not edit.steps or not drawable(edit, menu, max_steps):
                continue
            tried.add(text)
            runs += 1
            if fails(edit):
                schedule = edit
                break
            if runs >= budget:
                break
        else:
            break  # no edit fails: done
    return schedule, runs
