"""`malformed-after=2`: one event no client can parse, then the stream goes on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import InsertMalformed, Layout


@dataclass(frozen=True, slots=True)
class Malformed(Fault):
    """After `events` events, send one event a client cannot parse, then carry on."""

    events: int

    keys: ClassVar = ("malformed-after",)
    examples: ClassVar = {"malformed-after": "malformed-after=2"}

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        return cls(values.events(cls.main(spec) or "", key="malformed-after"))

    def tokens(self) -> tuple[str, ...]:
        return (f"malformed-after={self.events}",)

    def compile(self, layout: Layout) -> None:
        layout.after(self.events, InsertMalformed())
