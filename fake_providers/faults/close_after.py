"""`close-after=3`: close the connection cleanly (FIN) after some events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fake_providers.faults.fault import AfterEvents
from fake_providers.faults.schedule import Cut, Layout
from fake_providers.ledger import CloseKind


@dataclass(frozen=True, slots=True)
class CloseAfter(AfterEvents):
    """Close the connection cleanly (FIN) after `events` events."""

    keys: ClassVar = ("close-after",)
    examples: ClassVar = {"close-after": "close-after=3"}

    def compile(self, layout: Layout) -> None:
        layout.after(self.events, Cut(CloseKind.FIN))
