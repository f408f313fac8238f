"""Each contract explore checks holds on the reference agent and breaks on its defect.

One hand-written schedule per defect switch (the shape explore's search finds), run against
the in-process reference agent: it passes clean, and fails with the contract a user of that
defective agent would notice.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.explore.host import Host, Status, Verdict
from harness.explore.menu import full_menu
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
)
from harness.scenario import Tempo
from harness.target import Capability, Target
from harness.targets import make_target
from reference_agent.retry import RetryPolicy


def held(turn: int, at: int = 3, session: int = 0, *, followup: bool = False) -> Prompt:
    return Prompt(turn, session, (Request(Fault(FaultKind.HOLD, at=at)),), followup=followup)


def plain(turn: int, *requests: Request, session: int = 0) -> Prompt:
    return Prompt(turn, session, requests or (Request(),))


BACKOFF = Request(Fault(FaultKind.HTTP, status=500, retry_after=15))


def schedule(*steps: Step, profile: Profile = Profile.PLAIN) -> Schedule:
    return Schedule(profile, "openai-chat", steps)


HELD_CANCEL = schedule(held(1), Reach(1, Point.HELD, 1), Cancel(0))
FOLLOWUP = (held(1), Reach(1, Point.HELD, 1), Prompt(2, 0, (Request(),), followup=True))
CASES: dict[str, tuple[Schedule, str]] = {
    "provider-ignores-cancel": (HELD_CANCEL, "close the provider connection"),
    "cancel-checked-on-next-chunk": (HELD_CANCEL, "close the provider connection"),
    "retry-after-forced-close": (HELD_CANCEL, "no model call of t1 after its cancel"),
    "no-terminal-cancel-event": (HELD_CANCEL, "exactly one 'cancelled' event"),
    "drain-on-leave": (
        schedule(held(1, at=6), Reach(1, Point.HELD, 1), Leave(1)),
        "close the provider connection",
    ),
    "backoff-ignores-cancel": (
        schedule(plain(1, BACKOFF, Request()), Reach(1, Point.BACKOFF, 1), Cancel(0)),
        "no model call of t1 after its cancel",
    ),
    "turn-scoped-interrupt-flag": (
        schedule(plain(1, BACKOFF, Request()), Reach(1, Point.BACKOFF, 1), Cancel(0), plain(2)),
        "no model call of t1 after its cancel",
    ),
    "tool-survives-cancel": (
        schedule(
            plain(1, Request(tool=ToolKind.TREE), Request()), Reach(1, Point.TOOL, 1), Cancel(0)
        ),
        "to kill the tools its turns were running",
    ),
    "stale-timeout-ignored": (
        schedule(plain(1, Request(Fault(FaultKind.HANG, at=3))), profile=Profile.STALE),
        "to end: nothing held it",
    ),
    "drop-treated-as-cancel": (
        schedule(plain(1, Request(Fault(FaultKind.RST, at=3)), Request()), Await(1)),
        "to run its course",
    ),
    "cancel-all-sessions": (
        schedule(
            held(1), Reach(1, Point.HELD, 1), held(2, session=1), Reach(2, Point.HELD, 1), Cancel(0)
        ),
        "to leave t2 running",
    ),
    "lose-cancel-before-start": (schedule(*FOLLOWUP, Cancel(0, names=2)), "cancelled=true"),
    "idle-cancel-poisons-next": (schedule(Cancel(0), plain(1), Await(1)), "to run its course"),
    "queued-followup-survives-cancel": (schedule(*FOLLOWUP, Cancel(0)), "t2"),
    "handoff-window": (
        schedule(
            held(1),
            Reach(1, Point.HELD, 1),
            held(2, followup=True),
            Release(1),
            Await(1),
            Cancel(0),
        ),
        "cancelled=true",
    ),
    "cancel-not-owner-scoped": (
        schedule(plain(1), Await(1), held(2), Reach(2, Point.HELD, 1), Cancel(0, names=1)),
        "to answer cancelled=false, that stream had ended",
    ),
    "commit-after-timeout": (
        schedule(held(1), Reach(1, Point.HELD, 1), Await(1), profile=Profile.DEADLINE),
        "no ghost turn",
    ),
    "background-tied-to-user-cancel": (
        schedule(
            Prompt(1, 0, (Request(),), hold_memory=True),
            Await(1),
            Reach(1, Point.MEMORY),
            Cancel(0),
            profile=Profile.MEMORY,
        ),
        "background call",
    ),
}


@pytest.fixture(scope="module")
def hosts() -> Iterator[dict[str, Host]]:
    """One host per defect (and one clean), each started on first use."""
    started: dict[str, Host] = {}
    try:

        class Hosts(dict[str, Host]):
            def __missing__(self, defect: str) -> Host:
                defects = (defect,) if defect else ()
                factory = lambda: make_target("reference", defects)  # noqa: E731
                menu = full_menu(factory().capabilities)
                host = Host(factory, menu, tempo=Tempo(0.01), seed=1, calibrate_kinds=False)
                host.__enter__()
                started[defect] = self[defect] = host
                return host

        yield Hosts()
    finally:
        for host in started.values():
            host.__exit__(None, None, None)


def judged(host: Host, plan: Schedule) -> Verdict:
    """A verdict, re-run while it is indeterminate (as explore does on a loaded machine)."""
    verdict = host.run(plan)
    for _ in range(3):
        if verdict.status is not Status.INDETERMINATE:
            break
        verdict = host.run(plan)
    return verdict


def test_every_schedule_passes_on_the_reference_agent(hosts: dict[str, Host]) -> None:
    for defect, (plan, _) in sorted(CASES.items()):
        verdict = judged(hosts[""], plan)
        assert verdict.status is Status.PASSED, f"{defect}: {verdict.message}\n{verdict.timeline}"


@pytest.mark.parametrize("defect", sorted(CASES))
def test_the_schedule_fails_on_its_defect(hosts: dict[str, Host], defect: str) -> None:
    plan, contract = CASES[defect]
    verdict = judged(hosts[defect], plan)
    assert verdict.status is Status.FAILED, f"{verdict.status}: {verdict.message}"
    assert contract in verdict.message
    assert "+" in verdict.timeline  # the failure comes with its timeline


def test_new_provider_faults_are_judged_without_false_failures(hosts: dict[str, Host]) -> None:
    """A quota, a context-window overflow and broken tool arguments, on the correct agent."""
    quota = Request(Fault(FaultKind.QUOTA, status=429, retry_after=2, quota="requests"))
    overflow = Request(Fault(FaultKind.CONTEXT, status=400))
    for plan in (
        schedule(plain(1, quota, Request()), Await(1)),
        schedule(plain(1, overflow, Request()), Await(1)),
        schedule(plain(1, Request(tool=ToolKind.BROKEN), Request()), Await(1)),
    ):
        verdict = judged(hosts[""], plan)
        assert verdict.status is Status.PASSED, f"{verdict.message}\n{verdict.timeline}"


def test_a_turn_timed_out_in_a_held_tool_is_judged_before_the_hold_opens(
    hosts: dict[str, Host],
) -> None:
    """The deadline ends the turn while its tool tree is held: the correct agent kills the
    tree (the judge waits for the timeout before releasing, then looks for survivors)."""
    plan = schedule(
        plain(1, Request(tool=ToolKind.TREE), Request()),
        Reach(1, Point.TOOL, 1),
        profile=Profile.DEADLINE,
    )
    verdict = judged(hosts[""], plan)
    for _ in range(3):  # a starved agent may time out before its tool started: re-run
        if verdict.status is not Status.DISCARDED:
            break
        verdict = judged(hosts[""], plan)
    assert verdict.status is Status.PASSED, f"{verdict.message}\n{verdict.timeline}"


def test_a_bystander_that_ends_by_itself_is_not_counted_as_touched_by_a_cancel(
    hosts: dict[str, Host],
) -> None:
    """Found by a search: t2 (session B) ends 'error' by itself (its tool's arguments are
    broken) just as session A is cancelled, and closes its connection. That close is not
    the cancel's doing; a correct agent passes."""
    plan = Schedule.parse(
        '{"v":1,"profile":"plain","kind":"openai-chat","steps":['
        '{"step":"prompt","turn":1,"session":0,"requests":[{"fault":"stream-error"},'
        '{"fault":"http","status":500},{"fault":"ok","tool":"quick"},{"fault":"ok"}]},'
        '{"step":"prompt","turn":2,"session":1,"requests":[{"fault":"hold","at":10,'
        '"tool":"broken"},{"fault":"ok"}]},'
        '{"step":"prompt","turn":3,"session":1,"requests":[{"fault":"ok"}],"followup":true},'
        '{"step":"reach","turn":2,"point":"held","request":1},{"step":"cancel","session":0}]}'
    )
    verdict = judged(hosts[""], plan)
    assert verdict.status is Status.PASSED, f"{verdict.message}\n{verdict.timeline}"


def test_a_retry_sooner_than_the_providers_retry_after_breaks_the_retry_contract(
    hosts: dict[str, Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent that backs off by its own schedule and ignores `retry-after` hammers a
    provider that asked it to wait: the same schedule passes on the reference agent and
    fails once its retry policy stops reading the hint."""
    too_many = Request(Fault(FaultKind.HTTP, status=429, retry_after=30))
    plan = schedule(plain(1, too_many, Request()), Await(1))
    verdict = judged(hosts[""], plan)
    assert verdict.status is Status.PASSED, f"{verdict.message}\n{verdict.timeline}"

    real = RetryPolicy.delay
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, retry, _hint: real(self, retry, None))
    verdict = judged(hosts[""], plan)
    assert verdict.status is Status.FAILED, f"{verdict.status}: {verdict.message}"
    assert "to wait the 300 ms the provider asked for (retry-after)" in verdict.message


def test_an_agent_that_retries_by_its_own_slow_policy_is_paused_not_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found on gemini-cli (it waits 5 s before its first retry): a target whose retries the
    harness does not configure may pause after a failed request for longer than a plain
    turn's window. That pause is its policy, not a hang; the turn must pass once it goes on.
    A turn that never goes on is still stuck (OWN_BACKOFF_S later)."""
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, retry, hint: 5.0)

    def own_policy() -> Target:
        target = make_target("reference")
        target.capabilities = target.capabilities - {Capability.RETRIES}
        return target

    plan = schedule(plain(1, Request(Fault(FaultKind.HTTP, status=500)), Request()), Await(1))
    with Host(own_policy, full_menu(own_policy().capabilities), tempo=Tempo(0.01), seed=1) as host:
        verdict = judged(host, plan)
    assert verdict.status is Status.PASSED, f"{verdict.message}\n{verdict.timeline}"
    assert verdict.seconds >= 5.0  # it did pause, for longer than two plain windows
