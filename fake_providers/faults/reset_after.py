"""`reset-after=3`: abort the connection (RST) after some events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fake_providers.faults.fault import AfterEvents
from fake_providers.faults.schedule import Cut, Layout
from fake_providers.ledger import CloseKind


@dataclass(frozen=True, slots=True)
class ResetAfter(AfterEvents):
    """Abort the connection (RST, via SO_LINGER 0) after `events` events."""

    keys: ClassVar = ("reset-after",)
    examples: ClassVar = {"reset-after": "reset-after=3"}

    def compile(self, layout: Layout) -> None:
        layout.after(self.events, Cut(CloseKind.RST))
