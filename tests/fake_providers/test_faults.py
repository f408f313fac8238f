"""Fault specs and schedules: pure data, tested without a network."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_providers.faults import (
    FAULT_KEYS,
    FAULTS,
    SELECTOR_KEYS,
    CloseAfter,
    FaultPlan,
    FaultSpecError,
    HangAfter,
    HangBeforeHeaders,
    Hold,
    Match,
    Pace,
    ResetAfter,
    parse_rule,
)
from fake_providers.faults.schedule import Cut, Silence, WaitAtGate
from fake_providers.ledger import CloseKind
from fake_providers.rules import PlanResolver, RequestView


def view(**overrides: object) -> RequestView:
    base: dict[str, object] = {
        "path": "/v1/chat/completions",
        "kind": "openai-chat",
        "model": "gpt-4o",
        "stream": True,
        "ordinal": 1,
        "headers": (("user-agent", "agent/1"),),
        "body": b'{"messages": [{"content": "hello"}]}',
    }
    base.update(overrides)
    return RequestView(**base)  # type: ignore[arg-type]


def test_spec_builds_the_named_steps_in_order() -> None:
    plan = FaultPlan.parse("pace=50ms,hang-after=5")
    assert plan.steps == (Pace(0.05), HangAfter(5))


@pytest.mark.parametrize(
    "spec",
    [
        "pace=50ms,hang-after=5",
        "pace=20ms,jitter=5ms,seed=7",
        "status=429,retry-after=1",
        "status=503,retry-after-ms=250",
        "reset-after=3",
        "close-after=2",
        "hang-before-headers",
        "hang-before-headers=2s",
        "hang-after=4,hang-for=1500ms",
        "drip=200",
        "error-after=4",
        "malformed-after=2",
        "hold-before=3,gate=main",
        "hold-before=headers",
        "tokens=12,tool=get_weather",
        "text=hello world",
    ],
)
def test_spec_round_trips(spec: str) -> None:
    plan = FaultPlan.parse(spec)
    assert FaultPlan.parse(plan.spec()) == plan


@pytest.mark.parametrize(
    "example",
    sorted({e.split(" (")[0] for fault in FAULTS for e in fault.examples.values()}),
)
def test_every_registered_faults_examples_round_trip(example: str) -> None:
    plan = FaultPlan.parse(example)
    assert plan.steps
    assert FaultPlan.parse(plan.spec()) == plan


def test_rule_spec_round_trips_selectors() -> None:
    rule = parse_rule("model=gpt-4o*,stream=true,header=x-title:*,nth=2,status=500,times=2")
    assert rule.match == Match(model="gpt-4o*", stream=True, header=("x-title", "*"), nth=2)
    assert rule.times == 2
    assert parse_rule(rule.spec()) == rule


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("pace=50ms,hang_after=5", "did you mean 'hang-after'"),
        ("pace=50", "expected a duration with a unit"),
        ("status=299", "expected an error status"),
        ("hang-after=five", "expected a whole number"),
        ("drip=0", "bytes per second above 0"),
        ("retry-after=1", "goes with an error status"),
        ("jitter=5ms", "jitter needs pace"),
        ("hang-for=1s", "hang-for needs hang-after"),
        ("header=x-title", "expected NAME:VALUE"),
        ("pace", "needs a value"),
        ("pace=-5ms", "pace=-5ms: a duration cannot be negative"),
        ("pace=0ms", "expected a duration above 0"),
        ("seed=x", "seed=x: expected a whole number, such as seed=7"),
        ("kind=antropic", "unknown provider 'antropic' (did you mean 'anthropic'?)"),
        ("pace=10ms;pace=20ms", "'pace' is given twice (pace=10ms and pace=20ms); keep one"),
        ("hang-after=" + "9" * 5000, "expected a whole number of events from 0 to 1,000,000"),
        ("tokens=100001", "from 0 to 100,000"),
        ("times=0", "from 1 to"),
        ("nth=0", "from 1 to"),
        ("hang-after=1,hang-for=100000s", "at most 24h"),
        ("drip=1e9999", "bytes per second above 0"),
        ("retry-after=1e400,status=429", "expected seconds"),
        ("status=" + "4" * 5000, "expected an error status"),
    ],
)
def test_bad_specs_name_the_token_and_the_fix(spec: str, fragment: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_rule(spec)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


def test_kind_accepts_the_alias_and_stores_the_kind() -> None:
    assert parse_rule("kind=openai").match.kind == "openai-chat"
    assert parse_rule("kind=Anthropic").match.kind == "anthropic"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([*FAULT_KEYS, *SELECTOR_KEYS, "bogus"]),
            st.one_of(st.text(max_size=30), st.integers().map(str), st.just("9" * 5000)),
        ),
        max_size=6,
    )
)
def test_no_spec_raises_anything_but_one_line_of_fault_spec_error(
    tokens: list[tuple[str, str]],
) -> None:
    spec = ",".join(f"{key}={value}" for key, value in tokens)
    try:
        rule = parse_rule(spec)
    except FaultSpecError as exc:
        assert "\n" not in str(exc)
        return
    assert parse_rule(rule.spec()) == rule


def test_unknown_token_lists_the_valid_ones() -> None:
    with pytest.raises(FaultSpecError, match="valid: pace, jitter"):
        parse_rule("explode=1")


def test_plain_plan_refuses_selectors() -> None:
    with pytest.raises(FaultSpecError, match="selects requests"):
        FaultPlan.parse("model=gpt-4o,pace=10ms")


def test_semicolons_separate_tokens_too() -> None:
    assert FaultPlan.parse("pace=50ms;hang-after=5") == FaultPlan.parse("pace=50ms,hang-after=5")


def test_schedule_places_actions_between_events() -> None:
    schedule = FaultPlan.parse("hold-before=3,hang-after=5,reset-after=5").compile()
    assert schedule.at(2) == (WaitAtGate("default"),)  # before event 3 = after 2 events
    assert schedule.at(5) == (Silence(None), Cut(CloseKind.RST))
    assert schedule.at(4) == ()


def test_faults_past_the_end_happen_before_the_last_event() -> None:
    schedule = FaultPlan.parse("close-after=500").compile()
    assert schedule.at(10) == ()
    assert schedule.at(10, last=True) == (Cut(CloseKind.FIN),)


def test_before_headers_actions_and_error_status() -> None:
    schedule = FaultPlan.parse("hang-before-headers=1s,status=429,retry-after=2").compile()
    assert schedule.before_headers == (Silence(1.0),)
    assert schedule.refusal is not None
    assert (schedule.refusal.status, schedule.refusal.headers) == (429, ((b"retry-after", b"2"),))


def test_pace_deadlines_are_absolute_so_they_never_drift() -> None:
    schedule = FaultPlan.parse("pace=50ms").compile()
    due = list(itertools.islice(schedule.due(), 1000))
    assert due[0] == 0.0
    assert due[999] == pytest.approx(999 * 0.05)


def test_jitter_is_seeded_and_monotonic() -> None:
    plan = FaultPlan.parse("pace=10ms,jitter=30ms,seed=3")
    first = list(itertools.islice(plan.compile(request_ordinal=1).due(), 200))
    again = list(itertools.islice(plan.compile(request_ordinal=1).due(), 200))
    other = list(itertools.islice(plan.compile(request_ordinal=2).due(), 200))
    assert first == again
    assert first != other
    assert all(b >= a for a, b in itertools.pairwise(first))
    assert all(i * 0.01 <= t <= i * 0.01 + 0.03 + 1e-9 for i, t in enumerate(first))


def test_plans_compose_like_toxics() -> None:
    plan = FaultPlan() + Pace(0.01) + Hold(2, gate_name="g") + CloseAfter(4)
    assert plan.spec() == "pace=10ms,hold-before=2,gate=g,close-after=4"
    assert (FaultPlan((HangBeforeHeaders(),)) + FaultPlan((ResetAfter(1),))).steps == (
        HangBeforeHeaders(),
        ResetAfter(1),
    )


def test_resolver_first_live_match_wins_and_times_expire() -> None:
    resolver = PlanResolver()
    first = resolver.add("stream=true,status=500,times=2")
    resolver.add("stream=true,pace=10ms")
    picks = [resolver.select(view(ordinal=i)).source for i in (1, 2, 3)]
    assert picks == [f"rule #{first}", f"rule #{first}", f"rule #{first + 1}"]
    assert resolver.select(view(stream=False)).source == "default"


@pytest.mark.parametrize(
    ("selector", "hit", "miss"),
    [
        ("model=claude-*", {"model": "claude-haiku"}, {"model": "gpt-4o"}),
        ("path=/v1/messages", {"path": "/v1/messages"}, {"path": "/v1/responses"}),
        ("nth=3", {"ordinal": 3}, {"ordinal": 2}),
        ("kind=anthropic", {"kind": "anthropic"}, {"kind": "openai-chat"}),
        ("body-contains=summarize", {"body": b"please summarize"}, {"body": b"hello"}),
        ("header=x-title:Ti*", {"headers": (("x-title", "Title"),)}, {"headers": ()}),
    ],
)
def test_selectors_single_out_one_request(
    selector: str, hit: dict[str, object], miss: dict[str, object]
) -> None:
    resolver = PlanResolver()
    resolver.add(f"{selector},hang-before-headers")
    assert resolver.select(view(**hit)).source.startswith("rule")
    assert resolver.select(view(**miss)).source == "default"


def test_model_name_carries_a_spec_and_is_cleaned() -> None:
    selection = PlanResolver().select(view(model="gpt-4o~pace=50ms;hang-after=5"))
    assert selection.source == "model-name"
    assert selection.model == "gpt-4o"
    assert selection.plan == FaultPlan.parse("pace=50ms,hang-after=5")


def test_bad_spec_in_model_name_says_where_it_came_from() -> None:
    with pytest.raises(ValueError, match="fault spec in model name 'gpt~pase=1ms'"):
        PlanResolver().select(view(model="gpt~pase=1ms"))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.floats(min_value=1e-6, max_value=86_400, allow_nan=False))
def test_every_duration_in_range_is_written_back_so_it_parses(seconds: float) -> None:
    plan = FaultPlan.parse(f"hang-after=1,hang-for={seconds:.6f}s")
    again = FaultPlan.parse(plan.spec())
    assert again.steps[0].duration == pytest.approx(plan.steps[0].duration, rel=1e-6)  # type: ignore[attr-defined]
