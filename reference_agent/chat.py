"""`python -m reference_agent chat`: the reference agent in a terminal.

    you> tell me a story
    Once upon a time...
    [completed]
    you>

Esc or Ctrl+C while a turn runs cancels it (the chat keeps running); Ctrl+C or Ctrl+D at
the idle prompt exits 0. Every turn ends with one marker line a driver can match:
`[completed]`, `[cancelled]`, `[timeout]`, `[error: WHY]` (or `[max_turns]`,
`[max_budget]`). On a tty the keys are read in non-canonical mode, without echo or signal
keys, concurrently with the running turn; the terminal is restored on every exit path.
SIGINT cancels the running turn (or exits at the prompt); SIGTERM and SIGHUP exit.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import os
import re
import signal
import stat
import sys
import termios
from collections.abc import Iterator

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from reference_agent.agent import Agent
from reference_agent.config import AgentConfig
from reference_agent.model import StopReason, TurnOutcome

PROMPT = "you> "
ESC, CTRL_C, CTRL_D, CTRL_U = "\x1b", "\x03", "\x04", "\x15"
ENTER = ("\r", "\n")
BACKSPACE = ("\x7f", "\b")
# A whole escape sequence (arrows, function keys): ignored, never read as a lone Esc.
SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|O.)")


def chat_main(config: AgentConfig, args: argparse.Namespace) -> int:
    """Run the chat on stdin/stdout until the user leaves; the exit code."""
    fd = sys.stdin.fileno()
    store = str(getattr(args, "store", ":memory:"))
    with terminal_mode(fd) as is_tty:
        chat = Chat(config, store, fd, echo=is_tty)
        try:
            return anyio.run(chat.run)
        except KeyboardInterrupt:  # a SIGINT before the signal receiver was installed
            return 130


@contextlib.contextmanager
def terminal_mode(fd: int) -> Iterator[bool]:
    """Keys one at a time, no echo, no signal keys (Ctrl+C arrives as a byte); restore after."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)  # TCSANOW: keep keys typed ahead
    try:
        yield True
    finally:
        with contextlib.suppress(termios.error, OSError):  # the terminal may be gone (hang-up)
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class Keys:
    """Keys from a file descriptor: one character, or one whole escape sequence, at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = ""
        self.eof = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._always_ready = stat.S_ISREG(os.fstat(fd).st_mode)  # epoll refuses plain files

    async def get(self) -> str:
        """The next key; "" once the input has ended."""
        while not self.pending and not self.eof:
            await self._fill()
        if not self.pending:
            return ""
        found = SEQUENCE.match(self.pending)
        size = found.end() if found else 1
        key, self.pending = self.pending[:size], self.pending[size:]
        return key

    async def _fill(self) -> None:
        if not self._always_ready:
            try:
                await anyio.wait_readable(self.fd)
            except OSError:  # not pollable (/dev/null): reads never block
                self._always_ready = True
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the terminal hung up
            data = b""
        self.eof = not data
        self.pending += self._decoder.decode(data, final=self.eof)


class Chat:
    """The prompt loop: read a line, run its turn while watching for Esc / Ctrl+C."""

    def __init__(self, config: AgentConfig, store: str, fd: int, *, echo: bool) -> None:
        self.config, self.store, self.echo = config, store, echo
        self.keys = Keys(fd)
        self.typeahead: list[str] = []  # keys typed while a turn ran: the next line's start
        self.turn_running = False
        self.cancel_sent = False
        self.at_line_start = True
        self.exit_code = 0
        self.main: anyio.CancelScope | None = None

    async def run(self) -> int:
        async with Agent(self.config, store=self.store) as agent:
            session = await agent.new_session()
            async with anyio.create_task_group() as tg:
                await tg.start(self._signals, agent, session)
                with anyio.CancelScope() as self.main:
                    self.exit_code = await self._loop(agent, session)
                tg.cancel_scope.cancel()
        return self.exit_code

    async def _loop(self, agent: Agent, session: str) -> int:
        self.write(
            f"reference agent chat ({self.config.provider} at {self.config.base_url}); "
            "Esc or Ctrl+C cancels a turn, Ctrl+D exits\n"
        )
        while True:
            self.write(PROMPT)
            line = await self.read_line()
            if line is None:
                return 0
            if line.strip():
                await self.run_turn(agent, session, line)

    async def read_line(self) -> str | None:
        """One line with simple editing; None for Ctrl+C, or Ctrl+D / end of input at once."""
        chars: list[str] = []
        while True:
            key = self.typeahead.pop(0) if self.typeahead else await self.keys.get()
            if key in ENTER:
                self.write("\n")
                return "".join(chars)
            if key == "":
                if chars:
                    self.write("\n")
                    return "".join(chars)
                self.write("\n")
                return None
            if key == CTRL_C or (key == CTRL_D and not chars):
                self.write("^C\n" if key == CTRL_C else "\n")
                return None
            if key in BACKSPACE and chars:
                chars.pop()
                self.write("\b \b", echo_only=True)
            elif key == CTRL_U:
                self.write("\b \b" * len(chars), echo_only=True)
                chars.clear()
            elif len(key) == 1 and key.isprintable():
                chars.append(key)
                self.write(key, echo_only=True)

    async def run_turn(self, agent: Agent, session: str, prompt: str) -> None:
        self.at_line_start, self.cancel_sent = True, False
        handle = await agent.submit(session, prompt, on_text=self.write)
        self.turn_running = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_keys, agent, session)
                outcome = await handle.wait()
                tg.cancel_scope.cancel()
        finally:
            self.turn_running = False
        if not self.at_line_start:
            self.write("\n")
        self.write(marker(outcome) + "\n")

    async def _watch_keys(self, agent: Agent, session: str) -> None:
        """While the turn runs: Esc and Ctrl+C cancel it; other keys wait for the next prompt."""
        while True:
            key = await self.keys.get()
            if key == "":
                return  # end of input: let the turn finish, then leave at the prompt
            if key in (ESC, CTRL_C):
                await self._cancel(agent, session)
            else:
                self.typeahead.append(key)

    async def _cancel(self, agent: Agent, session: str) -> None:
        if not self.cancel_sent:
            self.cancel_sent = True
            await agent.cancel(session)

    async def _signals(
        self, agent: Agent, session: str, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            task_status.started()  # handlers in place before the first prompt shows
            async for signum in signals:
                if signum == signal.SIGINT and self.turn_running:
                    await self._cancel(agent, session)
                    continue
                self.exit_code = 0 if signum == signal.SIGINT else 128 + signum
                if self.main is not None:
                    self.main.cancel()
                return

    def write(self, text: str, *, echo_only: bool = False) -> None:
        if (echo_only and not self.echo) or not text:
            return
        self.at_line_start = text.endswith("\n")
        with contextlib.suppress(OSError, ValueError):  # a closed terminal is not our error
            sys.stdout.write(text)
            sys.stdout.flush()


def marker(outcome: TurnOutcome) -> str:
    """The line that ends a turn: `[completed]`, `[cancelled]`, `[error: WHY]`, ..."""
    if outcome.stop_reason is StopReason.ERROR:
        why = " ".join((outcome.error or "unknown error").split())
        return f"[error: {why}]"
    return f"[{outcome.stop_reason.value}]"
