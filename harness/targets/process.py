"""Agent processes for out-of-process targets (acp, http, pty): start, template, always reap.

Real third-party agents take seconds to start, some never exit on stdin EOF, and many
spawn children. Every agent runs in its own process group; stopping closes stdin, then
SIGTERMs, then SIGKILLs the group, and always reaps it. A process that fails to start
is reported with its stderr tail.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc

from harness.target import Endpoint, TargetStartError

STDERR_TAIL = 2000
# How long an agent in another process may take to close its provider connection after a
# cancel: the cancel crosses a pipe or a socket, and a node or Python runtime wakes up to
# it. Scenarios leave the provider silent after the cancel, so a wide bound loses no power:
# an agent that does not close stays open for the whole watch window. TOML: close_within.
PROCESS_CLOSE_WITHIN = 1.0


def template_values(endpoint: Endpoint) -> dict[str, str]:
    """What `{base_url}`, `{api_key}`, `{ca_file}`, `{provider}` expand to."""
    return {
        "base_url": endpoint.base_url,
        "api_key": endpoint.api_key,
        "ca_file": endpoint.ca_file or "",
        "provider": endpoint.kind,
    }


def expand(text: str, values: Mapping[str, str]) -> str:
    """Fill `{name}` placeholders; an unknown one is a one-line TargetStartError."""
    try:
        return text.format_map(dict(values))
    except (KeyError, IndexError, ValueError) as exc:
        known = ", ".join("{" + k + "}" for k in values)
        raise TargetStartError(f"bad placeholder {exc} in {text!r}; known: {known}") from None


def command_line(command: str | Sequence[str], values: Mapping[str, str]) -> list[str]:
    parts = shlex.split(command) if isinstance(command, str) else list(command)
    if not parts:
        raise TargetStartError("the target's command is empty; give the agent's command line")
    return [expand(part, values) for part in parts]


def environment(
    template: Mapping[str, str],
    values: Mapping[str, str],
    endpoint_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The agent's environment: ours, then the endpoint's (a proxy), then the target's own."""
    env = dict(os.environ)
    env.update(endpoint_env or {})
    env.update({key: expand(value, values) for key, value in template.items()})
    return env


@dataclass(eq=False)
class AgentProcess:
    """One agent process in its own group, with stdin/stdout pipes and captured stderr."""

    argv: list[str]
    env: dict[str, str]
    process: anyio.abc.Process | None = None
    stderr: bytearray = field(default_factory=bytearray)
    _tg: anyio.abc.TaskGroup | None = None

    async def start(self, tg: anyio.abc.TaskGroup) -> anyio.abc.Process:
        """Spawn; stderr is collected in the background (keep the last few KiB)."""
        try:
            self.process = await anyio.open_process(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            raise TargetStartError(
                f"cannot start {shlex.join(self.argv)}: {exc.strerror or exc}; "
                "check the target's command"
            ) from exc
        self._tg = tg
        tg.start_soon(self._collect_stderr)
        return self.process

    async def _collect_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        try:
            async for chunk in self.process.stderr:
                self.stderr += chunk
                del self.stderr[:-STDERR_TAIL]
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def stderr_tail(self) -> str:
        text = self.stderr.decode("utf-8", "replace").strip()
        return text[-STDERR_TAIL:] if text else "(no stderr)"

    def failed(self, what: str) -> TargetStartError:
        """A one-line start error naming the command and its stderr tail."""
        code = self.process.returncode if self.process is not None else None
        status = f" (exit {code})" if code is not None else ""
        tail = " | ".join(self.stderr_tail().splitlines()[-5:])
        return TargetStartError(f"{shlex.join(self.argv)}{status}: {what}; stderr: {tail}")

    async def stop(self, grace: float = 2.0) -> None:
        """Close stdin, then SIGTERM, then SIGKILL the whole group; always reap."""
        process = self.process
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.stdin is not None:
                with contextlib.suppress(
                    anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
                ):
                    await process.stdin.aclose()
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    _signal_group(process.pid, sig)
                with anyio.move_on_after(grace):
                    await process.wait()
                    break
            _signal_group(process.pid, signal.SIGKILL)  # children left in the group
            await process.aclose()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
