"""The agent's domain vocabulary: stop reasons, turn outcomes, transcript messages, events."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StopReason(StrEnum):
    """The closed taxonomy of why a turn ended (INCIDENTS.md I2)."""

    COMPLETED = "completed"  # the turn committed: state mutated exactly once
    CANCELLED = "cancelled"  # cancel observed and honoured: state unchanged
    TIMEOUT = "timeout"  # the runtime's deadline: work cancelled first, state unchanged
    MAX_TURNS = "max_turns"  # the tool loop hit its step limit: state unchanged
    MAX_BUDGET = "max_budget"  # the token budget ran out: state unchanged
    ERROR = "error"  # the provider or a tool failed for good: state unchanged


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """One persisted transcript entry; what ghost-turn checks read."""

    role: str  # "user" | "assistant" | "tool" | "summary"
    content: str
    turn_id: str = ""
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class TurnOutcome:
    """How one submitted prompt ended, as the caller is told."""

    turn_id: str
    session_id: str
    stop_reason: StopReason
    text: str = ""
    error: str | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """Something the agent did, stamped with time.monotonic_ns() for the shared timeline."""

    t_ns: int
    kind: str  # e.g. turn.accepted, turn.started, model.request, cancel.received, turn.committed
    session_id: str = ""
    turn_id: str = ""
    detail: str = ""
