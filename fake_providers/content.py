"""What the fake model says: a provider-neutral completion that every wire format encodes.

Plain frozen data, no IO. A `ContentSpec` (from a fault spec or the Python API) plus the
parsed request decide the `Completion`; the wire encoders turn that into bytes.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

# A fixed vocabulary keeps the default text deterministic, readable, and long enough that a
# paced stream is still running when a cancel lands.
_WORDS = [
    "The",
    "harness",
    "keeps",
    "streaming",
    "so",
    "that",
    "a",
    "cancel",
    "always",
    "lands",
    "mid-sentence",
    "and",
    "the",
    "socket",
    "ledger",
    "can",
    "tell",
    "who",
    "closed",
    "the",
    "connection",
    "first",
    "and",
    "exactly",
    "when",
    "it",
    "happened",
]

DEFAULT_TOKENS = 200
# The content ceiling: no response carries more text chunks than this, whatever `tokens=` or
# the request's `max_tokens` say, so a default answer always ends (about 5 MB of SSE).
MAX_TOKENS = 100_000


class FinishReason(enum.Enum):
    """Why the fake model stopped; each wire format maps it to its own vocabulary."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function/tool call the model makes; `arguments` is JSON text."""

    id: str
    name: str
    arguments: str = "{}"

    def argument_chunks(self, pieces: int = 3) -> tuple[str, ...]:
        """Split the JSON arguments into `pieces` fragments, as providers stream them."""
        text = self.arguments
        if not text:
            return ()
        size = max(1, -(-len(text) // pieces))
        return tuple(text[i : i + size] for i in range(0, len(text), size))


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole model answer: text deltas (one per streamed event), tool calls, usage."""

    model: str
    response_id: str
    created: int
    text_chunks: Sequence[str] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    finish: FinishReason = FinishReason.STOP
    usage: Usage = field(default_factory=lambda: Usage(0, 0))

    @property
    def text(self) -> str:
        return "".join(self.text_chunks)


@dataclass(frozen=True, slots=True)
class ContentSpec:
    """How to build a completion: a token count or an explicit text, plus tool calls."""

    tokens: int = DEFAULT_TOKENS
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    def build(
        self,
        *,
        model: str,
        response_id: str,
        created: int,
        max_tokens: int | None,
        input_tokens: int,
    ) -> Completion:
        """Make the completion for one request, honouring the request's own token limit.

        Side requests (titles, summaries) usually ask for few tokens, so honouring
        `max_tokens` makes them finish quickly, as with a real provider.
        """
        if self.text is not None:
            chunks = _chunk_text(self.text)[:MAX_TOKENS]
        else:
            chunks = default_text(min(self.tokens, MAX_TOKENS))
        finish = FinishReason.TOOL_CALLS if self.tool_calls else FinishReason.STOP
        if max_tokens is not None and max_tokens >= 0 and len(chunks) > max_tokens:
            chunks = chunks[:max_tokens]
            finish = FinishReason.LENGTH
        calls = self.tool_calls if finish is not FinishReason.LENGTH else ()
        output = len(chunks) + sum(len(c.arguments) // 4 + 1 for c in calls)
        return Completion(
            model=model,
            response_id=response_id,
            created=created,
            text_chunks=chunks,
            tool_calls=calls,
            finish=finish,
            usage=Usage(input_tokens=input_tokens, output_tokens=output),
        )


_SPACED = tuple(" " + w for w in _WORDS)


class DefaultText(Sequence[str]):
    """`tokens` word-sized chunks of deterministic prose, computed on access.

    A lazy sequence rather than a tuple: an idle stream then holds no per-token pointers.
    """

    __slots__ = ("_n",)

    def __init__(self, tokens: int) -> None:
        self._n = max(0, tokens)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._n)
            if step == 1 and start == 0:
                return DefaultText(stop)
            return tuple(self[i] for i in range(start, stop, step))
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError(index)
        return _WORDS[0] if index == 0 else _SPACED[index % len(_WORDS)]

    def __iter__(self) -> Iterator[str]:
        n = len(_WORDS)
        for i in range(self._n):
            yield _WORDS[0] if i == 0 else _SPACED[i % n]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DefaultText):
            return self._n == other._n
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"DefaultText({self._n})"


def default_text(tokens: int) -> Sequence[str]:
    """`tokens` word-sized chunks of deterministic prose, the first without a leading space."""
    return DefaultText(tokens)


def _chunk_text(text: str) -> Sequence[str]:
    if not text:
        return ()
    parts = text.split(" ")
    return tuple(p if i == 0 else " " + p for i, p in enumerate(parts))


def tool_call(name: str, arguments: dict[str, object] | None = None, *, id: str = "") -> ToolCall:
    """Convenience constructor: `tool_call("get_weather", {"city": "Paris"})`."""
    return ToolCall(
        id=id or f"call_{name}_1",
        name=name,
        arguments=json.dumps(arguments or {}, separators=(",", ":")),
    )


def estimate_input_tokens(body: bytes) -> int:
    """A stable stand-in for prompt token counting: one token per four bytes of request."""
    return max(1, len(body) // 4)
