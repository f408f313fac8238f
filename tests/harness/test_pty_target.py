"""PtyTarget: the reference chat and a tiny marker-less terminal agent, driven by keystrokes."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fake_providers.provider import FakeProvider
from harness.target import AgentSettings, Capability, Endpoint, Submission, TargetStartError
from harness.targets import make_target
from harness.targets.pty import PtyTarget, reference_chat_command

pytestmark = pytest.mark.anyio

TURN = "header=x-agent-purpose:turn"
WAIT = 10.0

# A terminal agent of the plainest kind: cooked-mode input(), no outcome markers, Ctrl+C is
# SIGINT. Each line is one streamed request to the provider; the answer's size is printed.
PLAIN_AGENT = """
import json, os, sys, urllib.request
url = os.environ["AGENT_BASE_URL"] + "/chat/completions"
while True:
    try:
        line = input("ready> ")
    except EOFError:
        break
    body = json.dumps({"model": "m", "stream": True,
                       "messages": [{"role": "user", "content": line}]}).encode()
    request = urllib.request.Request(url, body, {"content-type": "application/json",
                                                 "x-agent-purpose": "turn"})
    try:
        with urllib.request.urlopen(request) as response:
            print("answer of", len(response.read()), "bytes")
    except KeyboardInterrupt:
        print("interrupted")
"""


def endpoint(provider: FakeProvider) -> Endpoint:
    return Endpoint("openai-chat", provider.url("openai"))


@pytest.fixture
async def chat(provider: FakeProvider) -> AsyncIterator[PtyTarget]:
    target = make_target("pty")
    assert isinstance(target, PtyTarget)
    await target.start(endpoint(provider), AgentSettings())
    try:
        yield target
    finally:
        await target.stop()


async def test_plain_pty_is_the_reference_chat(chat: PtyTarget, provider: FakeProvider) -> None:
    assert chat.name == "pty"
    assert Capability.CANCEL in chat.capabilities
    assert not {Capability.SESSIONS, Capability.TRANSCRIPT} & chat.capabilities
    provider.add_fault(f"{TURN},text=hi there")
    session = await chat.new_session()
    first = await chat.submit(session, "hello")
    outcome = await chat.wait_outcome(first, WAIT)
    assert (outcome.turn_id, outcome.stop_reason, outcome.text) == (
        "pty-1",
        "completed",
        "hi there",
    )
    second = await chat.submit(session, "again")
    assert (await chat.wait_outcome(second, WAIT)).stop_reason == "completed"
    assert any("ended on screen: completed" in n.what for n in chat.notes())


async def test_cancel_mid_stream_closes_the_connection(
    chat: PtyTarget, provider: FakeProvider
) -> None:
    provider.add_fault(f"{TURN},hold-before=3,gate=g,times=1")
    session = await chat.new_session()
    turn = await chat.submit(session, "a long story")
    await provider.gate("g").wait_reached(timeout=WAIT)
    cancelled_at = time.monotonic_ns()
    ack = await chat.cancel(session)
    assert ack.cancelled and ack.turn_id == "pty-1"
    assert (await chat.wait_outcome(turn, WAIT)).stop_reason == "cancelled"
    await provider.ledger.wait_for(
        lambda ledger: ledger.closed_by_client_within(cancelled_at, 2.0), timeout=WAIT
    )
    assert not (await chat.cancel(session)).cancelled  # nothing runs now
    follow = await chat.submit(session, "next")
    assert (await chat.wait_outcome(follow, WAIT)).stop_reason == "completed"


async def test_wait_outcome_times_out_while_the_turn_runs(
    chat: PtyTarget, provider: FakeProvider
) -> None:
    provider.add_fault(f"{TURN},hold-before=2,gate=g,times=1")
    turn = await chat.submit(await chat.new_session(), "wait")
    await provider.gate("g").wait_reached(timeout=WAIT)
    with pytest.raises(TimeoutError):
        await chat.wait_outcome(turn, 0.2)
    provider.gate("g").release()
    assert (await chat.wait_outcome(turn, WAIT)).stop_reason == "completed"


async def test_the_reference_chat_honours_the_turn_timeout(provider: FakeProvider) -> None:
    target = make_target("pty")
    assert Capability.TIMEOUT in target.capabilities
    provider.add_fault(f"{TURN},hold-before=2,gate=never")
    await target.start(endpoint(provider), AgentSettings(turn_timeout=0.3))
    try:
        turn = await target.submit(await target.new_session(), "slow")
        assert (await target.wait_outcome(turn, WAIT)).stop_reason == "timeout"
    finally:
        await target.stop()


async def test_a_plain_terminal_agent_ends_turns_by_its_prompt(
    provider: FakeProvider, tmp_path: Path
) -> None:
    script = tmp_path / "plain_agent.py"
    script.write_text(PLAIN_AGENT)
    target = PtyTarget(
        command=[sys.executable, str(script)],
        env={"AGENT_BASE_URL": "{base_url}"},
        prompt_marker="ready> ",
        cancel_keys=("\x03",),  # Ctrl+C: SIGINT through the pty's line discipline
    )
    provider.add_fault(f"{TURN},hold-before=3,gate=g,times=1")
    await target.start(endpoint(provider), AgentSettings())
    try:
        session = await target.new_session()
        held = await target.submit(session, "first")
        await provider.gate("g").wait_reached(timeout=WAIT)
        cancelled_at = time.monotonic_ns()
        assert (await target.cancel(session)).cancelled
        outcome = await target.wait_outcome(held, WAIT)
        assert outcome.stop_reason == "cancelled"
        assert outcome.text.endswith("interrupted")  # after the terminal's own "^C" echo
        await provider.ledger.wait_for(
            lambda ledger: ledger.closed_by_client_within(cancelled_at, 2.0), timeout=WAIT
        )
        done = await target.submit(session, "second")
        outcome = await target.wait_outcome(done, WAIT)
        assert outcome.stop_reason == "completed" and outcome.text.startswith("answer of")
    finally:
        await target.stop()
    assert target.pty is None


async def test_a_command_that_dies_is_a_start_error_with_its_output(
    provider: FakeProvider,
) -> None:
    code = "print('fatal: no API key configured'); raise SystemExit(3)"
    target = PtyTarget(command=[sys.executable, "-c", code])
    with pytest.raises(TargetStartError) as caught:
        await target.start(endpoint(provider), AgentSettings())
    message = str(caught.value)
    assert "(exit 3)" in message and "fatal: no API key configured" in message
    assert "\n" not in message


async def test_a_prompt_that_never_shows_is_a_start_error(provider: FakeProvider) -> None:
    # 3 s: under load (avg 10 on 2 cores) the agent's interpreter printed nothing in 1 s
    target = PtyTarget(command=reference_chat_command(), prompt_marker="$$ ", startup_timeout=3)
    with pytest.raises(TargetStartError, match=r"no prompt '\$\$ ' within 3 s .*reference agent"):
        await target.start(endpoint(provider), AgentSettings())


async def test_a_missing_program_is_a_start_error(provider: FakeProvider) -> None:
    target = PtyTarget(command="no-such-agent-xyz --chat")
    with pytest.raises(TargetStartError, match="'no-such-agent-xyz' not found"):
        await target.start(endpoint(provider), AgentSettings())


async def test_unsupported_operations_say_so(chat: PtyTarget) -> None:
    with pytest.raises(NotImplementedError, match="TRANSCRIPT"):
        await chat.transcript("pty")
    with pytest.raises(NotImplementedError, match="STREAM_EVENTS"):
        await chat.stream_log(Submission("pty", "pty-1"), 0.1)
    assert chat.live_pids() == []
