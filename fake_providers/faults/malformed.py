"""`malformed-after=2`: one event no client can parse, then the stream goes on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fake_providers.faults.fault import AfterEvents
from fake_providers.faults.schedule import InsertMalformed, Layout


@dataclass(frozen=True, slots=True)
class Malformed(AfterEvents):
    """After `events` events, send one event a client cannot parse, then carry on."""

    keys: ClassVar = ("malformed-after",)
    examples: ClassVar = {"malformed-after": "malformed-after=2"}

    def compile(self, layout: Layout) -> None:
        layout.after(self.events, InsertMalformed())
