"""`hang-after=5[,hang-for=2s]`: go silent after some events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import Layout, Silence


@dataclass(frozen=True, slots=True)
class HangAfter(Fault):
    """After `events` events, go silent (forever, or for `duration` seconds then go on)."""

    events: int
    duration: float | None = None

    keys: ClassVar = ("hang-after", "hang-for")
    examples: ClassVar = {"hang-after": "hang-after=5", "hang-for": "hang-after=5,hang-for=2s"}

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        events = values.events(cls.main(spec) or "", key="hang-after")
        hang_for = spec.get("hang-for")
        return cls(events, None if hang_for is None else values.duration(hang_for, key="hang-for"))

    def tokens(self) -> tuple[str, ...]:
        if self.duration is None:
            return (f"hang-after={self.events}",)
        return (f"hang-after={self.events}", f"hang-for={values.format_duration(self.duration)}")

    def compile(self, layout: Layout) -> None:
        layout.after(self.events, Silence(self.duration))
