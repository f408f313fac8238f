"""The scenario runtime as an author and a CI user meet it: registry, context, runner, statuses."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest
from tiny_agent import CAPS, TinyAgent, example_registry, tiny_factory

from harness.cases import Case, CaseResult, RunConfig, Status, plan_cases
from harness.guard import run_guarded
from harness.processes import marked_command
from harness.runner import Runner
from harness.scenario import (
    ALL_KINDS,
    CATALOGUE,
    CatalogueError,
    Registry,
    ScenarioContext,
    ScenarioDefinitionError,
    Tempo,
    UnknownSelectorError,
    load_catalogue,
)
from harness.steps import tool_started
from harness.target import AgentSettings, Capability, Endpoint, TargetStartError

pytestmark = pytest.mark.anyio


async def run_one(
    registry: Registry, scenario_id: str, kind: str = "openai-chat", **switches: bool
) -> CaseResult:
    config = RunConfig(seed=7, target="tiny", timeout=5.0)
    runner = Runner(config, tiny_factory(**switches))
    return await runner.run_case(Case(registry.get(scenario_id), kind))


def one(registry: Registry, scenario_id: str, **meta: object) -> object:
    """Decorator shorthand for a one-off test scenario."""
    defaults: dict[str, object] = {"title": scenario_id, "incident": "I1"}
    return registry.scenario(id=scenario_id, **{**defaults, **meta})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- registry


def test_decorator_registers_metadata_and_leaves_the_global_catalogue_alone() -> None:
    before = len(CATALOGUE)
    registry = example_registry()
    spec = registry.get("esc.closes-stream")
    assert spec.incident == "I1"
    assert spec.providers == ("openai-chat", "anthropic")
    assert spec.requires == {Capability.CANCEL, Capability.TRANSCRIPT}
    assert spec.catches == ("provider-ignores-cancel",)
    assert spec.doc.startswith("The user presses Esc")
    settings = registry.get("timeout.no-ghost").agent_settings(Tempo(0.01))
    assert settings == AgentSettings(turn_timeout=0.05)
    assert len(CATALOGUE) == before


def test_selectors_by_id_glob_incident_and_tag() -> None:
    registry = example_registry()
    ids = lambda *sel: [s.id for s in registry.select(sel)]  # noqa: E731
    assert ids() == ["esc.closes-stream", "timeout.no-ghost"]
    assert ids("timeout.no-ghost") == ["timeout.no-ghost"]
    assert ids("esc.*") == ["esc.closes-stream"]
    assert ids("i2") == ["timeout.no-ghost"]
    assert ids("tag:smoke", "I2") == ["esc.closes-stream", "timeout.no-ghost"]
    with pytest.raises(UnknownSelectorError, match=r"did you mean 'esc.closes-stream'\?"):
        registry.select(["esc.close-stream"])
    with pytest.raises(UnknownSelectorError, match="tag:NAME"):
        registry.select(["tag:nope"])


def test_bad_definitions_are_refused_with_the_fix() -> None:
    registry = Registry()

    async def undocumented(ctx: ScenarioContext) -> None:
        pass

    def not_async(ctx: ScenarioContext) -> None:
        """Doc."""

    async def documented(ctx: ScenarioContext) -> None:
        """Doc."""

    with pytest.raises(ScenarioDefinitionError, match="needs a docstring"):
        one(registry, "a")(undocumented)  # type: ignore[operator]
    with pytest.raises(ScenarioDefinitionError, match="async def"):
        one(registry, "b")(not_async)  # type: ignore[operator]
    with pytest.raises(ScenarioDefinitionError, match="unknown provider 'gemnii'"):
        one(registry, "c", providers=("gemnii",))(documented)  # type: ignore[operator]
    one(registry, "d")(documented)  # type: ignore[operator]

    async def other(ctx: ScenarioContext) -> None:
        """Doc."""

    with pytest.raises(ScenarioDefinitionError, match="defined twice"):
        one(registry, "d")(other)  # type: ignore[operator]


def test_a_broken_scenario_module_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "broken_catalogue"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "esc.py").write_text("import no_such_module_for_esc\n")
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue("broken_catalogue")
    assert str(caught.value) == (
        "cannot load scenario module broken_catalogue.esc: ModuleNotFoundError: "
        "No module named 'no_such_module_for_esc'"
    )


def test_cases_pair_scenarios_with_their_provider_kinds() -> None:
    specs = list(example_registry())
    assert [c.name for c in plan_cases(specs)] == [
        "esc.closes-stream[openai-chat]",
        "esc.closes-stream[anthropic]",
        "timeout.no-ghost[openai-chat]",
    ]
    assert [c.name for c in plan_cases(specs, ["anthropic"])] == ["esc.closes-stream[anthropic]"]
    assert set(ALL_KINDS) == {"openai-chat", "openai-responses", "anthropic", "azure", "gemini"}


# --------------------------------------------------------------------------------- runner


async def test_correct_agent_passes_and_the_defect_fails_with_expected_seen_when() -> None:
    registry = example_registry()
    good = await run_one(registry, "esc.closes-stream", "anthropic")
    assert good.status is Status.PASSED, good.message
    bad = await run_one(registry, "esc.closes-stream", "anthropic", ignore_cancel=True)
    assert bad.status is Status.FAILED
    assert bad.message.startswith(
        "expected the client to close the provider connection within 60 ms of the cancel at +"
    )
    assert "conn#1 was still open at +" in bad.message
    assert "more events were written after the cancel" in bad.message
    assert "harness   cancel s1" in bad.timeline
    assert "provider  conn#1 events #4-" in bad.timeline
    assert bad.replay == (
        "cancel-harness run esc.closes-stream --provider anthropic --seed 7 --tempo 0.02 "
        "--target tiny --timeout 5"
    )


async def test_ghost_turn_is_caught_after_the_provider_finishes_late() -> None:
    registry = example_registry()
    assert (await run_one(registry, "timeout.no-ghost")).status is Status.PASSED
    ghost = await run_one(registry, "timeout.no-ghost", commit_after_timeout=True)
    assert ghost.status is Status.FAILED
    assert "after the provider was allowed to finish, it had changed: 2 new entries" in (
        ghost.message
    )
    assert "usage (0, 0) -> (1, " in ghost.message


async def test_missing_capability_is_not_applicable_never_passed() -> None:
    registry = Registry()

    @registry.scenario(id="compaction.esc", title="t", incident="I1", requires={"compaction"})
    async def needs_compaction(ctx: ScenarioContext) -> None:
        """Esc during compaction."""
        raise AssertionError("must not run")

    result = await run_one(registry, "compaction.esc")
    assert result.status is Status.NOT_APPLICABLE
    assert result.message == "needs capability compaction, which target 'tiny' does not have"
    assert Capability.COMPACTION not in CAPS


async def test_seeded_rng_is_stable_per_seed_scenario_and_kind() -> None:
    registry = Registry()
    draws: list[tuple[str, float]] = []

    @registry.scenario(id="rng", title="t", incident="I1")
    async def rng(ctx: ScenarioContext) -> None:
        """Nothing."""
        draws.append((ctx.kind, ctx.rng.random()))
        assert ctx.tempo(5) == pytest.approx(0.1)

    for kind in ("openai-chat", "openai-chat", "azure"):
        assert (await run_one(registry, "rng", kind)).status is Status.PASSED
    assert draws[0] == draws[1]
    assert draws[0][1] != draws[2][1]


async def test_scenario_bugs_are_errors_with_where() -> None:
    registry = Registry()

    @registry.scenario(id="boom", title="t", incident="I1")
    async def boom(ctx: ScenarioContext) -> None:
        """Nothing."""
        raise ValueError("bad step")

    @registry.scenario(id="forgot-await", title="t", incident="I1")
    async def forgot(ctx: ScenarioContext) -> None:
        """Nothing."""
        await ctx.cancel(await ctx.new_session())
        ctx.checks.no_request_after()  # type: ignore[unused-coroutine]

    result = await run_one(registry, "boom")
    assert result.status is Status.ERROR
    assert result.message.startswith("ValueError: bad step (at ")
    assert "test_scenario_runtime.py" in result.message
    result = await run_one(registry, "forgot-await")
    assert result.status is Status.ERROR
    assert "ctx.checks.no_request_after() without await, so it never ran" in result.message


async def test_target_that_does_not_start_is_did_not_start_never_a_verdict() -> None:
    class Broken(TinyAgent):
        async def start(self, endpoint: object, settings: object) -> None:
            raise TargetStartError("agent exited with status 3: missing OPENAI_API_KEY")

    registry = example_registry()
    runner = Runner(RunConfig(seed=1, timeout=5.0), Broken)
    result = await runner.run_case(Case(registry.get("timeout.no-ghost"), "openai-chat"))
    assert result.status is Status.DID_NOT_START
    assert result.message == "the target did not start: agent exited with status 3: " + (
        "missing OPENAI_API_KEY"
    )


async def test_start_up_is_outside_the_case_budget() -> None:
    class SlowToStart(TinyAgent):
        startup_timeout = 5.0

        async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None:
            await anyio.sleep(1.2)  # longer than the whole case budget below
            await super().start(endpoint, settings)

    registry = example_registry()
    runner = Runner(RunConfig(seed=1, timeout=1.0), SlowToStart)
    result = await runner.run_case(Case(registry.get("esc.closes-stream"), "openai-chat"))
    assert result.status is Status.PASSED, result.message


async def test_a_target_that_hangs_in_start_did_not_start_within_its_startup_timeout() -> None:
    class Hangs(TinyAgent):
        startup_timeout = 0.3

        async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None:
            await anyio.sleep_forever()

    registry = example_registry()
    runner = Runner(RunConfig(seed=1, timeout=30.0), Hangs)
    began = anyio.current_time()
    result = await runner.run_case(Case(registry.get("esc.closes-stream"), "openai-chat"))
    assert result.status is Status.DID_NOT_START
    assert result.message.startswith(
        "the target did not start within its startup_timeout of 0.3 s and did not report why"
    )
    assert anyio.current_time() - began < 5  # its startup_timeout + grace, not 30 s


async def test_a_hung_scenario_fails_at_the_case_timeout_with_its_last_step() -> None:
    registry = Registry()

    @registry.scenario(id="hang", title="t", incident="I3")
    async def hang(ctx: ScenarioContext) -> None:
        """Nothing."""
        ctx.fault("hold-before=headers,gate=never")
        await ctx.submit(await ctx.new_session(), "hi")
        await ctx.gate("never").wait_reached()
        await anyio.sleep_forever()

    runner = Runner(RunConfig(seed=1, timeout=0.5), tiny_factory())
    result = await runner.run_case(Case(registry.get("hang"), "openai-chat"))
    assert result.status is Status.FAILED
    assert result.message.startswith("the case did not finish within 0.5 s")
    step = r"last harness step: submit 'hi' \[ch-[0-9a-f]{8}\] to s1: accepted turn t1"
    assert re.search(step, result.message)
    assert "case timed out after 0.5 s" in result.timeline


# ----------------------------------------------------------------------------- invariants


def _bare(registry: Registry, scenario_id: str, prompt: str = "hi", *, cancel: bool) -> None:
    @registry.scenario(id=scenario_id, title="t", incident="I1")
    async def bare(ctx: ScenarioContext) -> None:
        """Invariants only."""
        ctx.fault("stream=true,hold-before=2,gate=main")
        session = await ctx.new_session()
        if not prompt.startswith("tool:"):
            sub = await ctx.submit(session, prompt)
        if prompt.startswith("tool:"):
            sub = await ctx.submit(session, f"tool: {marked_command(ctx.case_tag, 'sleep 60 #')}")
            await tool_started(ctx, 5.0)  # the marked process exists
        else:
            await ctx.gate("main").wait_reached()
        if cancel:
            await ctx.cancel(session)
            await ctx.outcome(sub)


async def test_invariant_no_orphan_tool_process() -> None:
    registry = Registry()
    _bare(registry, "tool", "tool: run it", cancel=True)
    assert (await run_one(registry, "tool")).status is Status.PASSED
    result = await run_one(registry, "tool", leak_tool=True)
    assert result.status is Status.FAILED
    assert result.message.startswith(
        "expected no process started by this case's tools left running 200 ms after"
    )
    assert "still running: pid " in result.message


async def test_invariant_nothing_in_flight_and_no_request_after_final_cancel() -> None:
    registry = Registry()
    _bare(registry, "esc", cancel=True)
    _bare(registry, "no-cancel", cancel=False)
    flying = await run_one(registry, "no-cancel")
    assert flying.status is Status.FAILED
    assert "expected no main call still in flight at the provider 200 ms after" in flying.message
    assert "request #1 POST /v1/chat/completions (call 1, main [ch-" in flying.message
    late = await run_one(registry, "esc", resend_after_cancel=True)
    assert late.status is Status.FAILED
    assert late.message.startswith("expected no model call to the provider after the final cancel")
    assert "(no submit followed it); saw request #2 POST /v1/chat/completions" in late.message
    side = await run_one(registry, "esc", request_after_cancel=True)
    assert side.status is Status.PASSED
    assert any("side traffic began after the final cancel" in w for w in side.warnings)


async def test_invariant_connections_closed_after_stop() -> None:
    registry = example_registry()
    leak = await run_one(registry, "timeout.no-ghost", leak_connection=True)
    assert leak.status is Status.PASSED  # the timed-out stream was closed by its cancel
    esc = await run_one(registry, "esc.closes-stream", leak_connection=True)
    assert esc.status is Status.FAILED  # the next turn's keep-alive connection stays open
    assert esc.message.startswith(
        "expected every provider connection to be closed once the agent stopped; at +"
    )
    assert "still open: conn#2" in esc.message


def test_guarded_run_abandons_a_target_that_swallows_cancellation() -> None:
    registry = example_registry()
    config = RunConfig(seed=3, target="tiny", timeout=1.0, stop_limit=0.2, calibrate=False)
    runner = Runner(config, tiny_factory(stubborn=True))
    cases = plan_cases(list(registry))[:2]
    run = run_guarded(runner, cases, slack=0.3)
    first, second = run.results
    assert first.status is Status.ERROR
    assert re.match(r"the case did not end within \d\.\d s: the target ignores", first.message)
    assert "target did not stop within 0.2 s; abandoned" in first.timeline
    assert second.message == "not run: the run was abandoned when " + (
        "esc.closes-stream[openai-chat] hung"
    )


def test_guarded_run_abandons_a_calibration_the_target_will_not_let_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import harness.calibration as calibration

    monkeypatch.setattr(calibration, "TURN_LIMIT", 0.2)
    monkeypatch.setattr(calibration, "STOP_LIMIT", 0.2)
    registry = example_registry()
    config = RunConfig(seed=3, target="tiny", timeout=1.0, stop_limit=0.2)
    runner = Runner(config, tiny_factory(stubborn=True))
    stubborn = runner.target_factory()
    stubborn.startup_timeout = 0.2  # type: ignore[attr-defined]
    runner.target_factory = lambda: stubborn
    run = run_guarded(runner, plan_cases(list(registry))[:2], slack=0.3)
    assert [r.status for r in run.results] == [Status.ERROR, Status.ERROR]
    assert run.results[0].message.startswith("not run: the plain calibration turn did not end")
