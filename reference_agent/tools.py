"""Tools the model can call, two of which run a subprocess.

Cancellation contract (INCIDENTS.md, "cancel during tool execution leaves the tool's
subprocess running"): `ToolRegistry.run` is awaited inside the turn's cancel scope. Every
subprocess starts in its own process group; when the scope is cancelled, the run times
out or the command finishes, the whole group is killed (SIGTERM, then SIGKILL after a
grace) and gone before `run` returns or the cancellation propagates. So no tool process
outlives its call, not even background jobs of a shell command.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import Process

from reference_agent import process_table
from reference_agent.model import ToolCall
from reference_agent.policy import Policy
from reference_agent.providers.base import ToolSpec

OUTPUT_LIMIT = 64 * 1024
KILL_GRACE = 0.5  # seconds between SIGTERM and SIGKILL
_REAP_LIMIT = 2.0  # seconds to wait for the group to vanish after SIGKILL


class ToolError(Exception):
    """The tool call failed (unknown tool, bad arguments, timeout); the text says why."""


def alive(pid: int) -> bool:
    """True if the process `pid` or any member of process group `pid` still runs.

    Reads the process table (zombies count as dead); without /proc, falls back to
    signal 0, where zombies count as alive.
    """
    if not process_table.available():
        return _alive_by_signal(pid)
    return any(p.pid == pid or p.pgid == pid for p in process_table.live_processes())


def _alive_by_signal(pid: int) -> bool:
    for send in (os.kill, os.killpg):
        try:
            send(pid, 0)
            return True
        except ProcessLookupError:
            continue
        except PermissionError:
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(pgid, sig)


async def _wait_group_gone(process: Process) -> None:
    await process.wait()
    # Reparented group members are not our children: nothing to await, so poll.
    while alive(process.pid):  # noqa: ASYNC110
        await anyio.sleep(0.005)


async def _kill_group(process: Process, grace: float) -> None:
    """SIGTERM the group, SIGKILL what is left after `grace`, wait until it is gone.

    Shielded: this runs while the turn is being cancelled, and an orphan is the bug.
    """
    with anyio.CancelScope(shield=True):
        pgid = process.pid  # start_new_session: the leader's pid is the group id
        for sig, limit in ((signal.SIGTERM, grace), (signal.SIGKILL, _REAP_LIMIT)):
            if process.returncode is not None and not alive(pgid):
                break
            _signal_group(pgid, sig)
            with anyio.move_on_after(limit):
                await _wait_group_gone(process)
        if process.returncode is not None:  # else unkillable (D state): do not hang here
            await process.aclose()


async def _drain(process: Process, limit: int, sink: bytearray) -> None:
    """Read stdout to EOF, keeping the first `limit` bytes so the child never blocks."""
    assert process.stdout is not None
    async for chunk in process.stdout:
        if len(sink) < limit:
            sink += chunk[: limit - len(sink)]
        elif not sink.endswith(b"\n[output truncated]"):
            sink += b"\n[output truncated]"


def _arg(call: ToolCall, name: str, kind: type[Any] | tuple[type[Any], ...], what: str) -> Any:
    value = call.arguments.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ToolError(f"tool {call.name!r}: argument {name!r} must be {what}")
    return value


class ToolRegistry:
    """The agent's tools. `tool_timeout` bounds each subprocess call (seconds)."""

    def __init__(
        self,
        tool_timeout: float = 60.0,
        *,
        output_limit: int = OUTPUT_LIMIT,
        kill_grace: float = KILL_GRACE,
        policy: Policy | None = None,
    ) -> None:
        self.tool_timeout = tool_timeout
        self.output_limit = output_limit
        self.kill_grace = kill_grace
        self.policy = policy or Policy()  # what a cancelled call does to its tool
        # Only a defective policy abandons processes here; shutdown reaps them so a run
        # that caught the bug does not leave the machine littered with it.
        self.orphans: list[Process] = []

    async def kill(self, process: Process) -> None:
        """Kill the tool's whole process group and wait until it is gone."""
        await _kill_group(process, self.kill_grace)

    def abandon(self, process: Process) -> None:
        """Stop waiting for the tool and leave its group running, until `reap_orphans`."""
        self.orphans.append(process)

    async def reap_orphans(self) -> None:
        """Kill and reap every process group a defective cancel left behind."""
        orphans, self.orphans = self.orphans, []
        for process in orphans:
            await _kill_group(process, self.kill_grace)

    def specs(self) -> tuple[ToolSpec, ...]:
        def obj(props: dict[str, object], required: list[str]) -> dict[str, object]:
            return {"type": "object", "properties": props, "required": required}

        return (
            ToolSpec(
                "echo",
                "Return the given text unchanged.",
                obj({"text": {"type": "string"}}, ["text"]),
            ),
            ToolSpec(
                "shell",
                "Run a command with /bin/sh -c; returns 'exit N' and its combined output.",
                obj({"command": {"type": "string"}}, ["command"]),
            ),
            ToolSpec(
                "sleep",
                "Sleep for the given number of seconds (in a subprocess).",
                obj({"seconds": {"type": "number", "minimum": 0}}, ["seconds"]),
            ),
        )

    async def run(
        self,
        call: ToolCall,
        *,
        on_started: Callable[[int], None] | None = None,
    ) -> str:
        """Run one tool call and return its result text; raises `ToolError` on failure."""
        if call.name == "echo":
            return str(_arg(call, "text", str, "a string"))
        if call.name == "shell":
            command = _arg(call, "command", str, "a string")
            if not command.strip():
                raise ToolError("tool 'shell': argument 'command' must not be empty")
            code, output = await self._subprocess(call, ["/bin/sh", "-c", command], on_started)
            return f"exit {code}\n{output}"
        if call.name == "sleep":
            seconds = float(_arg(call, "seconds", (int, float), "a number"))
            if not math.isfinite(seconds) or seconds < 0:
                raise ToolError("tool 'sleep': argument 'seconds' must be finite and >= 0")
            argv = ["sleep", f"{seconds:.6f}"]
            code, output = await self._subprocess(call, argv, on_started)
            return f"slept {seconds:g} s" if code == 0 else f"exit {code}\n{output}"
        known = ", ".join(s.name for s in self.specs())
        raise ToolError(f"unknown tool {call.name!r}; available: {known}")

    async def _subprocess(
        self,
        call: ToolCall,
        argv: list[str],
        on_started: Callable[[int], None] | None,
    ) -> tuple[int, str]:
        """Run `argv` in a new process group; the group never outlives this call."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        with anyio.CancelScope(shield=True):  # a cancel mid-spawn would orphan the child
            process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        sink = bytearray()
        try:
            if on_started is not None:
                on_started(process.pid)
            with anyio.move_on_after(self.tool_timeout) as deadline:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_drain, process, self.output_limit, sink)
                    code = await process.wait()
                    # The command is done; its background jobs must not outlive the call
                    # (they also hold the pipe open, so the drain would never see EOF).
                    _signal_group(process.pid, signal.SIGKILL)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self.policy.tool_cancelled(self, process)
            raise
        except BaseException:
            await _kill_group(process, self.kill_grace)
            raise
        if deadline.cancelled_caught:
            await _kill_group(process, self.kill_grace)
            raise ToolError(
                f"tool {call.name!r} timed out after {self.tool_timeout:g} s; "
                "its process group was killed"
            )
        await _kill_group(process, self.kill_grace)  # normally already gone: just closes
        return code, sink.decode("utf-8", errors="replace")
