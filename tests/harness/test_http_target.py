"""The `http` target: the harness driving an agent over the HTTP+SSE API, from outside.

Real processes and sockets: the default target starts `python -m reference_agent serve`
against the fake provider. A user relies on it to report what the server did (accepted
ids, cancel answers, each turn's own stream, the transcript), to leave no process
behind, and to say clearly why an agent would not start.
"""

from __future__ import annotations

import os
import sys

import anyio
import pytest

from fake_providers import FakeProvider
from fake_providers.ledger import ConnectionRecord, Ledger, now_ns
from harness.target import AgentSettings, Capability, Endpoint, TargetStartError
from harness.targets.http import HttpTarget
from reference_agent.config import AgentConfig
from reference_agent.http_api import serve

pytestmark = pytest.mark.anyio

WAIT = 5.0


def endpoint(provider: FakeProvider) -> Endpoint:
    return Endpoint("openai-chat", provider.url("openai"), "sk-test")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_default_command_drives_the_reference_server_and_leaves_no_process(
    provider: FakeProvider,
) -> None:
    provider.add_fault("body-contains=held-xq1,hold-before=3,gate=g")
    target = HttpTarget()
    assert Capability.STREAM_EVENTS in target.capabilities
    assert Capability.TOOLS not in target.capabilities
    await target.start(endpoint(provider), AgentSettings())
    try:
        pid = target.pid
        assert pid is not None and alive(pid)
        session = await target.new_session()
        held = await target.submit(session, "held-xq1")
        assert held.turn_id and held.stream_id
        await provider.gate("g").wait_reached()
        t = now_ns()
        ack = await target.cancel(session, held.stream_id)
        assert (ack.cancelled, ack.turn_id, ack.stream_id) == (True, held.turn_id, held.stream_id)
        assert (await target.wait_outcome(held, WAIT)).stop_reason == "cancelled"
        log = await target.stream_log(held, WAIT)
        assert log.closed and [e.kind for e in log.terminals] == ["cancelled"]
        [request] = provider.ledger.requests()

        def closed(ledger: Ledger) -> ConnectionRecord | None:
            return ledger.closed_by_client_within(t, WAIT, connection_id=request.connection_id)

        await provider.ledger.wait_for(closed, WAIT, "the server to close its provider call")

        stale = await target.cancel(session, held.stream_id)
        assert (stale.cancelled, stale.turn_id) == (False, held.turn_id)
        done = await target.submit(session, "plain")
        outcome = await target.wait_outcome(done, WAIT)
        assert (outcome.turn_id, outcome.stop_reason) == (done.turn_id, "completed")
        log = await target.stream_log(done, WAIT)
        assert log.closed and log.events[-1].kind == "completed"
        assert "".join(e.text for e in log.events if e.kind == "delta") == outcome.text
        assert {e.turn_id for e in log.events} == {done.turn_id}

        transcript = await target.transcript(session)
        assert [(e.role, e.finish_reason) for e in transcript.entries] == [
            ("user", None),
            ("assistant", "stop"),
        ]
        assert transcript.turn_ids == (done.turn_id,) and transcript.usage[1] > 0
        assert target.live_pids() == [] and target.notes() == []
    finally:
        await target.stop()
    assert not alive(pid)


async def test_url_target_talks_to_a_running_server(provider: FakeProvider) -> None:
    config = AgentConfig(
        base_url=provider.url("openai"), api_key="sk-test", memory_extraction=False
    )
    async with anyio.create_task_group() as tg:
        url = await tg.start(serve, config)
        target = HttpTarget(url=url + "/")
        await target.start(endpoint(provider), AgentSettings())
        try:
            assert target.pid is None
            session = await target.new_session()
            submission = await target.submit(session, "hello")
            assert (await target.wait_outcome(submission, WAIT)).stop_reason == "completed"
            idle = await target.cancel(session)
            assert (idle.cancelled, idle.stream_id) == (False, "")
            with pytest.raises(TargetStartError, match="404: no session 'nope'"):
                await target.submit("nope", "hello")
        finally:
            await target.stop()
        tg.cancel_scope.cancel()


async def test_an_agent_that_exits_at_once_reports_its_stderr(provider: FakeProvider) -> None:
    script = (
        "import os, sys; print('bad --base-url {base_url}', os.environ['REFERENCE_AGENT_DEFECTS'],"
        " file=sys.stderr); sys.exit(3)"
    )
    target = HttpTarget(
        command=[sys.executable, "-c", script], defects=["lose-cancel-before-start"]
    )
    assert target.name == "http+lose-cancel-before-start"
    with anyio.fail_after(WAIT), pytest.raises(TargetStartError) as caught:
        await target.start(endpoint(provider), AgentSettings())
    message = str(caught.value)
    assert "exit 3" in message and "serving http://" in message
    assert f"bad --base-url {provider.url('openai')} lose-cancel-before-start" in message
    await target.stop()  # harmless after a failed start


async def test_an_agent_that_never_prints_its_url_times_out(provider: FakeProvider) -> None:
    script = "import sys, time; print('starting', file=sys.stderr, flush=True); time.sleep(60)"
    target = HttpTarget(command=[sys.executable, "-c", script], startup_timeout=0.5)
    with anyio.fail_after(WAIT), pytest.raises(TargetStartError) as caught:
        await target.start(endpoint(provider), AgentSettings())
    assert "within 0.5s" in str(caught.value)
    assert target.pid is not None and not alive(target.pid)


async def test_an_unreachable_url_is_a_start_error(provider: FakeProvider) -> None:
    target = HttpTarget(url="http://127.0.0.1:9", startup_timeout=2.0)
    with anyio.fail_after(WAIT), pytest.raises(TargetStartError, match="cannot reach"):
        await target.start(endpoint(provider), AgentSettings())


def test_the_default_command_carries_defects_and_the_settings_the_cli_knows() -> None:
    target = HttpTarget(defects=["cancel-not-owner-scoped"])
    assert target.name == "http+cancel-not-owner-scoped"
    argv = target.default_command(
        Endpoint("anthropic", "http://127.0.0.1:1"), AgentSettings(turn_timeout=3.0)
    )
    assert argv[:4] == [sys.executable, "-m", "reference_agent", "serve"]
    switches = [a for a in argv[4:] if a in ("--no-memory-extraction", "--no-stream")]
    options = [a for a in argv[4:] if a not in switches]
    pairs = dict(zip(options[::2], options[1::2], strict=True))
    assert pairs["--defect"] == "cancel-not-owner-scoped"
    assert pairs["--turn-timeout"] == "3" and pairs["--stale-timeout"] == "5"
    assert pairs["--provider"] == "{provider}" and pairs["--port"] == "0"
    assert pairs["--max-retries"] == "2"  # the in-process target's defaults, as flags
    assert switches == ["--no-memory-extraction"]  # memory extraction is off by default


async def test_contradictory_settings_are_refused(provider: FakeProvider) -> None:
    with pytest.raises(ValueError, match="not both"):
        HttpTarget(command="agent serve", url="http://127.0.0.1:1")
    target = HttpTarget(url="http://127.0.0.1:1", defects=["cancel-not-owner-scoped"])
    with pytest.raises(TargetStartError, match="cannot switch on defects"):
        await target.start(endpoint(provider), AgentSettings())
