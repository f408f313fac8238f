"""`context-window=128000[,context-style=anthropic]`: the request is too long for the model.

The provider refuses it with 400 before any token is generated, in its own error envelope
(the wire format builds that) and in its own words (the style picks them), so an agent that
recognises an overflow by its message (to compact and try again) can be judged on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import Layout, Refusal
from fake_providers.faults.values import FaultSpecError

# How each provider says it (public error messages), for a request `asked` tokens long.
WORDING = {
    "openai": (
        "This model's maximum context length is {window} tokens. However, your messages "
        "resulted in {asked} tokens. Please reduce the length of the messages."
    ),
    "openai-responses": (
        "Your input exceeds the context window of this model ({window} tokens). Please adjust "
        "your input and try again."
    ),
    "anthropic": "prompt is too long: {asked} tokens > {window} maximum",
    "gemini": (
        "The input token count ({asked}) exceeds the maximum number of tokens allowed ({window})."
    ),
}


@dataclass(frozen=True, slots=True)
class ContextWindow(Fault):
    """Refuse the request (400) as longer than a `window`-token context, in `style`'s words."""

    window: int
    style: str = "openai"

    keys: ClassVar = ("context-window", "context-style")
    examples: ClassVar = {
        "context-window": "context-window=128000",
        "context-style": "context-window=200000,context-style=anthropic",
    }

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        window = values.whole(
            cls.main(spec) or "", key="context-window", noun="tokens", low=1, example="128000"
        )
        style = spec.get("context-style") or "openai"
        if style not in WORDING:
            raise FaultSpecError(
                f"context-style={values.shown(style)}: expected one of {', '.join(WORDING)}"
            )
        return cls(window, style)

    def tokens(self) -> tuple[str, ...]:
        style = () if self.style == "openai" else (f"context-style={self.style}",)
        return (f"context-window={self.window}", *style)

    def compile(self, layout: Layout) -> None:
        asked = self.window + max(1, self.window // 8)
        message = WORDING[self.style].format(window=self.window, asked=asked)
        layout.refusal = Refusal(400, message)
