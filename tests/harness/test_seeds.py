"""Seeds that replay: the run seed decides the fault schedule and the agent's retry delays."""

from __future__ import annotations

import json
import re
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from fake_providers.faults import FaultPlan, Match, Rule, parse_rule
from fake_providers.rules import RequestView
from harness import cli
from harness.scenario import Registry, ScenarioContext, load_catalogue
from harness.seeds import SeededResolver, case_seed, shuffled
from harness.targets import make_target


def test_case_seeds_are_stable_distinct_and_never_zero() -> None:
    assert case_seed(7, "esc.mid-stream[anthropic]") == case_seed(7, "esc.mid-stream[anthropic]")
    seeds = {case_seed(s, f"case{i}") for s in range(20) for i in range(20)}
    assert len(seeds) == 400 and 0 not in seeds
    assert shuffled(list(range(10)), 3) == shuffled(list(range(10)), 3) != list(range(10))


def view(ordinal: int = 1) -> RequestView:
    return RequestView("/v1/chat/completions", "openai-chat", "gpt-4o", True, ordinal, (), b"")


def test_jittered_plans_get_the_case_seed_unless_they_have_their_own() -> None:
    resolver = SeededResolver(1234)
    resolver.add(parse_rule("pace=10ms,jitter=5ms,times=1"))
    resolver.add(parse_rule("pace=10ms,jitter=5ms,seed=9,times=1"))
    resolver.add(Rule(FaultPlan.parse("pace=10ms"), Match()))
    assert [resolver.select(view()).plan.seed for _ in range(3)] == [1234, 9, 0]
    assert resolver.select(view()).describe() == "rule #3: pace=10ms"  # nothing random: as is


def replay_registry() -> Registry:
    registry = Registry()
    registry.add(load_catalogue().get("retry.genuine-drop-retried"))  # reports its retry delay

    @registry.scenario(id="jitter.stream", title="t", incident="I1", providers=("openai-chat",))
    async def jitter_stream(ctx: ScenarioContext) -> None:
        """A paced stream whose event times are jittered."""
        ctx.fault("stream=true,pace=10ms,jitter=8ms,tokens=6")
        session = await ctx.new_session()
        ctx.checks.stop_reason(await ctx.outcome(await ctx.submit(session, "Hi.")), "completed")

    return registry


def run_seed(seed: int, out: Path) -> dict[str, Any]:
    argv = ["run", "--provider", "openai-chat", "--seed", str(seed), "-v", "--json", str(out)]
    assert cli.main(argv, catalogue=replay_registry(), targets=make_target) == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return {r["id"]: r for r in data["results"]}


def schedule(result: dict[str, Any]) -> tuple[str, list[float]]:
    """The jittered stream's plan (as the provider logged it) and its events' due offsets."""
    match = re.search(r"plan: rule #\d+: (\S+)", result["timeline"])
    assert match is not None, result["timeline"]
    due = FaultPlan.parse(match.group(1)).compile(request_ordinal=1).due()
    return match.group(1), list(islice(due, 8))


def retry_delays(result: dict[str, Any]) -> list[str]:
    return re.findall(r"model\.retry \S+ #\d+ in ([\d.]+s)", result["timeline"])


def test_the_same_seed_replays_the_fault_schedule_and_the_agent_retry_delays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, again, other = (run_seed(s, tmp_path / f"{n}.json") for n, s in enumerate((41, 41, 42)))
    capsys.readouterr()
    plan, offsets = schedule(first["jitter.stream"])
    assert f"seed={first['jitter.stream']['seed']}" in plan  # the case's own seed
    assert schedule(again["jitter.stream"]) == (plan, offsets)
    assert schedule(other["jitter.stream"])[1] != offsets
    assert offsets != sorted(i * 0.01 for i in range(8))  # jittered, not the bare pace
    delays = retry_delays(first["retry.genuine-drop-retried"])
    assert delays and retry_delays(again["retry.genuine-drop-retried"]) == delays
