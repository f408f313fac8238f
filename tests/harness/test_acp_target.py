"""The `acp:` target against the reference agent's ACP front door, and the ACP scenarios' power.

Every ACP scenario passes on the clean reference agent and fails on each defect it names
(openai-chat only: the ACP layer is the same for every wire format).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fake_providers import ContentSpec, FakeProvider, FaultPlan, Match, tool_call
from harness.cases import Case, RunConfig, Status
from harness.runner import Runner
from harness.scenario import load_catalogue
from harness.target import AgentSettings, Capability, Endpoint, TargetStartError
from harness.targets.acp import THIRD_PARTY_CAPABILITIES, AcpTarget, reference_acp_command

pytestmark = pytest.mark.anyio

WAIT = 10.0
CATALOGUE = load_catalogue()
ACP_SPECS = [spec for spec in CATALOGUE if Capability.ACP in spec.requires]
CLAIMS = [(spec.id, defect) for spec in ACP_SPECS for defect in spec.catches]


def endpoint(provider: FakeProvider, kind: str = "openai-chat") -> Endpoint:
    return Endpoint(kind, provider.url(kind))


async def run_case(scenario_id: str, defects: tuple[str, ...] = ()) -> tuple[Status, str]:
    def target() -> AcpTarget:
        return AcpTarget(command=reference_acp_command(defects), defects=defects)

    runner = Runner(RunConfig(seed=1, defects=defects), target)
    result = await runner.run_case(Case(CATALOGUE.get(scenario_id), "openai-chat"))
    return result.status, f"{result.message}\n{result.timeline}"


def test_the_acp_scenarios_claim_both_acp_defects() -> None:
    assert {s.id for s in ACP_SPECS} == {
        "acp.cancel-stop-reason",
        "acp.nothing-after-answer",
        "acp.permission-cancelled",
        "acp.load-no-ghost-turn",
    }
    claimed = {d for _, d in CLAIMS}
    assert {"acp-update-after-response", "acp-wrong-stop-reason"} <= claimed


@pytest.mark.parametrize("scenario_id", [s.id for s in ACP_SPECS])
async def test_passes_on_the_reference_agent(scenario_id: str) -> None:
    status, story = await run_case(scenario_id)
    assert status is Status.PASSED, story


@pytest.mark.parametrize(("scenario_id", "defect"), CLAIMS, ids=[f"{s}-{d}" for s, d in CLAIMS])
async def test_fails_on_the_defect_it_names(scenario_id: str, defect: str) -> None:
    status, story = await run_case(scenario_id, (defect,))
    assert status is Status.FAILED, story
    assert story.strip(), "a failure must say what was expected and what was seen"


async def test_a_turn_streams_asks_permission_and_loads_back(provider: FakeProvider) -> None:
    shell = ContentSpec(tool_calls=(tool_call("shell", {"command": "echo hi"}),), tokens=0)
    provider.add_fault(FaultPlan(content=shell), match=Match(nth=1))
    target = AcpTarget(command=reference_acp_command())
    assert target.capabilities >= {Capability.ACP, Capability.PERMISSIONS, Capability.CANCEL}
    await target.start(endpoint(provider), AgentSettings())
    try:
        session = await target.new_session()
        assert (await target.transcript(session)).entries == ()
        turn = await target.submit(session, "Run echo hi.")
        outcome = await target.wait_outcome(turn, WAIT)
        assert outcome.stop_reason == "completed" and outcome.text
        (asked,) = target.permissions()
        assert asked.outcome == "selected" and asked.option_id == "allow"
        log = await target.stream_log(turn, WAIT)
        assert log.closed and [e.kind for e in log.terminals] == ["completed"]
        assert {e.kind for e in log.events} == {"tool", "delta", "completed"}
        assert target.updates_after_answer(turn) == []
        assert target.answer_ns(turn) == log.terminals[0].t_ns
        roles = [e.role for e in (await target.transcript(session)).entries]
        assert roles == ["user", "assistant"]
        ack = await target.cancel(session)  # nothing running: sent, but nothing cancelled
        assert not ack.cancelled
        assert target.live_pids() == []
    finally:
        await target.stop()


async def test_a_command_that_fails_to_start_names_its_stderr(provider: FakeProvider) -> None:
    crash = [sys.executable, "-c", "import sys; sys.exit('agent says: no API key')"]
    with pytest.raises(TargetStartError, match="agent says: no API key"):
        await AcpTarget(command=crash, startup_timeout=WAIT).start(
            endpoint(provider), AgentSettings()
        )
    with pytest.raises(TargetStartError, match="cannot start"):
        await AcpTarget(command=["/nonexistent/agent", "--acp"]).start(
            endpoint(provider), AgentSettings()
        )


async def test_a_command_that_never_answers_initialize_times_out(provider: FakeProvider) -> None:
    silent = [sys.executable, "-c", "import sys; sys.stderr.write('booting\\n'); sys.stdin.read()"]
    with pytest.raises(TargetStartError, match=r"initialize failed \(no answer.*booting"):
        await AcpTarget(command=silent, startup_timeout=0.5).start(
            endpoint(provider), AgentSettings()
        )


# An ACP agent that starts fine, then dies when asked for a turn, before calling any model.
DIES_ON_PROMPT = r"""
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    method, rid = msg.get("method"), msg.get("id")
    if method == "initialize":
        result = {"protocolVersion": 1, "agentCapabilities": {}}
    elif method == "session/new":
        result = {"sessionId": "s1"}
    elif method == "session/prompt":
        sys.stderr.write("pydantic ValidationError: model settings invalid\n")
        sys.exit(3)
    else:
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}), flush=True)
"""


async def test_an_agent_that_dies_before_calling_the_model_is_reported_as_such(
    tmp_path: Path,
) -> None:
    script = tmp_path / "dies.py"
    script.write_text(DIES_ON_PROMPT)

    def target() -> AcpTarget:
        return AcpTarget(
            command=[sys.executable, str(script)],
            startup_timeout=WAIT,
            capabilities=THIRD_PARTY_CAPABILITIES,
        )

    runner = Runner(RunConfig(seed=1), target)
    result = await runner.run_case(Case(CATALOGUE.get("esc.mid-stream"), "openai-chat"))
    assert result.status is Status.ERROR
    assert result.message.startswith("the agent failed before the cancel was staged: turn ")
    assert "before its model call was held at gate 'main': no request reached" in result.message
    assert "the agent exited with status 3" in result.message
    assert "pydantic ValidationError: model settings invalid" in result.message


# An ACP agent that notifies the client of things ACP does not define (as qwen-code does
# with `qwen/notify/session/prompt-suggestion`) around an ordinary answer.
CHATTY = r"""
import json, sys

def send(msg):
    print(json.dumps({"jsonrpc": "2.0", **msg}), flush=True)

for line in sys.stdin:
    msg = json.loads(line)
    method, rid = msg.get("method"), msg.get("id")
    if method == "initialize":
        send({"id": rid, "result": {"protocolVersion": 1, "agentCapabilities": {}}})
    elif method == "session/new":
        send({"id": rid, "result": {"sessionId": "s1"}})
    elif method == "session/prompt":
        for extra in ("vendor/notify/suggestion", "vendor/notify/suggestion", "_vendor/ping"):
            send({"method": extra, "params": {"sessionId": "s1", "text": "try this"}})
        send({"params": {"neither": "a method nor an id"}})
        text = {"type": "text", "text": "hello"}
        update = {"sessionUpdate": "agent_message_chunk", "content": text}
        send({"method": "session/update", "params": {"sessionId": "s1", "update": update}})
        send({"id": rid, "result": {"stopReason": "end_turn"}})
"""


async def test_notifications_acp_does_not_define_are_ignored_and_noted_once(
    tmp_path: Path, provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    target = AcpTarget(
        command=[sys.executable, str(script)],
        startup_timeout=WAIT,
        capabilities=THIRD_PARTY_CAPABILITIES,
    )
    await target.start(endpoint(provider), AgentSettings())
    try:
        session = await target.new_session()
        for _ in range(2):
            outcome = await target.wait_outcome(await target.submit(session, "Hi."), WAIT)
            assert outcome.stop_reason == "completed" and outcome.text == "hello"
    finally:
        await target.stop()
    notes = [n.what for n in target.notes() if "ignored" in n.what]
    assert notes == [
        "acp: ignored the agent's notification 'vendor/notify/suggestion' (not ACP's)",
        "acp: ignored the agent's notification '_vendor/ping' (not ACP's)",
    ]
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
