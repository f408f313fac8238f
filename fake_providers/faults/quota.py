"""`quota=requests[,quota-limit=60][,quota-reset=1.5s]`: a rate limit ran out; 429 until reset.

What providers send when a per-minute quota of requests (or tokens) is used up: 429, the
quota's limit, nothing remaining, when it resets, and `retry-after`. Both header families are
sent, OpenAI's `x-ratelimit-*` (a relative reset such as `1.5s`) and Anthropic's
`anthropic-ratelimit-*` limit and remaining, so an agent of either kind reads its own; the
body is in the provider's own error envelope.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import Layout, Refusal
from fake_providers.faults.values import FaultSpecError

UNITS = {"requests": "RPM", "tokens": "TPM"}


@dataclass(frozen=True, slots=True)
class Quota(Fault):
    """Answer 429: the per-minute quota of `unit` (`limit` of them) resets in `reset` s."""

    unit: str
    limit: int = 60
    reset: float = 1.0

    keys: ClassVar = ("quota", "quota-limit", "quota-reset")
    examples: ClassVar = {
        "quota": "quota=requests",
        "quota-limit": "quota=tokens,quota-limit=40000",
        "quota-reset": "quota=requests,quota-reset=1.5s",
    }

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        unit = cls.main(spec) or ""
        if unit not in UNITS:
            raise FaultSpecError(
                f"quota={values.shown(unit)}: expected requests or tokens, as in quota=requests"
            )
        limit = spec.get("quota-limit")
        reset = spec.get("quota-reset")
        return cls(
            unit,
            60 if limit is None else values.whole(limit, key="quota-limit", low=1, example="60"),
            1.0 if reset is None else values.duration(reset, key="quota-reset"),
        )

    def tokens(self) -> tuple[str, ...]:
        return (
            f"quota={self.unit}",
            f"quota-limit={self.limit}",
            f"quota-reset={values.format_duration(self.reset)}",
        )

    def compile(self, layout: Layout) -> None:
        reset = values.format_duration(self.reset)
        headers = [
            (b"retry-after", str(math.ceil(self.reset)).encode()),
            (b"retry-after-ms", str(round(self.reset * 1000)).encode()),
            (f"x-ratelimit-limit-{self.unit}".encode(), str(self.limit).encode()),
            (f"x-ratelimit-remaining-{self.unit}".encode(), b"0"),
            (f"x-ratelimit-reset-{self.unit}".encode(), reset.encode()),
            (f"anthropic-ratelimit-{self.unit}-limit".encode(), str(self.limit).encode()),
            (f"anthropic-ratelimit-{self.unit}-remaining".encode(), b"0"),
        ]
        message = (
            f"Rate limit reached for {self.unit} per minute ({UNITS[self.unit]}): Limit "
            f"{self.limit}, Used {self.limit}, Requested 1. Please try again in {reset}."
        )
        layout.refusal = Refusal(429, message, tuple(headers))
