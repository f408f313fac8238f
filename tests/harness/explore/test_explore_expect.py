"""What a turn's plan implies: how a correct agent may end it, and whether it is held."""

from __future__ import annotations

from harness.explore.expect import route, surely_held
from harness.explore.schedule import Fault, FaultKind, Point, Profile, Prompt, Request, ToolKind

OK = Request()
DROP = Request(Fault(FaultKind.RST, at=3))
BUSY = Request(Fault(FaultKind.HTTP, status=503, retry_after=20))


def turn(*requests: Request) -> Prompt:
    return Prompt(1, 0, requests)


def test_failures_within_the_configured_retries_still_complete() -> None:
    planned = route(turn(DROP, BUSY, OK), Profile.PLAIN, retries=True)
    assert planned.outcomes == {"completed"}
    assert [s.point for s in planned.stops] == [Point.BACKOFF, Point.ANSWERED]


def test_one_failure_more_than_the_retries_ends_in_an_error() -> None:
    assert route(turn(DROP, DROP, DROP, OK), Profile.PLAIN, retries=True).outcomes == {"error"}


def test_what_the_contract_leaves_open_allows_either_end() -> None:
    planned = route(
        turn(Request(Fault(FaultKind.STREAM_ERROR, at=2)), OK), Profile.PLAIN, retries=True
    )
    assert planned.outcomes == {"completed", "error"} and not planned.certain
    unknown = route(turn(DROP, OK), Profile.PLAIN, retries=False)  # it may not retry at all
    assert unknown.outcomes == {"completed", "error"}


def test_a_gate_or_a_held_tool_holds_the_turn_unless_the_agent_has_a_clock() -> None:
    gated = turn(Request(Fault(FaultKind.HOLD, at=2)))
    tooled = turn(Request(tool=ToolKind.SLOW), OK)
    for plan in (gated, tooled):
        assert surely_held(plan, Profile.PLAIN, retries=True)
        assert not surely_held(plan, Profile.DEADLINE, retries=True)
    assert "timeout" in route(gated, Profile.DEADLINE, retries=True).outcomes
    assert not surely_held(turn(OK, Request(Fault(FaultKind.HOLD))), Profile.PLAIN, retries=True)


def test_a_used_up_quota_is_retried_after_its_reset_and_other_failures_are_left_open() -> None:
    quota = Request(Fault(FaultKind.QUOTA, status=429, retry_after=20, quota="tokens"))
    planned = route(turn(quota, OK), Profile.PLAIN, retries=True)
    assert planned.outcomes == {"completed"}
    assert planned.stops[0].point is Point.BACKOFF
    overflow = route(
        turn(Request(Fault(FaultKind.CONTEXT, status=400)), OK), Profile.PLAIN, retries=True
    )
    assert overflow.outcomes == {"completed", "error"}  # it may compact and try again
    broken = route(turn(Request(tool=ToolKind.BROKEN), OK), Profile.PLAIN, retries=True)
    assert broken.outcomes == {"completed", "error"}  # it may tell the model, or give up
