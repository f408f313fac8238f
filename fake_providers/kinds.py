"""Provider kinds: the one vocabulary for the wire formats we speak, and what each implies.

Every map that used to repeat these strings (base paths, SDK env vars, response id prefixes,
the catalogue's provider list, `serve`'s URL lines) derives from `ProviderKind`. The values
are the public names users type (`--provider openai-chat`, `kind=anthropic`, TOML
`providers = [...]`, the `{provider}` placeholder).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class KindFacts:
    """What a provider kind means outside its wire format."""

    base_path: str  # appended to the server origin to give the SDK's base URL
    base_url_env: str  # the variable the official SDK reads its base URL from
    api_key_env: str  # ... and its API key from
    id_prefix: str  # the provider's own response-id shape (agents sniff ids)
    sdk: str  # the official SDK's package name, for messages and docs
    model: str  # a model name the kind's SDKs and agents accept


class ProviderKind(StrEnum):
    """A wire format the fake provider serves and the reference agent speaks."""

    OPENAI_CHAT = "openai-chat"
    OPENAI_RESPONSES = "openai-responses"
    ANTHROPIC = "anthropic"
    AZURE = "azure"
    GEMINI = "gemini"

    @property
    def facts(self) -> KindFacts:
        return _FACTS[self]

    @property
    def base_path(self) -> str:
        return _FACTS[self].base_path

    @property
    def base_url_env(self) -> str:
        return _FACTS[self].base_url_env

    @property
    def api_key_env(self) -> str:
        return _FACTS[self].api_key_env

    @property
    def id_prefix(self) -> str:
        return _FACTS[self].id_prefix

    @property
    def model(self) -> str:
        return _FACTS[self].model

    @classmethod
    def parse(cls, name: str) -> ProviderKind:
        """The kind named `name` (or an alias); one line naming the valid kinds otherwise."""
        text = name.strip().lower()
        try:
            return cls(ALIASES.get(text, text))
        except ValueError:
            raise UnknownProviderKind(name) from None


class UnknownProviderKind(ValueError):
    """A provider kind we do not speak; the message lists the valid ones and a near match."""

    def __init__(self, name: str) -> None:
        valid = [k.value for k in ProviderKind]
        close = difflib.get_close_matches(name.strip().lower(), [*valid, *ALIASES], n=1)
        hint = f" (did you mean '{ALIASES.get(close[0], close[0])}'?)" if close else ""
        super().__init__(f"unknown provider '{name}'{hint}; use one of {', '.join(valid)}")
        self.name = name


# `openai` was serve's name for the Chat Completions base URL; it stays accepted everywhere.
ALIASES: dict[str, str] = {"openai": "openai-chat"}

_FACTS: dict[ProviderKind, KindFacts] = {
    ProviderKind.OPENAI_CHAT: KindFacts(
        "/v1", "OPENAI_BASE_URL", "OPENAI_API_KEY", "chatcmpl-", "openai", "gpt-4o"
    ),
    ProviderKind.OPENAI_RESPONSES: KindFacts(
        "/v1", "OPENAI_BASE_URL", "OPENAI_API_KEY", "resp_", "openai", "gpt-4o"
    ),
    ProviderKind.ANTHROPIC: KindFacts(
        "", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "msg_", "anthropic", "claude-sonnet-4-5"
    ),
    ProviderKind.AZURE: KindFacts(
        "", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "chatcmpl-", "openai", "gpt-4o"
    ),
    ProviderKind.GEMINI: KindFacts(
        "", "GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY", "", "google-genai", "gemini-2.5-flash"
    ),
}

ALL_KINDS: tuple[ProviderKind, ...] = tuple(ProviderKind)
