"""A schedule reads as steps, and its text (what a replay command carries) round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from harness.explore.menu import full_menu
from harness.explore.schedule import (
    Cancel,
    Fault,
    FaultKind,
    Point,
    Profile,
    Prompt,
    Reach,
    Request,
    Schedule,
    ScheduleError,
    ToolKind,
)
from harness.explore.strategies import schedules
from harness.target import Capability

EVERYTHING = full_menu(Capability)
KINDS = ("openai-chat", "anthropic", "gemini")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(schedules(EVERYTHING, KINDS))
def test_the_replay_text_round_trips(schedule: Schedule) -> None:
    assert Schedule.parse(schedule.to_text()) == schedule
    assert len(schedule.describe()) == len(schedule.steps)


def test_steps_read_as_a_person_would_say_them() -> None:
    plan = Schedule(
        Profile.PLAIN,
        "anthropic",
        (
            Prompt(
                1,
                0,
                (
                    Request(Fault(FaultKind.HTTP, status=429, retry_after=15)),
                    Request(Fault(FaultKind.HOLD, at=4, pace=0.5), ToolKind.SLOW),
                ),
            ),
            Reach(1, Point.BACKOFF, 1),
            Cancel(0, names=1),
        ),
    )
    assert plan.describe() == [
        "A: prompt t1: #1 HTTP 429 retry-after 15 tempo; #2 held after 4 events, paced 0.5 "
        "tempo/event; asks for a slow tool (held until released)",
        "wait until t1 backs off after request #1 failed",
        "cancel session A naming t1's stream",
    ]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{'v': 1}", "not JSON"),
        ('{"v": 7, "profile": "plain", "kind": "openai-chat", "steps": []}', "version-1"),
        ('{"v":1,"profile":"plain","kind":"openai-chat","steps":[{"step":"dance"}]}', "dance"),
        ('{"v":1,"profile":"plain","kind":"nope","steps":[]}', "nope"),
        (
            '{"v":1,"profile":"plain","kind":"openai-chat","steps":[{"step":"await","turn":3}]}',
            "step 1 names turn 3 before it was prompted",
        ),
    ],
)
def test_a_bad_schedule_text_says_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(ScheduleError, match=said) as caught:
        Schedule.parse(text)
    assert "\n" not in str(caught.value)
