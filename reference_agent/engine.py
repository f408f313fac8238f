"""One turn: (compaction) -> model -> tools -> model ... -> one atomic commit.

The turn runs inside its own cancel scope, owned by the runtime (`agent.py`). Every model
call, tool subprocess and back-off sleep it starts lives in that scope and dies with it.
Persisted state changes in exactly one place, `Store.commit_turn`, reached only after a
last cancellation checkpoint with no await in between: a cancelled or timed-out turn
leaves the store exactly as it was (INCIDENTS.md I2).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from reference_agent.config import AgentConfig
from reference_agent.model import Message, StopReason, ToolCall, Usage
from reference_agent.providers.base import CallHandle, ModelReply, ModelRequest, ToolSpec

SYSTEM_PROMPT = "You are the cancel-harness reference agent. Answer briefly; use tools when asked."
COMPACTION_PROMPT = (
    "Summarise the conversation so far in a few sentences, keeping facts the user will need."
)


class TurnEnded(Exception):
    """The turn stopped for a reason in the taxonomy other than completion."""

    def __init__(self, reason: StopReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(eq=False)
class TurnState:
    """What the runtime and the engine share about one running turn."""

    id: str
    session_id: str
    prompt: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    calls: list[CallHandle] = field(default_factory=list)
    cancel_requested: bool = False
    committed: bool = False
    text: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    on_text: Callable[[str], None] | None = None  # a front door relaying deltas live

    def add_text(self, delta: str) -> None:
        self.text.append(delta)
        if self.on_text is not None:
            self.on_text(delta)


def conversation(history: list[Message]) -> list[Message]:
    """What the model sees: everything since the latest summary (the summary included)."""
    start = 0
    for i, message in enumerate(history):
        if message.role == "summary":
            start = i
    return history[start:]


class Engine:
    """The turn loop. Stateless between turns: all state is in the store."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        model_call: Callable[[TurnState, ModelRequest], Awaitable[ModelReply]],
        run_tool: Callable[[TurnState, ToolCall], Awaitable[str]],
        tool_specs: tuple[ToolSpec, ...],
        history: Callable[[str], list[Message]],
        commit: Callable[[TurnState, list[Message]], None],
    ) -> None:
        self.config = config
        self._model_call = model_call
        self._run_tool = run_tool
        self._tool_specs = tool_specs
        self._history = history
        self._commit = commit

    async def run(self, turn: TurnState) -> str:
        """Run the turn to its commit and return the final text; raise TurnEnded otherwise."""
        await anyio.lowlevel.checkpoint_if_cancelled()  # a cancel before entry wins
        history = self._history(turn.session_id)
        new: list[Message] = []
        seen = conversation(history)
        if self._needs_compaction(seen):
            summary = await self._compact(turn, seen)
            new.append(summary)
            seen = [summary]
        user = Message("user", turn.prompt, turn.id)
        new.append(user)
        seen = [*seen, user]
        for _step in range(self.config.max_steps):
            request = ModelRequest(
                messages=tuple(seen),
                system=SYSTEM_PROMPT,
                tools=self._tool_specs,
                max_tokens=self.config.max_output_tokens,
                stream=self.config.stream,
                purpose="turn",
            )
            reply = await self._model_call(turn, request)
            turn.usage = turn.usage + reply.usage
            budget = self.config.max_budget_tokens
            if budget is not None and turn.usage.input_tokens + turn.usage.output_tokens > budget:
                raise TurnEnded(StopReason.MAX_BUDGET, f"token budget of {budget} exceeded")
            assistant = Message(
                "assistant",
                reply.text,
                turn.id,
                finish_reason=reply.finish_reason,
                tool_calls=reply.tool_calls,
                usage=reply.usage,
            )
            new.append(assistant)
            seen.append(assistant)
            if not reply.tool_calls:
                # The last checkpoint: after it, nothing awaits until the commit is done.
                await anyio.lowlevel.checkpoint_if_cancelled()
                if turn.cancel_requested:
                    # A cancel that set the flag and is still closing the call's socket
                    # before it cancels the scope: the turn will be reported cancelled,
                    # so it must not commit (explore found this window).
                    raise TurnEnded(StopReason.CANCELLED, "cancelled before the commit")
                self._commit(turn, new)
                turn.committed = True
                return reply.text
            for call in reply.tool_calls:
                result = await self._run_tool(turn, call)
                tool_message = Message("tool", result, turn.id, tool_call_id=call.id)
                new.append(tool_message)
                seen.append(tool_message)
        raise TurnEnded(
            StopReason.MAX_TURNS, f"no final answer after {self.config.max_steps} steps"
        )

    def _needs_compaction(self, seen: list[Message]) -> bool:
        size = sum(len(m.content) for m in seen)
        return bool(seen) and size > self.config.compaction_threshold_chars

    async def _compact(self, turn: TurnState, seen: list[Message]) -> Message:
        """Inline compaction: a model call the user waits on, so Esc cancels it too."""
        request = ModelRequest(
            messages=tuple(seen),
            system=COMPACTION_PROMPT,
            max_tokens=min(512, self.config.max_output_tokens),
            purpose="compaction",
        )
        reply = await self._model_call(turn, request)
        turn.usage = turn.usage + reply.usage
        return Message("summary", reply.text, turn.id, finish_reason=reply.finish_reason)
