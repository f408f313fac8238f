"""The one-line text spec shared by `--fault`, the control API and model names.

`pace=50ms,hang-after=5,model=gpt-4o*,times=2`: tokens separated by `,` or `;`. Fault keys
belong to the registered faults (`registry.FAULTS`); the rest say what the model says
(`tokens`, `text`, `tool`, `seed`) and which requests a rule selects. A key may appear once
(`tool` excepted); every number has a documented range.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any

from fake_providers.content import DEFAULT_TOKENS, MAX_TOKENS, ContentSpec, ToolCall
from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.plan import FaultPlan, Match, Rule
from fake_providers.faults.registry import FAULTS, OWNER
from fake_providers.faults.values import FaultSpecError
from fake_providers.kinds import ProviderKind, UnknownProviderKind

MAX_SPEC_LENGTH = 65_536
MAX_TOOLS = 64
CONTENT_KEYS = ("seed", "tokens", "text", "tool")
SELECTOR_KEYS = (
    "path",
    "model",
    "header",
    "nth",
    "body-contains",
    "stream",
    "kind",
    "role",
    "prompt",
    "times",
)
ROLES = ("main", "side", "probe")
FAULT_KEYS = (*(key for fault in FAULTS for key in fault.keys), *CONTENT_KEYS)
REPEATABLE = frozenset({"tool"})
_EXAMPLES = {
    "seed": "seed=7",
    "tokens": "tokens=500",
    "text": "text=hello world",
    "tool": "tool=get_weather",
    "path": "path=/v1/messages",
    "model": "model=gpt-4o*",
    "header": "header=x-title:*",
    "nth": "nth=2",
    "body-contains": "body-contains=summarize",
    "stream": "stream=true",
    "kind": "kind=anthropic",
    "role": "role=main (main, side or probe)",
    "prompt": "prompt=ch-5f3a9c21 (a prompt tag the harness sent)",
    "times": "times=2",
}


def _split(spec: str) -> Iterator[tuple[str, str | None]]:
    for raw in re.split(r"[,;]", spec):
        token = raw.strip()
        if not token:
            continue
        key, sep, value = token.partition("=")
        yield key.strip().lower(), (value.strip() if sep else None)


def _tokens(spec: str) -> list[tuple[str, str | None]]:
    """The spec's (key, value) pairs; refuses unknown, repeated and empty keys."""
    if len(spec) > MAX_SPEC_LENGTH:
        raise FaultSpecError(f"a fault spec has at most {MAX_SPEC_LENGTH:,} characters")
    seen: dict[str, str | None] = {}
    pairs = []
    for key, value in _split(spec):
        if key not in OWNER and key not in _EXAMPLES:
            raise FaultSpecError(_unknown(key, spec))
        if key in seen and key not in REPEATABLE:
            raise FaultSpecError(
                f"'{key}' is given twice ({key}={values.shown(seen[key] or '')} and "
                f"{key}={values.shown(value or '')}); keep one"
            )
        flag = key in OWNER and key in OWNER[key].flags
        if (value is None or value == "") and not flag:
            example = OWNER[key].examples[key] if key in OWNER else _EXAMPLES[key]
            raise FaultSpecError(f"'{key}' needs a value, as in {example}")
        seen[key] = value
        pairs.append((key, value))
    return pairs


def parse_rule(spec: str) -> Rule:
    """Parse one text spec (faults, content and selectors) into a `Rule`.

    Raises `FaultSpecError` naming the bad token and the fix (listing the valid keys).
    """
    pairs = _tokens(spec)
    grouped: dict[type[Fault], dict[str, str | None]] = {}
    other: dict[str, str] = {}
    tools: list[ToolCall] = []
    for key, value in pairs:
        if key in OWNER:
            grouped.setdefault(OWNER[key], {})[key] = value
        elif key == "tool":
            if len(tools) == MAX_TOOLS:
                raise FaultSpecError(f"at most {MAX_TOOLS} tool= tokens in one spec")
            tools.append(ToolCall(id=f"call_{value}_{len(tools) + 1}", name=value or ""))
        else:
            other[key] = value or ""
    steps = tuple(fault.from_spec(given) for fault, given in grouped.items())
    tokens = DEFAULT_TOKENS
    if "tokens" in other:
        tokens = values.whole(other["tokens"], key="tokens", noun="tokens", high=MAX_TOKENS)
    seed = 0
    if "seed" in other:
        seed = values.whole(other["seed"], key="seed", high=values.MAX_WHOLE, example="7")
    content = ContentSpec(tokens=tokens, text=other.get("text"), tool_calls=tuple(tools))
    times = None
    if "times" in other:
        times = values.whole(other["times"], key="times", low=1, high=values.MAX_WHOLE)
    plan = FaultPlan(steps, content, seed)
    return Rule(plan=plan, match=_match(other), times=times)


def _match(given: dict[str, str]) -> Match:
    fields: dict[str, Any] = {}
    for key in ("path", "model", "body-contains", "prompt"):
        if key in given:
            fields[key.replace("-", "_")] = given[key]
    if "role" in given:
        if given["role"] not in ROLES:
            raise FaultSpecError(
                f"role={values.shown(given['role'])}: expected one of {', '.join(ROLES)}"
            )
        fields["role"] = given["role"]
    if "kind" in given:
        try:
            fields["kind"] = ProviderKind.parse(given["kind"]).value
        except UnknownProviderKind as exc:
            valid = ", ".join(k.value for k in ProviderKind)
            if len(given["kind"]) > 40:
                raise FaultSpecError(
                    f"kind={values.shown(given['kind'])}: use one of {valid}"
                ) from None
            raise FaultSpecError(f"kind={given['kind']}: {exc}") from None
    if "header" in given:
        name, colon, pattern = given["header"].partition(":")
        if not colon or not name.strip():
            raise FaultSpecError(
                f"header={values.shown(given['header'])}: expected NAME:VALUE, "
                "such as header=x-title:*"
            )
        fields["header"] = (name.strip().lower(), pattern.strip())
    if "nth" in given:
        fields["nth"] = values.whole(given["nth"], key="nth", low=1, high=values.MAX_WHOLE)
    if "stream" in given:
        fields["stream"] = values.boolean(given["stream"], key="stream")
    return Match(**fields)


def _unknown(key: str, spec: str) -> str:
    valid = (*FAULT_KEYS, *SELECTOR_KEYS)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    shown = spec if len(spec) <= 200 else spec[:200] + "..."
    name = key if len(key) <= 60 else key[:60] + "..."
    return f"unknown fault '{name}' in '{shown}'{hint}; valid: {', '.join(valid)}"


def plan_tokens(plan: FaultPlan) -> list[str]:
    """The spec tokens of a plan: its faults in order, then seed and content."""
    tokens = [token for step in plan.steps for token in step.tokens()]
    if plan.seed:
        tokens.append(f"seed={plan.seed}")
    content = plan.content
    if content.text is not None:
        tokens.append(f"text={content.text}")
    elif content.tokens != DEFAULT_TOKENS:
        tokens.append(f"tokens={content.tokens}")
    tokens.extend(f"tool={call.name}" for call in content.tool_calls)
    return tokens
