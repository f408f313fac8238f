"""`close-after=3`: close the connection cleanly (FIN) after some events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import Cut, Layout
from fake_providers.ledger import CloseKind


@dataclass(frozen=True, slots=True)
class CloseAfter(Fault):
    """Close the connection cleanly (FIN) after `events` events."""

    events: int

    keys: ClassVar = ("close-after",)
    examples: ClassVar = {"close-after": "close-after=3"}

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        return cls(values.events(cls.main(spec) or "", key="close-after"))

    def tokens(self) -> tuple[str, ...]:
        return (f"close-after={self.events}",)

    def compile(self, layout: Layout) -> None:
        layout.after(self.events, Cut(CloseKind.FIN))
