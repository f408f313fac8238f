"""`python -m reference_agent acp`: the reference agent as an Agent Client Protocol agent on stdio.

The cancel contract (INCIDENTS.md, "ACP contract"): on `session/cancel` the turn's scope is
cancelled (model requests and tools stop, a pending `session/request_permission` is
abandoned), every `session/update` the turn produced is flushed, and only then is the
pending `session/prompt` answered with `stopReason: "cancelled"`. After the answer nothing
of that turn is sent: late deltas from a straggling worker are dropped at the relay.

stdout is the protocol; logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from typing import Any, cast

import acp
import acp.interfaces
import anyio
import anyio.abc
import anyio.lowlevel
from acp.schema import (
    AgentCapabilities,
    AgentMessageChunk,
    AllowedOutcome,
    Implementation,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
    RequestPermissionResponse,
    TextContentBlock,
    ToolCallProgress,
    ToolCallStart,
    ToolCallStatus,
    ToolCallUpdate,
    ToolKind,
    UserMessageChunk,
)
from acp.schema import (
    StopReason as AcpStopReason,
)
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from reference_agent.agent import Agent, SessionBusyError, UnknownSessionError
from reference_agent.config import AgentConfig
from reference_agent.model import AgentEvent, StopReason, ToolCall, TurnOutcome
from reference_agent.policy import Work

log = logging.getLogger("reference_agent.acp")

AGENT_INFO = Implementation(
    name="cancel-harness-reference-agent", title="Reference agent", version="0.1"
)
NEEDS_PERMISSION = frozenset({"shell"})  # tools that run arbitrary commands ask first
TOOL_KINDS: dict[str, ToolKind] = {"shell": "execute", "sleep": "execute", "echo": "other"}
ANSWERS: dict[StopReason, AcpStopReason] = {
    StopReason.COMPLETED: "end_turn",
    StopReason.CANCELLED: "cancelled",
    StopReason.MAX_TURNS: "max_turn_requests",
    StopReason.MAX_BUDGET: "max_tokens",
}  # timeout and error have no stop reason in ACP: they are answered as JSON-RPC errors
PERMISSION_OPTIONS = [
    PermissionOption(option_id="allow", name="Allow once", kind="allow_once"),
    PermissionOption(option_id="reject", name="Reject", kind="reject_once"),
]

type Update = AgentMessageChunk | ToolCallStart | ToolCallProgress
# An Event in the relay is a flush marker: set once everything queued before it went out.
type _Item = Update | anyio.Event


class _Relay:
    """One prompt turn's `session/update` stream: in order, and closed before the answer."""

    def __init__(self) -> None:
        self.sink: MemoryObjectSendStream[_Item]
        self.source: MemoryObjectReceiveStream[_Item]
        self.sink, self.source = anyio.create_memory_object_stream[_Item](math.inf)
        self.closed = False
        self.tools: dict[str, ToolCallStatus] = {}  # tool call id -> last status sent
        self.running: str | None = None  # the approved tool call the engine runs now

    def put(self, item: _Item) -> None:
        """Queue an update; after the turn was answered it is dropped (nothing after the answer)."""
        if self.closed:
            log.debug("dropped an update that arrived after the turn ended: %r", item)
            return
        self.sink.send_nowait(item)

    def text(self, delta: str) -> None:
        self.put(acp.update_agent_message_text(delta))

    def tool_started(self, call: ToolCall, kind: ToolKind) -> None:
        self.tools[call.id] = "pending"
        self.put(
            acp.start_tool_call(
                call.id, call.name, kind=kind, status="pending", raw_input=call.arguments
            )
        )

    def tool_status(self, call_id: str, status: ToolCallStatus) -> None:
        self.tools[call_id] = status
        self.put(acp.update_tool_call(call_id, status=status))

    async def flush(self) -> None:
        """Return once every update queued so far has been written to the client."""
        if not self.closed:
            marker = anyio.Event()
            self.put(marker)
            await marker.wait()

    def finish(self) -> None:
        """The turn ended: unfinished tool calls fail, then the stream closes."""
        for call_id, status in list(self.tools.items()):
            if status not in ("completed", "failed"):
                self.tool_status(call_id, "failed")
        self.running = None
        self.closed = True
        self.sink.close()


class AcpFrontDoor:
    """The ACP agent side (acp.interfaces.Agent) over a running `Agent`."""

    def __init__(self, config: AgentConfig, tg: anyio.abc.TaskGroup) -> None:
        self.config = config
        self._tg = tg
        self._agent: Agent | None = None
        self._client: acp.interfaces.Client | None = None
        self._relays: dict[str, _Relay] = {}

    def bind(self, agent: Agent) -> None:
        self._agent = agent

    @property
    def agent(self) -> Agent:
        assert self._agent is not None, "bind() the agent first"
        return self._agent

    @property
    def client(self) -> acp.interfaces.Client:
        assert self._client is not None, "not connected"
        return self._client

    def on_connect(self, conn: acp.interfaces.Client) -> None:
        self._client = conn

    # ------------------------------------------------------------------ sessions

    async def initialize(self, protocol_version: int, **_: Any) -> InitializeResponse:
        return InitializeResponse(
            protocol_version=min(protocol_version, acp.PROTOCOL_VERSION),
            agent_capabilities=AgentCapabilities(load_session=True),
            agent_info=AGENT_INFO,
        )

    async def new_session(self, cwd: str, **_: Any) -> NewSessionResponse:
        return NewSessionResponse(session_id=await self.agent.new_session())

    async def load_session(self, cwd: str, session_id: str, **_: Any) -> LoadSessionResponse:
        """Replay the persisted conversation as updates, then answer (ACP session/load)."""
        self._adopt(session_id)
        for message in self.agent.transcript(session_id):
            update: UserMessageChunk | AgentMessageChunk | None = None
            if message.role == "user":
                update = acp.update_user_message_text(message.content)
            elif message.role == "assistant" and message.content:
                update = acp.update_agent_message_text(message.content)
            if update is not None:
                await self.client.session_update(session_id=session_id, update=update)
        return LoadSessionResponse()

    def _adopt(self, session_id: str) -> None:
        """A session persisted by an earlier process becomes usable again in this one."""
        try:
            self.agent.open_session(session_id)
        except UnknownSessionError:
            raise acp.RequestError.invalid_params(
                {"sessionId": session_id, "details": "unknown"}
            ) from None

    # ---------------------------------------------------------------------- turns

    async def prompt(self, prompt: list[Any], session_id: str, **_: Any) -> PromptResponse:
        text = "\n".join(b.text for b in prompt if isinstance(b, TextContentBlock))
        relay = _Relay()
        try:
            handle = await self.agent.submit(session_id, text, on_text=relay.text)
        except (UnknownSessionError, SessionBusyError) as exc:
            relay.finish()
            details = {"sessionId": session_id, "details": str(exc)}
            raise acp.RequestError.invalid_params(details) from None
        self._relays[session_id] = relay
        outcome: TurnOutcome | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, session_id, relay.source)
                try:
                    outcome = await handle.wait()
                finally:
                    relay.finish()  # the pump writes what is queued, then ends
        finally:
            if self._relays.get(session_id) is relay:
                del self._relays[session_id]
        assert outcome is not None
        return self._answer(session_id, outcome)

    def _answer(self, session_id: str, outcome: TurnOutcome) -> PromptResponse:
        policy = self.agent.policy
        policy.acp_answered(self, session_id, outcome.stop_reason)
        reason = policy.acp_stop_reason(outcome.stop_reason)
        if reason in ANSWERS:
            return PromptResponse(stop_reason=ANSWERS[reason])
        raise acp.RequestError.internal_error(
            {"stopReason": reason.value, "details": outcome.error or reason.value}
        )

    def start_soon(self, work: Work) -> None:
        self._tg.start_soon(work)

    async def send_text(self, session_id: str, text: str) -> None:
        """An agent_message_chunk outside any turn's relay; a client gone is no error."""
        update = acp.update_agent_message_text(text)
        with contextlib.suppress(ConnectionError):
            await self.client.session_update(session_id=session_id, update=update)

    async def _pump(self, session_id: str, source: MemoryObjectReceiveStream[_Item]) -> None:
        async with source:
            async for item in source:
                if isinstance(item, anyio.Event):
                    item.set()
                    continue
                try:
                    await self.client.session_update(session_id=session_id, update=item)
                except ConnectionError:
                    log.info("client gone; dropping updates of session %s", session_id)

    async def cancel(self, session_id: str, **_: Any) -> None:
        try:
            await self.agent.cancel(session_id)
        except UnknownSessionError:
            log.warning("session/cancel for unknown session %s ignored", session_id)

    # ---------------------------------------------------------------------- tools

    async def approve_tool(self, session_id: str, call: ToolCall) -> bool:
        """Announce the tool call; ask the client first for tools that need permission.

        Awaited inside the turn's scope: a cancel abandons a pending permission request.
        """
        relay = self._relays.get(session_id)
        if relay is None:
            return False
        kind = TOOL_KINDS.get(call.name, "other")
        relay.tool_started(call, kind)
        if call.name in NEEDS_PERMISSION:
            await relay.flush()  # the client learns of the tool call before it is asked
            tool = ToolCallUpdate(
                tool_call_id=call.id, title=call.name, kind=kind, status="pending"
            )
            answer: RequestPermissionResponse = await self.client.request_permission(
                session_id=session_id, tool_call=tool, options=PERMISSION_OPTIONS
            )
            if not isinstance(answer.outcome, AllowedOutcome):
                # "cancelled" means the prompt turn was cancelled (ACP prompt-turn spec).
                relay.tool_status(call.id, "failed")
                await self.agent.cancel(session_id)
                await anyio.lowlevel.checkpoint()  # the turn's scope is cancelled: ends here
                return False
            if answer.outcome.option_id != "allow":
                relay.tool_status(call.id, "failed")
                return False
        relay.tool_status(call.id, "in_progress")
        relay.running = call.id
        return True

    def on_event(self, event: AgentEvent) -> None:
        """The engine's next model call means the tool it ran before has finished."""
        relay = self._relays.get(event.session_id)
        if relay is None or relay.running is None:
            return
        if event.kind == "model.call":
            relay.tool_status(relay.running, "completed")
            relay.running = None


async def serve(config: AgentConfig, store: str) -> None:
    """Run the ACP agent on this process's stdin/stdout until the client closes stdin."""
    async with anyio.create_task_group() as tg:
        front = AcpFrontDoor(config, tg)
        agent = Agent(config, store=store, on_event=front.on_event, approve_tool=front.approve_tool)
        async with agent:
            front.bind(agent)
            await acp.run_agent(cast(acp.interfaces.Agent, front))
        tg.cancel_scope.cancel()


def acp_main(config: AgentConfig, args: argparse.Namespace) -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="reference_agent acp: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log.info(
        "provider %s at %s; defects: %s", config.provider, config.base_url, config.defects.names()
    )
    try:
        anyio.run(serve, config, str(args.store), backend="asyncio")
    except KeyboardInterrupt:
        return 130
    return 0
