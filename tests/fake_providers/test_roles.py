"""Main, side or probe: told from the conversation a request carries, never from a header."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

from fake_providers.conversation import Shape, read_shape
from fake_providers.kinds import ProviderKind
from fake_providers.roles import MainCallProfile, Role, classify

TAG = "ch-0badc0de"
PROMPT = f"Tell me a long story. [{TAG}]"


def chat(*messages: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": r, "content": c} for r, c in messages], **extra}


CASES: list[tuple[str, ProviderKind, dict[str, Any], Role]] = [
    ("a turn", ProviderKind.OPENAI_CHAT, chat(("system", "be nice"), ("user", PROMPT)), Role.MAIN),
    (
        "a tool loop's next step",
        ProviderKind.OPENAI_CHAT,
        chat(("user", PROMPT), ("assistant", "calling"), ("tool", "result")),
        Role.MAIN,
    ),
    (
        "context after the prompt",
        ProviderKind.OPENAI_CHAT,
        chat(("user", PROMPT), ("user", "<reminder>be brief</reminder>")),
        Role.MAIN,
    ),
    (
        "memory over the history",
        ProviderKind.OPENAI_CHAT,
        chat(("user", PROMPT), ("assistant", "Once upon a time")),
        Role.SIDE,
    ),
    (
        "a summary request",
        ProviderKind.OPENAI_CHAT,
        chat(("user", PROMPT), ("assistant", "..."), ("user", "Summarise the above.")),
        Role.SIDE,
    ),
    (
        "a JSON title",
        ProviderKind.OPENAI_CHAT,
        chat(("user", PROMPT), response_format={"type": "json_object"}),
        Role.SIDE,
    ),
    (
        "responses: a turn",
        ProviderKind.OPENAI_RESPONSES,
        {"model": "m", "input": PROMPT},
        Role.MAIN,
    ),
    (
        "responses: after a function call",
        ProviderKind.OPENAI_RESPONSES,
        {
            "model": "m",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": PROMPT}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "ok"},
            ],
        },
        Role.MAIN,
    ),
    (
        "anthropic: tool results",
        ProviderKind.ANTHROPIC,
        {
            "model": "m",
            "max_tokens": 9,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
            ],
        },
        Role.MAIN,
    ),
    (
        "anthropic: a forced tool is structured output",
        ProviderKind.ANTHROPIC,
        {
            "model": "m",
            "max_tokens": 9,
            "messages": [{"role": "user", "content": PROMPT}],
            "tool_choice": {"type": "tool", "name": "title"},
        },
        Role.SIDE,
    ),
    (
        "gemini: a turn",
        ProviderKind.GEMINI,
        {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
        Role.MAIN,
    ),
    (
        "gemini: a JSON check",
        ProviderKind.GEMINI,
        {
            "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
            "generationConfig": {"responseMimeType": "application/json"},
        },
        Role.SIDE,
    ),
    (
        "gemini: history ending with the model",
        ProviderKind.GEMINI,
        {
            "contents": [
                {"role": "user", "parts": [{"text": PROMPT}]},
                {"role": "model", "parts": [{"text": "hi"}]},
            ]
        },
        Role.SIDE,
    ),
]


@pytest.mark.parametrize(("what", "kind", "body", "role"), CASES, ids=[c[0] for c in CASES])
def test_role_from_the_conversation(
    what: str, kind: ProviderKind, body: dict[str, Any], role: Role
) -> None:
    found = classify(read_shape(kind, body), [TAG])
    assert found.role is role, found.reason
    if role is Role.MAIN:
        assert found.prompt == TAG


def test_a_call_that_does_not_carry_the_sent_prompt_last_is_side() -> None:
    later = chat(("user", PROMPT), ("assistant", "ok"), ("user", "a prompt we never sent"))
    found = classify(read_shape(ProviderKind.OPENAI_CHAT, later), [TAG])
    assert found.role is Role.SIDE
    assert "carries no prompt the harness sent" in found.reason


def test_a_turn_after_a_cancelled_one_is_for_the_prompt_said_last() -> None:
    # openai-agents and LangGraph keep a cancelled turn's prompt, unanswered, in the history:
    # the next call's latest user text holds both prompts.
    later_tag = "ch-5ec0bd00"
    body = chat(("user", PROMPT), ("user", f"And now a short one. [{later_tag}]"))
    for tags in ([TAG, later_tag], [later_tag, TAG]):
        found = classify(read_shape(ProviderKind.OPENAI_CHAT, body), tags)
        assert (found.role, found.prompt) == (Role.MAIN, later_tag)


def test_without_registered_prompts_every_user_turn_is_main() -> None:
    found = classify(read_shape(ProviderKind.OPENAI_CHAT, chat(("user", "hi"))), [])
    assert found.role is Role.MAIN


def test_the_purpose_hint_can_demote_but_never_promote() -> None:
    turn = read_shape(ProviderKind.OPENAI_CHAT, chat(("user", PROMPT)))
    assert classify(turn, [TAG], hint="title").role is Role.SIDE
    assert classify(turn, [TAG], hint="turn").role is Role.MAIN
    memory = read_shape(ProviderKind.OPENAI_CHAT, chat(("user", PROMPT), ("assistant", "x")))
    assert classify(memory, [TAG], hint="turn").role is Role.SIDE


def test_not_a_model_call_is_a_probe_and_odd_bodies_never_raise() -> None:
    assert classify(None, [TAG]).role is Role.PROBE
    odd = read_shape(ProviderKind.OPENAI_CHAT, {"model": "m", "messages": [1, {"role": 2}]})
    assert odd == Shape("2", "", False, 0, 1)


@pytest.mark.anyio
async def test_a_main_call_rule_holds_the_turn_and_lets_side_traffic_through() -> None:
    import httpx

    from fake_providers import FakeProvider

    async with FakeProvider() as provider, httpx.AsyncClient() as client:
        provider.expect_prompt(TAG)
        provider.add_fault(f"role=main,prompt={TAG},hold-before=headers,gate=main")
        url = provider.url("openai-chat") + "/chat/completions"
        title = chat(("user", PROMPT), response_format={"type": "json_object"})
        answered = await client.post(url, json=title)  # not held: side traffic
        assert answered.status_code == 200
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(client.post, url, json=chat(("user", PROMPT))))
            await provider.gate("main").wait_reached(timeout=5)
            tg.cancel_scope.cancel()
        side, main = provider.ledger.requests()
        assert (side.role, side.prompt) == (Role.SIDE, TAG)
        assert (main.role, main.prompt) == (Role.MAIN, TAG)
        assert provider.ledger.to_json()["connections"][0]["requests"][0]["role"] == "side"


def test_a_calibrated_profile_demotes_look_alikes_of_the_turn_call() -> None:
    profile = MainCallProfile(tools=12, models=frozenset({"claude-sonnet-4-5"}))
    turn = read_shape(ProviderKind.OPENAI_CHAT, chat(("user", PROMPT), tools=[{}] * 12))
    title = read_shape(ProviderKind.OPENAI_CHAT, chat(("user", PROMPT)))
    found = classify(title, [TAG], model="claude-sonnet-4-5", profile=profile)
    assert found.role is Role.SIDE
    assert found.reason == "it offers no tools, while the agent's turn calls offer 12 (calibrated)"
    small = classify(turn, [TAG], model="claude-haiku-4-5", profile=profile)
    assert small.role is Role.SIDE and "uses model claude-haiku-4-5" in small.reason
    assert classify(turn, [TAG], model="claude-sonnet-4-5", profile=profile).role is Role.MAIN
