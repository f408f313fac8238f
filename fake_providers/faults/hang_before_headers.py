"""`hang-before-headers[=2s]`: accept the request, then send nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import Layout, Silence


@dataclass(frozen=True, slots=True)
class HangBeforeHeaders(Fault):
    """Accept the request and send nothing; `duration=None` hangs until the client leaves."""

    duration: float | None = None

    keys: ClassVar = ("hang-before-headers",)
    examples: ClassVar = {"hang-before-headers": "hang-before-headers=2s"}
    flags: ClassVar = frozenset(keys)

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        text = cls.main(spec)
        return cls(None if text is None else values.duration(text, key=cls.keys[0]))

    def tokens(self) -> tuple[str, ...]:
        if self.duration is None:
            return ("hang-before-headers",)
        return (f"hang-before-headers={values.format_duration(self.duration)}",)

    def compile(self, layout: Layout) -> None:
        layout.before_headers.append(Silence(self.duration))
