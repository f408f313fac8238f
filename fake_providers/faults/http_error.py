"""`status=429[,retry-after=1][,retry-after-ms=250]`: an HTTP error in the provider's format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import Layout, Refusal
from fake_providers.faults.values import FaultSpecError

ERROR_STATUSES = frozenset({400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503, 504, 529})
MESSAGES = {
    408: "Request timed out (injected fault).",
    409: "Conflict (injected fault).",
    429: "Rate limit reached (injected fault).",
    500: "The server had an error (injected fault).",
    502: "Bad gateway (injected fault).",
    503: "Service unavailable (injected fault).",
    504: "Gateway timeout (injected fault).",
    529: "Overloaded (injected fault).",
}


@dataclass(frozen=True, slots=True)
class HttpError(Fault):
    """Answer with an HTTP error status and a body in the provider's own error format."""

    status: int
    retry_after: float | None = None
    retry_after_ms: int | None = None

    keys: ClassVar = ("status", "retry-after", "retry-after-ms")
    examples: ClassVar = {
        "status": "status=429",
        "retry-after": "status=429,retry-after=1",
        "retry-after-ms": "status=429,retry-after-ms=250",
    }

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        if "status" not in spec:
            raise FaultSpecError(
                "retry-after goes with an error status: write status=429,retry-after=1"
            )
        text = spec["status"] or ""
        if not text.isdigit() or len(text) != 3 or int(text) not in ERROR_STATUSES:
            valid = ", ".join(str(s) for s in sorted(ERROR_STATUSES))
            raise FaultSpecError(
                f"status={values.shown(text)}: expected an error status, one of {valid}"
            )
        after = spec.get("retry-after")
        after_ms = spec.get("retry-after-ms")
        return cls(
            int(text),
            None if after is None else values.seconds(after, key="retry-after"),
            None
            if after_ms is None
            else values.whole(after_ms, key="retry-after-ms", high=86_400_000, example="250"),
        )

    def tokens(self) -> tuple[str, ...]:
        tokens = [f"status={self.status}"]
        if self.retry_after is not None:
            tokens.append(f"retry-after={values.format_number(self.retry_after)}")
        if self.retry_after_ms is not None:
            tokens.append(f"retry-after-ms={self.retry_after_ms}")
        return tuple(tokens)

    def compile(self, layout: Layout) -> None:
        headers = []
        if self.retry_after is not None:
            headers.append((b"retry-after", f"{self.retry_after:g}".encode()))
        if self.retry_after_ms is not None:
            headers.append((b"retry-after-ms", str(self.retry_after_ms).encode()))
        message = MESSAGES.get(self.status, f"HTTP {self.status} (injected fault).")
        layout.refusal = Refusal(self.status, message, tuple(headers))
