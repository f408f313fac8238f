"""`pace=50ms[,jitter=10ms]`: one event every interval, against absolute deadlines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import Layout, Pacing


@dataclass(frozen=True, slots=True)
class Pace(Fault):
    """Write one event every `interval` seconds against absolute deadlines (no drift)."""

    interval: float
    jitter: float = 0.0

    keys: ClassVar = ("pace", "jitter")
    examples: ClassVar = {"pace": "pace=50ms", "jitter": "pace=50ms,jitter=10ms"}

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        interval = values.duration(cls.main(spec) or "", key="pace", positive=True)
        jitter = spec.get("jitter")
        return cls(interval, 0.0 if jitter is None else values.duration(jitter, key="jitter"))

    def tokens(self) -> tuple[str, ...]:
        pace = f"pace={values.format_duration(self.interval)}"
        if not self.jitter:
            return (pace,)
        return (pace, f"jitter={values.format_duration(self.jitter)}")

    def compile(self, layout: Layout) -> None:
        layout.pacing = Pacing(self.interval, self.jitter)
