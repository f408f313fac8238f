"""The engine never commits a turn whose cancel has begun (the flag is set first)."""

from __future__ import annotations

import anyio
import pytest

from reference_agent.config import AgentConfig
from reference_agent.engine import Engine, TurnEnded, TurnState
from reference_agent.model import Message, StopReason, ToolCall, Usage
from reference_agent.providers.base import ModelReply, ModelRequest


def test_a_cancel_flagged_while_the_answer_arrives_stops_the_commit() -> None:
    """The cancel sets `cancel_requested`, then awaits closing the call's socket before it
    cancels the turn's scope: the final answer can arrive in between. Before, the turn
    committed and was still reported cancelled (an answer recorded for a cancelled turn)."""
    committed: list[str] = []

    async def model_call(state: TurnState, request: ModelRequest) -> ModelReply:
        state.cancel_requested = True  # the cancel has begun; its scope cancel has not
        return ModelReply("An answer.", (), "stop", Usage())

    async def no_tool(state: TurnState, call: ToolCall) -> str:
        raise AssertionError("no tool was asked for")

    def history(session_id: str) -> list[Message]:
        return []

    engine = Engine(
        AgentConfig(),
        model_call=model_call,
        run_tool=no_tool,
        tool_specs=(),
        history=history,
        commit=lambda state, messages: committed.append(state.id),
    )

    async def run() -> TurnState:
        turn = TurnState("turn-1", "s1", "Question.")
        with pytest.raises(TurnEnded) as ended:
            await engine.run(turn)
        assert ended.value.reason is StopReason.CANCELLED
        return turn

    turn = anyio.run(run)
    assert committed == [] and not turn.committed
