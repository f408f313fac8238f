"""`error-after=4`: the provider's in-stream error event (e.g. Anthropic `overloaded_error`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import EndWithError, Layout


@dataclass(frozen=True, slots=True)
class StreamError(Fault):
    """After `events` events, send the provider's in-stream error event and end the stream."""

    events: int
    message: str = "The fake provider is overloaded (injected fault)."

    keys: ClassVar = ("error-after",)
    examples: ClassVar = {"error-after": "error-after=4"}

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        return cls(values.events(cls.main(spec) or "", key="error-after"))

    def tokens(self) -> tuple[str, ...]:
        return (f"error-after={self.events}",)

    def compile(self, layout: Layout) -> None:
        layout.after(self.events, EndWithError(self.message))
