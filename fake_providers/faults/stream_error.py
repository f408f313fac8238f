"""`error-after=4`: the provider's in-stream error event (e.g. Anthropic `overloaded_error`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fake_providers.faults.fault import AfterEvents
from fake_providers.faults.schedule import EndWithError, Layout


@dataclass(frozen=True, slots=True)
class StreamError(AfterEvents):
    """After `events` events, send the provider's in-stream error event and end the stream."""

    message: str = "The fake provider is overloaded (injected fault)."

    keys: ClassVar = ("error-after",)
    examples: ClassVar = {"error-after": "error-after=4"}

    def compile(self, layout: Layout) -> None:
        layout.after(self.events, EndWithError(self.message))
