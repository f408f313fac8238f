"""`truncate-after=3`: after some events, send half of the next one, then close (FIN)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fake_providers.faults.fault import AfterEvents
from fake_providers.faults.schedule import Cut, Layout
from fake_providers.ledger import CloseKind


@dataclass(frozen=True, slots=True)
class TruncateAfter(AfterEvents):
    """After `events` events, write half of the next event's bytes, then close with FIN.

    The connection drops mid-event, as when a proxy or the network cuts a stream: the
    client's parser holds half an event, and its HTTP layer sees the body end early.
    """

    keys: ClassVar = ("truncate-after",)
    examples: ClassVar = {"truncate-after": "truncate-after=3"}

    def compile(self, layout: Layout) -> None:
        layout.after(self.events, Cut(CloseKind.FIN, keep=0.5))
