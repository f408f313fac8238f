"""Tools, and the cancellation contract: a cancelled tool leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable

import anyio
import pytest

from reference_agent.defective import policy_for
from reference_agent.defects import Defect, Defects
from reference_agent.model import ToolCall
from reference_agent.process_table import live_processes
from reference_agent.tools import ToolError, ToolRegistry, alive

pytestmark = pytest.mark.anyio

SLEEPS = 30  # s: how long the tools under cancel would run if nobody stopped them


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in group `pgid`."""
    return [p.pid for p in live_processes() if p.pgid == pgid]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for process state we cannot await (other processes' lifetimes)."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def cancel_once_running(
    registry: ToolRegistry, call: ToolCall, members: int
) -> tuple[int, float, list[str]]:
    """Run `call`, cancel it once its group has `members` live processes.

    Returns the group id, the seconds from cancel to `run` having unwound, and how the
    task ended ("returned" or "cancelled").
    """
    started = anyio.Event()
    pids: list[int] = []
    ended: list[str] = []

    def on_started(pid: int) -> None:
        pids.append(pid)
        started.set()

    async def run_tool() -> None:
        try:
            await registry.run(call, on_started=on_started)
            ended.append("returned")
        except anyio.get_cancelled_exc_class():
            ended.append("cancelled")
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_tool)
        await started.wait()
        await wait_until(lambda: len(group_members(pids[0])) >= members)
        t0 = time.monotonic()
        tg.cancel_scope.cancel()
    return pids[0], time.monotonic() - t0, ended


async def test_shell_returns_exit_code_and_combined_output() -> None:
    registry = ToolRegistry(tool_timeout=10)
    call = ToolCall("c1", "shell", {"command": "echo out; echo err >&2; exit 3"})
    assert await registry.run(call) == "exit 3\nout\nerr\n"
    ok = ToolCall("c2", "shell", {"command": "printf 'a b'"})
    assert await registry.run(ok) == "exit 0\na b"


async def test_echo_and_sleep() -> None:
    registry = ToolRegistry(tool_timeout=10)
    echo = ToolCall("c1", "echo", {"text": "hello"})
    assert await registry.run(echo) == "hello"
    sleep = ToolCall("c2", "sleep", {"seconds": 0.01})
    assert await registry.run(sleep) == "slept 0.01 s"
    assert [s.name for s in registry.specs()] == ["echo", "shell", "sleep"]


async def test_output_is_bounded() -> None:
    registry = ToolRegistry(tool_timeout=10, output_limit=1000)
    call = ToolCall("c1", "shell", {"command": "head -c 200000 /dev/zero | tr '\\0' x"})
    result = await registry.run(call)
    assert result == "exit 0\n" + "x" * 1000 + "\n[output truncated]"


async def test_background_jobs_do_not_outlive_a_finished_command() -> None:
    pids: list[int] = []
    registry = ToolRegistry(tool_timeout=10)
    call = ToolCall("c1", "shell", {"command": "sleep 30 & echo done"})
    with anyio.fail_after(5):
        result = await registry.run(call, on_started=pids.append)
    assert result == "exit 0\ndone\n"
    assert not alive(pids[0])


async def test_cancel_kills_the_whole_process_group() -> None:
    registry = ToolRegistry(tool_timeout=60)
    call = ToolCall("c1", "shell", {"command": "sleep 30 & sleep 30"})
    pgid, elapsed, ended = await cancel_once_running(registry, call, members=3)
    assert ended == ["cancelled"]
    assert elapsed < SLEEPS / 3  # the cancel did not wait for the 30 s sleeps (load-proof)
    assert not alive(pgid)
    assert group_members(pgid) == []


async def test_cancel_sigkills_a_group_that_ignores_sigterm() -> None:
    registry = ToolRegistry(tool_timeout=60, kill_grace=0.2)
    call = ToolCall("c1", "shell", {"command": "trap '' TERM; sleep 30 & sleep 30"})
    pgid, elapsed, ended = await cancel_once_running(registry, call, members=3)
    assert ended == ["cancelled"]
    assert 0.2 <= elapsed < SLEEPS / 3  # the TERM grace, then KILL, not the 30 s sleeps
    assert not alive(pgid)


async def test_defect_tool_survives_cancel_leaves_the_process_running() -> None:
    policy = policy_for(Defects.of([Defect.TOOL_SURVIVES_CANCEL]))
    registry = ToolRegistry(tool_timeout=60, policy=policy)
    call = ToolCall("c1", "sleep", {"seconds": 30})
    pgid, elapsed, ended = await cancel_once_running(registry, call, members=1)
    try:
        assert ended == ["cancelled"]
        assert elapsed < SLEEPS / 3  # it stopped waiting (not for the 30 s sleep)...
        assert alive(pgid)  # ...and left the orphan running
    finally:
        os.killpg(pgid, signal.SIGKILL)
        await wait_until(lambda: not alive(pgid))


async def test_cancel_before_start_spawns_nothing() -> None:
    pids: list[int] = []
    registry = ToolRegistry(tool_timeout=60)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await registry.run(ToolCall("c1", "sleep", {"seconds": 30}), on_started=pids.append)
    assert pids == []


async def test_timeout_raises_tool_error_and_kills_the_group() -> None:
    pids: list[int] = []
    registry = ToolRegistry(tool_timeout=0.2)
    call = ToolCall("c1", "shell", {"command": "sleep 30 & sleep 30"})
    with anyio.fail_after(5), pytest.raises(ToolError, match=r"timed out after 0\.2 s"):
        await registry.run(call, on_started=pids.append)
    assert not alive(pids[0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (ToolCall("c1", "rm_rf", {}), "unknown tool 'rm_rf'; available: echo, shell, sleep"),
        (ToolCall("c1", "shell", {}), "argument 'command' must be a string"),
        (ToolCall("c1", "shell", {"command": "  "}), "must not be empty"),
        (ToolCall("c1", "echo", {"text": 3}), "argument 'text' must be a string"),
        (ToolCall("c1", "sleep", {"seconds": "1"}), "argument 'seconds' must be a number"),
        (ToolCall("c1", "sleep", {"seconds": True}), "argument 'seconds' must be a number"),
        (ToolCall("c1", "sleep", {"seconds": -1}), "must be finite and >= 0"),
    ],
)
async def test_bad_calls_raise_tool_error(call: ToolCall, message: str) -> None:
    with pytest.raises(ToolError, match=re.escape(message)):
        await ToolRegistry().run(call)
