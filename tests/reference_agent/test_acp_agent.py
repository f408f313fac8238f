"""`python -m reference_agent acp` over stdio, driven by the acp package's client side.

Every message from the agent is logged in arrival order by a stream observer, so the
cancel contract (updates flushed, then the answer, then nothing) is read off that order.
Events are ordered with provider gates and awaited messages, never with sleeps.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import acp
import anyio
import pytest
from acp.connection import StreamDirection, StreamEvent
from acp.schema import (
    AllowedOutcome,
    DeniedOutcome,
    PermissionOption,
    RequestPermissionResponse,
    ToolCallUpdate,
)

from fake_providers import ContentSpec, FakeProvider, FaultPlan, Match, tool_call
from fake_providers.ledger import Closer

pytestmark = pytest.mark.anyio

WAIT = 10.0  # bound on every wait
QUIET = 0.3  # the watch window for "nothing more arrives"
HELD = "header=x-agent-purpose:turn,hold-before=3,gate=main"


@dataclass
class Client:
    """An ACP client that logs what arrives and answers permissions as told."""

    log: list[tuple[str, Any]] = field(default_factory=list)  # (kind, payload) in order
    hold: bool = False
    asked: list[anyio.Event] = field(default_factory=list)
    verdict: RequestPermissionResponse | None = None
    changed: anyio.Event = field(default_factory=anyio.Event)

    def observe(self, event: StreamEvent) -> None:
        message = event.message
        if event.direction is not StreamDirection.INCOMING:
            return
        if message.get("method") == "session/update":
            self.log.append(("update", message["params"]["update"]))
        elif message.get("method") == "session/request_permission":
            self.log.append(("permission", message["params"]))
        elif "stopReason" in (message.get("result") or {}) or "error" in message:
            self.log.append(("answer", message.get("result") or message.get("error")))
        self.changed.set()
        self.changed = anyio.Event()

    async def watch(self, window: float) -> None:
        """Watch `window` s for anything more to arrive (ends early on the first message)."""
        with anyio.move_on_after(window):
            await self.changed.wait()

    async def wait_for(self, kind: str, count: int = 1) -> None:
        with anyio.fail_after(WAIT):
            while len(self.of(kind)) < count:
                await self.changed.wait()

    def of(self, kind: str) -> list[Any]:
        return [payload for k, payload in self.log if k == kind]

    def updates(self, kind: str) -> list[dict[str, Any]]:
        return [u for u in self.of("update") if u["sessionUpdate"] == kind]

    def text(self) -> str:
        return "".join(u["content"]["text"] for u in self.updates("agent_message_chunk"))

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        return None

    async def request_permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption], **_: Any
    ) -> RequestPermissionResponse:
        answered = anyio.Event()
        self.asked.append(answered)
        if self.hold:
            await answered.wait()
        if self.verdict is not None:
            return self.verdict
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id="allow")
        )


@asynccontextmanager
async def agent(
    provider: FakeProvider, *extra: str, defects: Sequence[str] = ()
) -> AsyncIterator[tuple[acp.ClientSideConnection, Client]]:
    client = Client()
    args = ["-m", "reference_agent", "acp", "--base-url", provider.url("openai")]
    args += ["--api-key", "sk-test", *extra]
    for defect in defects:
        args += ["--defect", defect]
    async with acp.spawn_agent_process(
        client, sys.executable, *args, transport_kwargs={"stderr": None}, observers=[client.observe]
    ) as (conn, _process):
        with anyio.fail_after(WAIT):
            init = await conn.initialize(protocol_version=acp.PROTOCOL_VERSION)
        assert init.agent_capabilities is not None and init.agent_capabilities.load_session
        yield conn, client


def prompt_of(text: str) -> list[Any]:
    return [acp.text_block(text)]


async def cancelled_while_held(
    provider: FakeProvider, defects: Sequence[str] = ()
) -> tuple[Client, str, int]:
    """Prompt, hold the stream after a chunk, cancel, then let the provider go on.

    Returns the client, the stop reason and where the answer is in the client's log.
    """
    provider.add_fault(HELD)
    async with agent(provider, defects=defects) as (conn, client):
        session = (await conn.new_session(cwd=str(Path.cwd()))).session_id

        async def ask() -> None:
            await conn.prompt(session_id=session, prompt=prompt_of("Tell me a long story."))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            await provider.gate("main").wait_reached(timeout=WAIT)
            await client.wait_for("update")  # a chunk is on screen
            await conn.cancel(session_id=session)
            await client.wait_for("answer")
        provider.gate("main").release()  # a real model would go on streaming
        await client.watch(QUIET)
    at = [k for k, _ in client.log].index("answer")
    return client, client.of("answer")[0]["stopReason"], at


async def test_prompt_streams_chunks_then_end_turn_and_load_replays_it(
    provider: FakeProvider, tmp_path: Path
) -> None:
    store = str(tmp_path / "agent.db")
    async with agent(provider, "--store", store) as (conn, client):
        session = (await conn.new_session(cwd=str(tmp_path))).session_id
        with anyio.fail_after(WAIT):
            answer = await conn.prompt(session_id=session, prompt=prompt_of("Say hello."))
        assert answer.stop_reason == "end_turn"
        kinds = [k for k, _ in client.log]
        assert kinds.count("answer") == 1 and kinds[-1] == "answer"
        assert len(client.updates("agent_message_chunk")) > 1, "the text arrives as deltas"
        streamed = client.text()
    # A fresh process on the same store: session/load replays the conversation.
    async with agent(provider, "--store", store) as (conn, client):
        with anyio.fail_after(WAIT):
            await conn.load_session(cwd=str(tmp_path), session_id=session)
        assert [u["content"]["text"] for u in client.updates("user_message_chunk")] == [
            "Say hello."
        ]
        assert client.text() == streamed


async def test_cancel_flushes_updates_then_answers_cancelled_then_nothing(
    provider: FakeProvider,
) -> None:
    client, answer, at = await cancelled_while_held(provider)
    assert answer == "cancelled"
    assert at == len(client.log) - 1, f"nothing may follow the answer: {client.log[at:]}"
    (conn,) = provider.ledger.connections()
    assert conn.closed_by is Closer.CLIENT, "the cancel closed the provider stream"


async def test_cancel_while_permission_pending_resolves_cancelled_and_never_runs_the_tool(
    provider: FakeProvider,
) -> None:
    shell = ContentSpec(tool_calls=(tool_call("shell", {"command": "echo hi"}),), tokens=0)
    for prompt in ("Run it.", "Run it again."):  # each prompt's first model call asks for it
        provider.add_fault(FaultPlan(content=shell), match=Match(body_contains=prompt), times=1)
    async with agent(provider) as (conn, client):
        session = (await conn.new_session(cwd=str(Path.cwd()))).session_id
        # Allowed: pending, permission, in_progress, completed, then the final answer.
        with anyio.fail_after(WAIT):
            answer = await conn.prompt(session_id=session, prompt=prompt_of("Run it."))
        assert answer.stop_reason == "end_turn"
        statuses = [u.get("status") for u in client.of("update") if "toolCallId" in u]
        assert statuses == ["pending", "in_progress", "completed"]
        assert [k for k, _ in client.log if k != "update"] == ["permission", "answer"]
        # Held, then cancelled: the client answers `cancelled`, the tool never runs.
        client.log.clear()
        client.hold = True
        client.verdict = RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))

        async def ask() -> None:
            await conn.prompt(session_id=session, prompt=prompt_of("Run it again."))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            await client.wait_for("permission")
            await conn.cancel(session_id=session)
            client.asked[-1].set()  # the spec: pending requests are answered `cancelled`
            await client.wait_for("answer")
    assert client.of("answer")[0]["stopReason"] == "cancelled"
    statuses = [u.get("status") for u in client.of("update") if "toolCallId" in u]
    assert statuses == ["pending", "failed"]
    assert [k for k, _ in client.log][-1] == "answer"


async def defect_answer(provider: FakeProvider, defect: str) -> tuple[str, list[object]]:
    client, answer, at = await cancelled_while_held(provider, [defect])
    after = client.log[at + 1 :]
    assert all(u["sessionUpdate"] == "agent_message_chunk" for _, u in after)
    return answer, [k for k, _ in after]


async def test_acp_update_after_response(provider: FakeProvider) -> None:
    answer, after = await defect_answer(provider, "acp-update-after-response")
    assert answer == "cancelled"
    assert after and set(after) == {"update"}  # content chunks of the turn after its answer


async def test_acp_wrong_stop_reason(provider: FakeProvider) -> None:
    answer, after = await defect_answer(provider, "acp-wrong-stop-reason")
    assert answer == "end_turn"
    assert after == []
