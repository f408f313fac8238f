"""`drip=200`: trickle the response at a number of bytes per second."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import Layout


@dataclass(frozen=True, slots=True)
class Drip(Fault):
    """Trickle the body at `bytes_per_second`."""

    bytes_per_second: float

    keys: ClassVar = ("drip",)
    examples: ClassVar = {"drip": "drip=200 (bytes per second)"}

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        return cls(values.rate(cls.main(spec) or "", key="drip"))

    def tokens(self) -> tuple[str, ...]:
        return (f"drip={values.format_number(self.bytes_per_second)}",)

    def compile(self, layout: Layout) -> None:
        layout.drip = self.bytes_per_second
