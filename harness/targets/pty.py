"""The `pty` target: a terminal agent driven by keystrokes, the way a person drives it.

The agent runs on a pseudo-terminal (its controlling terminal, in its own session). The
harness waits for its prompt marker, types a prompt and Enter, sends the cancel keys
(Esc by default; "\\x03" for Ctrl+C, which a terminal in signal mode turns into SIGINT),
and reads each turn's end from the screen: an outcome marker line (`[completed]`,
`[cancelled]`, `[timeout]`, `[error: WHY]`, as `python -m reference_agent chat` prints),
or, for an agent that prints none, the prompt marker coming back (then the turn counts as
`cancelled` if the harness sent the cancel keys during it, `completed` otherwise).

One session only (the terminal's conversation), no transcript: a black box seen through
its screen and, like every target, through the fake provider's ledger. Output is read
continuously in the background (pexpect calls in worker threads, in short bounded slices)
so a chatty agent never blocks on a full terminal. Stopping closes the terminal (SIGHUP),
then SIGTERMs, then SIGKILLs the agent's process group, and always reaps it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import pexpect  # type: ignore[import-untyped]
import pexpect.fdpexpect  # type: ignore[import-untyped]

from fake_providers.kinds import ProviderKind
from harness.target import (
    AgentSettings,
    CancelAck,
    Capability,
    Endpoint,
    Outcome,
    StreamLog,
    Submission,
    TargetStartError,
    TimelineNote,
    Transcript,
)
from harness.targets.process import (
    PROCESS_CLOSE_WITHIN,
    command_line,
    environment,
    template_values,
)
from harness.targets.reference import DEFAULTS

DEFAULT_CAPABILITIES = frozenset({Capability.CANCEL})
# The reference chat takes --turn-timeout and --stale-timeout, so those settings are honoured.
REFERENCE_CHAT_CAPABILITIES = DEFAULT_CAPABILITIES | {
    Capability.TIMEOUT,
    Capability.STALE_TIMEOUT,
}
OUTCOME_MARKER = re.compile(
    r"\[(completed|cancelled|timeout|error|max_turns|max_budget)(?:: ([^\r\n]*))?\]\r?\n"
)
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[@-_]")
SLICE = 0.1  # longest a worker thread blocks in pexpect before the loop looks again
STOP_GRACE = 2.0
TAIL = 2000
DIMENSIONS = (40, 160)  # rows, columns
# Runs first in the child: make the pty its controlling terminal (Ctrl+C -> SIGINT, the
# hang-up on close), give the terminal signals their default actions (an ignored SIGINT is
# inherited across exec, e.g. from a CI job started with `&`), then become the agent.
# (A shim, not os.fork: forking a threaded process is unsafe; subprocess's fork-exec is not.)
CTTY_SHIM = """\
import fcntl, os, signal, sys, termios
try:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
except OSError:
    pass
for name in ("SIGINT", "SIGQUIT", "SIGHUP", "SIGTERM", "SIGPIPE", "SIGTSTP", "SIGTTIN", "SIGTTOU"):
    signal.signal(getattr(signal, name), signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])
"""


def reference_chat_command(defects: Sequence[str] = ()) -> list[str]:
    """`python -m reference_agent chat` pointed at the fake provider, with `defects` on."""
    argv = [sys.executable, "-m", "reference_agent", "chat"]
    argv += ["--provider", "{provider}", "--base-url", "{base_url}", "--api-key", "{api_key}"]
    for defect in defects:
        argv += ["--defect", defect]
    return argv


def reference_chat_args(settings: AgentSettings) -> list[str]:
    """The reference chat's flags for the scenario's settings."""
    stale = settings.stale_timeout if settings.stale_timeout is not None else DEFAULTS.stale_timeout
    args = ["--stale-timeout", f"{stale:g}"] if stale is not None else []
    if settings.turn_timeout is not None:
        args += ["--turn-timeout", f"{settings.turn_timeout:g}"]
    return args


def reference_chat_target(defects: Sequence[str] = (), name: str = "pty") -> PtyTarget:
    """The plain `pty` target: the reference agent's terminal front door."""
    return PtyTarget(
        command=reference_chat_command(defects),
        defects=defects,
        name=name,
        capabilities=REFERENCE_CHAT_CAPABILITIES,
        settings_args=reference_chat_args,
    )


@dataclass(eq=False)
class PtyProcess:
    """A command on a fresh pseudo-terminal; `child` is pexpect's view of the terminal."""

    argv: list[str]
    process: subprocess.Popen[bytes]
    child: Any  # pexpect.fdpexpect.fdspawn (untyped)
    tty_name: str
    tail: _Tail
    shown: str  # the command line for messages, secrets masked

    def output_tail(self, lines: int = 8) -> str:
        return self.tail.text(lines)


class _Tail:
    """pexpect's `logfile_read`: keeps the last few KiB of everything the agent printed."""

    def __init__(self) -> None:
        self.data = ""

    def write(self, text: str) -> None:
        self.data = (self.data + text)[-TAIL:]

    def flush(self) -> None:
        pass

    def text(self, lines: int = 8) -> str:
        clean = ANSI.sub("", self.data).replace("\r", "")
        kept = [line.strip() for line in clean.splitlines() if line.strip()][-lines:]
        return " | ".join(kept) or "(no output)"


def spawn_pty(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    secrets: Sequence[str] = (),
    dimensions: tuple[int, int] = DIMENSIONS,
) -> PtyProcess:
    """Start `argv` in its own session on a new pty (its controlling terminal)."""
    argv = list(argv)
    shown = shlex.join(argv)
    for secret in secrets:
        shown = shown.replace(secret, "***") if secret else shown
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        raise TargetStartError(
            f"cannot start {shown}: {argv[0]!r} not found; check the target's command"
        )
    master, slave = os.openpty()
    try:
        termios.tcsetwinsize(slave, dimensions)
        tty_name = os.ttyname(slave)
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", CTTY_SHIM, *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        os.close(master)
        raise TargetStartError(f"cannot start {shown}: {exc}") from exc
    finally:
        os.close(slave)
    child = pexpect.fdpexpect.fdspawn(
        master, timeout=None, encoding="utf-8", codec_errors="replace", use_poll=True
    )
    tail = _Tail()
    child.logfile_read = tail
    return PtyProcess(argv, process, child, tty_name, tail, shown)


def expect_once(child: Any, patterns: list[Any], timeout: float) -> tuple[int, str, Any] | None:
    """One bounded pexpect wait: (index, text before, match), or None if nothing matched."""
    try:
        index = child.expect(patterns, timeout=timeout)
    except pexpect.TIMEOUT:
        return None
    return index, child.before if isinstance(child.before, str) else "", child.match


async def stop_pty(pty: PtyProcess, grace: float = STOP_GRACE) -> None:
    """Close the terminal (hang-up), then SIGTERM, then SIGKILL the group; always reap."""
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(OSError):
            pty.child.close()
        pid = pty.process.pid
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                _signal_group(pid, sig)
            if await anyio.to_thread.run_sync(_reaped, pty.process, grace):
                break
        _signal_group(pid, signal.SIGKILL)  # children left in the group


def _reaped(process: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass(frozen=True, slots=True)
class _End:
    reason: str
    error: str | None
    raw: str


class PtyTarget:
    """A terminal agent: one conversation, prompts typed, cancels as keystrokes."""

    # Optional facts for the runner (read with getattr): the wire formats the agent speaks and
    # the bound on its provider close after a cancel (None: the scenario's own bound).
    providers: tuple[ProviderKind, ...] | None = None
    close_within: float | None = PROCESS_CLOSE_WITHIN

    def __init__(
        self,
        *,
        command: str | Sequence[str],
        env: Mapping[str, str] | None = None,
        defects: Sequence[str] = (),
        startup_timeout: float = 30.0,
        prompt_marker: str = "you> ",
        cancel_keys: Sequence[str] = ("\x1b",),
        name: str | None = None,
        capabilities: Iterable[Capability] | None = None,
        settings_args: Callable[[AgentSettings], Sequence[str]] | None = None,
    ) -> None:
        if not prompt_marker:
            raise ValueError("a pty target needs a prompt marker: the text its idle prompt shows")
        self.command = command
        self.env = dict(env or {})
        self.defects = tuple(defects)
        self.startup_timeout = startup_timeout
        self.prompt_marker = prompt_marker
        self.cancel_keys = tuple(cancel_keys) or ("\x1b",)
        suffix = "+" + ",".join(self.defects) if self.defects else ""
        self.name = name or f"pty{suffix}"
        self.capabilities = (
            frozenset(capabilities) if capabilities is not None else DEFAULT_CAPABILITIES
        )
        self.settings_args = settings_args
        self.pty: PtyProcess | None = None
        self._stack: AsyncExitStack | None = None
        self._prompts: list[str] = []  # what each submission typed, in order
        self._cancelled: set[int] = set()  # submissions (1-based) the cancel keys were sent in
        self._ends: list[_End] = []  # how each turn ended, in order
        self._after_marker = False
        self._eof = False
        self._changed = anyio.Event()
        self._notes: list[TimelineNote] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None:
        values = template_values(endpoint)
        argv = command_line(self.command, values)
        if self.settings_args is not None:
            argv += list(self.settings_args(settings))
        env = environment(self.env, values, endpoint.env)
        env.setdefault("TERM", "xterm-256color")
        if self.defects:
            env["REFERENCE_AGENT_DEFECTS"] = ",".join(self.defects)
        self.pty = pty = spawn_pty(argv, env, secrets=[endpoint.api_key])
        self._note(f"spawned {pty.shown} (pid {pty.process.pid}) on {pty.tty_name}")
        try:
            await self._wait_prompt(pty)
            stack = AsyncExitStack()
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
        except BaseException:
            self.pty = None
            await stop_pty(pty)
            raise
        tg.start_soon(self._read_screen, pty)
        self._stack = stack

    async def _wait_prompt(self, pty: PtyProcess) -> None:
        patterns = [re.escape(self.prompt_marker), pexpect.EOF]
        with anyio.move_on_after(self.startup_timeout):
            while True:
                found = await anyio.to_thread.run_sync(expect_once, pty.child, patterns, SLICE)
                if found is None:
                    continue
                if found[0] == 0:
                    self._note(f"prompt {self.prompt_marker!r} shown")
                    return
                code = await anyio.to_thread.run_sync(_exit_code, pty.process)
                status = f" (exit {code})" if code is not None else ""
                raise TargetStartError(
                    f"{pty.shown}{status}: exited before showing its prompt "
                    f"{self.prompt_marker!r}; output: {pty.output_tail()}"
                )
        raise TargetStartError(
            f"{pty.shown}: no prompt {self.prompt_marker!r} within "
            f"{self.startup_timeout:g} s (set prompt_marker to what its idle prompt shows); "
            f"output: {pty.output_tail()}"
        )

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        try:
            if stack is not None:
                await stack.aclose()  # the reader returns within one slice
        finally:
            pty, self.pty = self.pty, None
            if pty is not None:
                await stop_pty(pty)

    # ------------------------------------------------------------------- the screen

    async def _read_screen(self, pty: PtyProcess) -> None:
        """Read everything the agent prints; record each turn's end as it appears."""
        patterns = [OUTCOME_MARKER, re.escape(self.prompt_marker), pexpect.EOF]
        while True:
            found = await anyio.to_thread.run_sync(expect_once, pty.child, patterns, SLICE)
            if found is None:
                continue
            index, before, match = found
            if index == 0:
                self._ended(match.group(1), match.group(2), before)
                self._after_marker = True
            elif index == 1:
                if not self._after_marker and len(self._ends) < len(self._prompts):
                    turn = len(self._ends) + 1  # no marker: the prompt's return ends the turn
                    self._ended(
                        "cancelled" if turn in self._cancelled else "completed", None, before
                    )
                self._after_marker = False
            else:
                self._eof = True
                self._note(f"the agent's terminal closed; output: {pty.output_tail()}")
                self._changed.set()
                return

    def _ended(self, reason: str, error: str | None, raw: str) -> None:
        self._ends.append(_End(reason, error, raw))
        self._note(f"turn pty-{len(self._ends)} ended on screen: {reason}")
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _note(self, what: str) -> None:
        self._notes.append(TimelineNote(time.monotonic_ns(), what))

    # ------------------------------------------------------------------- the target

    def _alive(self) -> PtyProcess:
        if self.pty is None:
            raise TargetStartError("the pty target was used before start()")
        if self._eof:
            raise RuntimeError(f"the agent's terminal has closed; output: {self.pty.output_tail()}")
        return self.pty

    async def new_session(self) -> str:
        self._alive()
        return "pty"  # the terminal's one conversation

    async def submit(self, session_id: str, prompt: str) -> Submission:
        pty = self._alive()
        line = " ".join(prompt.splitlines())  # Enter submits: a prompt is one line
        self._prompts.append(line)
        pty.child.send(line)
        pty.child.send("\r")
        return Submission(session_id, f"pty-{len(self._prompts)}")

    async def cancel(self, session_id: str, stream_id: str | None = None) -> CancelAck:
        pty = self._alive()
        turn = len(self._prompts)
        if turn == 0 or len(self._ends) >= turn:
            return CancelAck(False, f"pty-{turn}" if turn else "")  # nothing running on screen
        for key in self.cancel_keys:
            pty.child.send(key)
        self._cancelled.add(turn)
        return CancelAck(True, f"pty-{turn}")

    async def wait_outcome(self, submission: Submission, timeout: float) -> Outcome:
        turn = _turn_number(submission.turn_id)
        with anyio.fail_after(timeout):
            while len(self._ends) < turn and not self._eof:
                await self._changed.wait()
        if len(self._ends) < turn:
            tail = self.pty.output_tail() if self.pty is not None else ""
            return Outcome(submission.turn_id, "error", "", f"the agent exited; output: {tail}")
        end = self._ends[turn - 1]
        return Outcome(
            submission.turn_id, end.reason, _answer(end.raw, self._prompts[turn - 1]), end.error
        )

    async def transcript(self, session_id: str) -> Transcript:
        raise NotImplementedError("a pty target cannot read the transcript (no TRANSCRIPT)")

    async def stream_log(self, submission: Submission, timeout: float) -> StreamLog:
        raise NotImplementedError("a pty target has no per-turn event stream (no STREAM_EVENTS)")

    def live_pids(self) -> list[int]:
        return []  # no TOOLS capability: the agent's tools are not observable from a terminal

    def notes(self) -> list[TimelineNote]:
        return list(self._notes)


def _turn_number(turn_id: str) -> int:
    try:
        return int(turn_id.removeprefix("pty-"))
    except ValueError:
        raise ValueError(f"{turn_id!r} is not a turn of a pty target") from None


def _exit_code(process: subprocess.Popen[bytes]) -> int | None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        return process.wait(STOP_GRACE)
    return None


def _answer(raw: str, prompt: str) -> str:
    """The turn's text as the screen showed it, without the echoed prompt line."""
    lines = ANSI.sub("", raw).replace("\r\n", "\n").replace("\r", "").split("\n")
    if lines and prompt and lines[0].strip().endswith(prompt.strip()):
        lines = lines[1:]
    return "\n".join(lines).strip("\n")
