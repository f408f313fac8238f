"""`python -m reference_agent chat` on a real pseudo-terminal, against the fake provider."""

from __future__ import annotations

import os
import signal
import sys
import termios
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread
import pexpect  # type: ignore[import-untyped]
import pytest

from fake_providers.provider import FakeProvider
from harness.targets.process import environment
from harness.targets.pty import PtyProcess, spawn_pty, stop_pty

pytestmark = pytest.mark.anyio

TURN = "header=x-agent-purpose:turn"
WAIT = 10.0


class Chat:
    """The chat on its pty; every wait is a bounded pexpect wait in a worker thread."""

    def __init__(self, pty: PtyProcess) -> None:
        self.pty = pty

    async def expect(self, pattern: Any, timeout: float = WAIT) -> str:
        await anyio.to_thread.run_sync(self.pty.child.expect, pattern, timeout)
        before: str = self.pty.child.before
        return before

    def send(self, text: str) -> None:
        self.pty.child.send(text)

    async def exit_code(self) -> int:
        code: int = await anyio.to_thread.run_sync(self.pty.process.wait, WAIT)
        return code

    def lflag(self) -> int:
        flags: int = termios.tcgetattr(self.pty.child.child_fd)[3]
        return flags


@pytest.fixture
async def chat(provider: FakeProvider) -> AsyncIterator[Chat]:
    argv = [sys.executable, "-m", "reference_agent", "chat", "--provider", "openai-chat"]
    argv += ["--base-url", provider.url("openai"), "--api-key", "sk-test"]
    pty = spawn_pty(argv, environment({"REFERENCE_AGENT_DEFECTS": ""}, {}))
    try:
        session = Chat(pty)
        await session.expect("you> ")
        yield session
    finally:
        await stop_pty(pty)


async def test_a_prompt_streams_its_answer_and_completes(
    chat: Chat, provider: FakeProvider
) -> None:
    provider.add_fault(f"{TURN},text=hello from the fake model")
    assert not chat.lflag() & (termios.ECHO | termios.ICANON)  # keys one at a time
    chat.send("say hello\r")
    answer = await chat.expect(r"\[completed\]\r\n")
    assert answer == "say hello\r\nhello from the fake model\r\n"
    await chat.expect("you> ")


@pytest.mark.parametrize("key", ["\x1b", "\x03"], ids=["esc", "ctrl-c"])
async def test_a_key_mid_turn_cancels_it_and_the_chat_goes_on(
    chat: Chat, provider: FakeProvider, key: str
) -> None:
    provider.add_fault(f"{TURN},hold-before=3,gate=g,times=1")
    chat.send("tell me a long story\r")
    await provider.gate("g").wait_reached()
    cancelled_at = time.monotonic_ns()
    chat.send(key)
    await chat.expect(r"\[cancelled\]\r\n")
    closed = await provider.ledger.wait_for(
        lambda ledger: ledger.closed_by_client_within(cancelled_at, 2.0),
        timeout=WAIT,
        what="the client to close the held stream",
    )
    assert closed.closed_ns is not None
    await chat.expect("you> ")
    chat.send("and now?\r")
    await chat.expect(r"\[completed\]\r\n")
    await chat.expect("you> ")
    assert chat.pty.process.poll() is None  # still running


async def test_provider_errors_and_timeouts_have_their_own_markers(
    chat: Chat, provider: FakeProvider
) -> None:
    provider.add_fault(f"{TURN},status=400,times=1")
    chat.send("fail please\r")
    error = await chat.expect(r"\]\r\n")
    assert "[error: " in error and "400" in error
    await chat.expect("you> ")


async def test_a_turn_past_its_deadline_ends_with_timeout(provider: FakeProvider) -> None:
    provider.add_fault(f"{TURN},hold-before=3,gate=never")
    argv = [sys.executable, "-m", "reference_agent", "chat", "--base-url", provider.url()]
    pty = spawn_pty([*argv, "--api-key", "k", "--turn-timeout", "0.3"], environment({}, {}))
    try:
        chat = Chat(pty)
        await chat.expect("you> ")
        chat.send("slow\r")
        await chat.expect(r"\[timeout\]\r\n")
        await chat.expect("you> ")
    finally:
        await stop_pty(pty)


async def test_ctrl_c_at_the_prompt_exits_0_and_restores_the_terminal(chat: Chat) -> None:
    chat.send("\x03")
    await chat.expect(pexpect.EOF)
    assert await chat.exit_code() == 0
    restored = chat.lflag()
    assert restored & termios.ECHO and restored & termios.ICANON and restored & termios.ISIG


async def test_sigterm_exits_with_the_terminal_restored(chat: Chat) -> None:
    os.kill(chat.pty.process.pid, signal.SIGTERM)
    assert await chat.exit_code() == 128 + signal.SIGTERM
    assert chat.lflag() & termios.ECHO and chat.lflag() & termios.ICANON


async def test_ctrl_d_at_the_prompt_exits_0(chat: Chat) -> None:
    chat.send("\x04")
    await chat.expect(pexpect.EOF)
    assert await chat.exit_code() == 0


async def test_keys_typed_during_a_turn_become_the_next_prompt(
    chat: Chat, provider: FakeProvider
) -> None:
    provider.add_fault(f"{TURN},hold-before=2,gate=g,times=1")
    chat.send("first\r")
    await provider.gate("g").wait_reached()
    chat.send("second\r")  # typed ahead while the first turn runs
    provider.gate("g").release()
    await chat.expect(r"\[completed\]\r\n")
    await chat.expect(r"\[completed\]\r\n")
    turns = [r for r in provider.ledger.requests() if r.header("x-agent-purpose") == "turn"]
    assert len(turns) == 2 and b"second" in turns[1].body
