"""Fake LLM providers that speak the real streaming wire formats and misbehave on command.

Every connection is recorded in a socket-truth `Ledger`: who closed it, how, and when.

Importing the package is cheap: its names load on first use (PEP 562), so a process that
needs only `fake_providers.kinds` (every reference agent the harness starts) does not pay
for the server, the ledger and TLS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fake_providers.content import (
        Completion,
        ContentSpec,
        FinishReason,
        ToolCall,
        Usage,
        tool_call,
    )
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

_WHERE = {
    "CloseAfter": "fake_providers.faults",
    "CloseKind": "fake_providers.ledger",
    "Closer": "fake_providers.ledger",
    "Completion": "fake_providers.content",
    "ConnectionRecord": "fake_providers.ledger",
    "ContentSpec": "fake_providers.content",
    "Drip": "fake_providers.faults",
    "FakeProvider": "fake_providers.provider",
    "FaultPlan": "fake_providers.faults",
    "FaultSpecError": "fake_providers.faults",
    "FinishReason": "fake_providers.content",
    "Gate": "fake_providers.gates",
    "HangAfter": "fake_providers.faults",
    "HangBeforeHeaders": "fake_providers.faults",
    "Hold": "fake_providers.faults",
    "HttpError": "fake_providers.faults",
    "Ledger": "fake_providers.ledger",
    "LogicalCall": "fake_providers.ledger",
    "Malformed": "fake_providers.faults",
    "Match": "fake_providers.faults",
    "Outcome": "fake_providers.ledger",
    "Pace": "fake_providers.faults",
    "ProviderStartError": "fake_providers.provider",
    "RequestRecord": "fake_providers.ledger",
    "ResetAfter": "fake_providers.faults",
    "Rule": "fake_providers.faults",
    "StreamError": "fake_providers.faults",
    "ThreadedFakeProvider": "fake_providers.provider",
    "ToolCall": "fake_providers.content",
    "Usage": "fake_providers.content",
    "WaitTimeout": "fake_providers.signals",
    "parse_rule": "fake_providers.faults",
    "tool_call": "fake_providers.content",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'fake_providers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


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
