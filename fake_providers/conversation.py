"""The shape of the conversation a model request carries, read from its decoded JSON body.

Pure functions, one per wire format, over the request body the provider already parsed.
What they extract is what tells a turn's own model call from side traffic without any help
from the agent: who spoke last (a turn's call ends with the user's words or a tool result;
a summary or memory call over the history ends with the assistant's answer), the latest
thing the user wrote, whether the caller asked for structured output (titles, classifiers
and "next speaker" checks do), and how many tools it offers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fake_providers.kinds import ProviderKind


@dataclass(frozen=True, slots=True)
class Shape:
    """What a model request's conversation looks like."""

    last_role: str  # "user" | "tool" | "assistant" | "system" | "" (no messages)
    latest_user_text: str  # the text of the last user-authored message ("" if none)
    structured: bool = False  # JSON-schema / JSON-mode output, or a forced tool call
    tools: int = 0  # tools (functions) offered to the model
    messages: int = 0


def read_shape(kind: ProviderKind, body: Mapping[str, Any]) -> Shape:
    """The conversation shape of a valid request body of this kind (never raises)."""
    try:
        match kind:
            case ProviderKind.OPENAI_CHAT | ProviderKind.AZURE:
                return _chat(body)
            case ProviderKind.OPENAI_RESPONSES:
                return _responses(body)
            case ProviderKind.ANTHROPIC:
                return _anthropic(body)
            case ProviderKind.GEMINI:
                return _gemini(body)
    except (TypeError, AttributeError, KeyError, IndexError):
        pass  # a body valid enough for the wire format, odd in its details
    return Shape("", "")


def _text(content: object, *, keys: Sequence[str] = ("text",)) -> str:
    """Concatenated text of a string or a list of parts (`{"type": "text", "text": ...}`)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping):
                for key in keys:
                    value = part.get(key)
                    if isinstance(value, str):
                        parts.append(value)
        return "\n".join(parts)
    return ""


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def latest_user_text(turns: Sequence[tuple[str, str]]) -> str:
    """The user's latest words: the run of user messages nearest the end that hold text.

    Agents put context next to the prompt (a reminder after it, an environment block
    before it), and a tool loop's later calls end with tool results, so this is the whole
    contiguous run of user text, however far back it is.
    """
    run: list[str] = []
    for role, text in reversed(turns):
        if role == "user" and text:
            run.append(text)
        elif role == "assistant" and run:
            break
    return "\n".join(reversed(run))


def _chat(body: Mapping[str, Any]) -> Shape:
    messages = [m for m in _list(body.get("messages")) if isinstance(m, Mapping)]
    last = str(messages[-1].get("role", "")) if messages else ""
    latest = latest_user_text([(str(m.get("role")), _text(m.get("content"))) for m in messages])
    fmt = body.get("response_format")
    structured = isinstance(fmt, Mapping) and fmt.get("type") in ("json_schema", "json_object")
    choice = body.get("tool_choice")
    structured = structured or (isinstance(choice, Mapping) and choice.get("type") == "function")
    role = {"function": "tool", "developer": "system"}.get(last, last)
    return Shape(role, latest, structured, len(_list(body.get("tools"))), len(messages))


def _responses(body: Mapping[str, Any]) -> Shape:
    raw = body.get("input")
    if isinstance(raw, str):
        return Shape("user", raw, _responses_structured(body), len(_list(body.get("tools"))), 1)
    items = [i for i in _list(raw) if isinstance(i, Mapping)]
    last = ""
    if items:
        item = items[-1]
        kind = item.get("type", "message")
        if kind in ("function_call_output", "custom_tool_call_output"):
            last = "tool"
        elif kind in ("function_call", "reasoning"):
            last = "assistant"
        else:
            last = str(item.get("role", ""))
    turns = [
        (
            str(i.get("role", "assistant" if i.get("type") == "function_call" else "")),
            _text(i.get("content")),
        )
        for i in items
    ]
    latest = latest_user_text(turns)
    return Shape(
        {"developer": "system"}.get(last, last),
        latest,
        _responses_structured(body),
        len(_list(body.get("tools"))),
        len(items),
    )


def _responses_structured(body: Mapping[str, Any]) -> bool:
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    return isinstance(fmt, Mapping) and fmt.get("type") in ("json_schema", "json_object")


def _anthropic(body: Mapping[str, Any]) -> Shape:
    messages = [m for m in _list(body.get("messages")) if isinstance(m, Mapping)]
    last = ""
    if messages:
        final = messages[-1]
        last = str(final.get("role", ""))
        blocks = final.get("content")
        if last == "user" and isinstance(blocks, list) and blocks:
            kinds = {b.get("type") for b in blocks if isinstance(b, Mapping)}
            if kinds and kinds <= {"tool_result"}:
                last = "tool"
    latest = latest_user_text([(str(m.get("role")), _text(m.get("content"))) for m in messages])
    choice = body.get("tool_choice")
    structured = isinstance(choice, Mapping) and choice.get("type") == "tool"
    fmt = body.get("output_format")
    structured = structured or isinstance(fmt, Mapping)
    return Shape(last, latest, structured, len(_list(body.get("tools"))), len(messages))


def _gemini(body: Mapping[str, Any]) -> Shape:
    contents = [c for c in _list(body.get("contents")) if isinstance(c, Mapping)]
    last = ""
    if contents:
        final = contents[-1]
        role = str(final.get("role", "user"))
        parts = [p for p in _list(final.get("parts")) if isinstance(p, Mapping)]
        if role == "model":
            last = "assistant"
        elif parts and all("functionResponse" in p for p in parts):
            last = "tool"
        else:
            last = "user"
    roles = {"model": "assistant"}
    turns = [
        (roles.get(str(c.get("role", "user")), "user"), _text(c.get("parts"))) for c in contents
    ]
    latest = latest_user_text(turns)
    config = body.get("generationConfig")
    structured = isinstance(config, Mapping) and (
        config.get("responseMimeType") == "application/json"
        or "responseSchema" in config
        or "responseJsonSchema" in config
    )
    tools = sum(
        len(_list(t.get("functionDeclarations")))
        for t in _list(body.get("tools"))
        if isinstance(t, Mapping)
    )
    return Shape(last, latest, structured, tools, len(contents))
