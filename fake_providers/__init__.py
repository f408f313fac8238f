"""Fake LLM providers that speak the real streaming wire formats and misbehave on command.

Every connection is recorded in a socket-truth `Ledger`: who closed it, how, and when.
"""

from fake_providers.content import Completion, ContentSpec, FinishReason, ToolCall, Usage, tool_call
from fake_providers.faults import (
    CloseAfter,
    Drip,
    FaultPlan,
    FaultSpecError,
    HangAfter,
    HangBeforeHeaders,
    Hold,
    HttpError,
    Malformed,
    Match,
    Pace,
    ResetAfter,
    Rule,
    StreamError,
    parse_rule,
)
from fake_providers.gates import Gate
from fake_providers.ledger import (
    CloseKind,
    Closer,
    ConnectionRecord,
    Ledger,
    LogicalCall,
    Outcome,
    RequestRecord,
)
from fake_providers.provider import FakeProvider, ProviderStartError, ThreadedFakeProvider
from fake_providers.signals import WaitTimeout

__all__ = [
    "CloseAfter",
    "CloseKind",
    "Closer",
    "Completion",
    "ConnectionRecord",
    "ContentSpec",
    "Drip",
    "FakeProvider",
    "FaultPlan",
    "FaultSpecError",
    "FinishReason",
    "Gate",
    "HangAfter",
    "HangBeforeHeaders",
    "Hold",
    "HttpError",
    "Ledger",
    "LogicalCall",
    "Malformed",
    "Match",
    "Outcome",
    "Pace",
    "ProviderStartError",
    "RequestRecord",
    "ResetAfter",
    "Rule",
    "StreamError",
    "ThreadedFakeProvider",
    "ToolCall",
    "Usage",
    "WaitTimeout",
    "parse_rule",
    "tool_call",
]
