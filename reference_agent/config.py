"""Agent configuration: provider endpoint, limits and every timeout (all tunable for tests)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from fake_providers.kinds import ProviderKind
from reference_agent.defects import Defects

# The wire formats the reference agent speaks: all of them.
PROVIDER_KINDS: tuple[ProviderKind, ...] = tuple(ProviderKind)


# The real services' base URLs, for a user who sets only the key.
DEFAULT_BASE_URLS = {
    ProviderKind.OPENAI_CHAT: "https://api.openai.com/v1",
    ProviderKind.OPENAI_RESPONSES: "https://api.openai.com/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
    ProviderKind.GEMINI: "https://generativelanguage.googleapis.com",
}
# Where a user names the model (Azure names a deployment instead).
MODEL_ENV = {
    ProviderKind.OPENAI_CHAT: "OPENAI_MODEL",
    ProviderKind.OPENAI_RESPONSES: "OPENAI_MODEL",
    ProviderKind.ANTHROPIC: "ANTHROPIC_MODEL",
    ProviderKind.AZURE: "AZURE_OPENAI_DEPLOYMENT",
    ProviderKind.GEMINI: "GEMINI_MODEL",
}


class ConfigError(ValueError):
    """Bad configuration; the message names the setting and how to fix it."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything the reference agent needs. Times are seconds."""

    provider: ProviderKind = ProviderKind.OPENAI_CHAT
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    model: str = "gpt-4o-mini"
    ca_file: str | None = None
    azure_api_version: str = "2024-10-21"
    max_output_tokens: int = 1024
    stream: bool = True  # stream turn responses (False: plain JSON bodies)

    # Deadlines and staleness.
    turn_timeout: float | None = None  # the runtime's deadline for one turn
    connect_timeout: float = 10.0
    stale_timeout: float = 60.0  # give up on a stream that sends nothing for this long
    # Retries of genuine transient failures.
    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    # Tool loop and budget.
    max_steps: int = 8
    max_budget_tokens: int | None = None
    tool_timeout: float = 60.0
    # Background work (INCIDENTS.md I1).
    compaction_threshold_chars: int = 24_000  # inline compaction above this transcript size
    memory_extraction: bool = True  # post-turn, own lifetime, not cancelled by the user
    memory_timeout: float = 30.0

    defects: Defects = field(default_factory=Defects)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.provider not in PROVIDER_KINDS:
            raise ConfigError(
                f"unknown provider {self.provider!r}; use one of {', '.join(PROVIDER_KINDS)}"
            )
        object.__setattr__(self, "provider", ProviderKind(self.provider))

    def with_(self, **changes: object) -> AgentConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(
        cls, provider: str = ProviderKind.OPENAI_CHAT, environ: Mapping[str, str] | None = None
    ) -> AgentConfig:
        """Endpoint and key from the standard variables (`OPENAI_BASE_URL`, ...)."""
        env = os.environ if environ is None else environ
        kind = ProviderKind.parse(provider)
        base = env.get(kind.base_url_env, DEFAULT_BASE_URLS.get(kind, ""))
        key = env.get(kind.api_key_env, "")
        model = env.get(MODEL_ENV[kind], kind.model) if kind in MODEL_ENV else kind.model
        return cls(
            provider=kind,
            base_url=base,
            api_key=key,
            model=model,
            ca_file=env.get("SSL_CERT_FILE") or None,
            defects=Defects.from_env(dict(env)),
        )
