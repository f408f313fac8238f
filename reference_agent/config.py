"""Agent configuration: provider endpoint, limits and every timeout (all tunable for tests)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from reference_agent.defects import Defects

PROVIDER_KINDS = ("openai-chat", "openai-responses", "anthropic", "azure")


class ConfigError(ValueError):
    """Bad configuration; the message names the setting and how to fix it."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything the reference agent needs. Times are seconds."""

    provider: str = "openai-chat"
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

    def with_(self, **changes: object) -> AgentConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(
        cls, provider: str = "openai-chat", environ: Mapping[str, str] | None = None
    ) -> AgentConfig:
        """Endpoint and key from the standard variables (`OPENAI_BASE_URL`, ...)."""
        env = os.environ if environ is None else environ
        if provider == "anthropic":
            base = env.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com")
            key = env.get("ANTHROPIC_API_KEY", "")
            model = env.get("ANTHROPIC_MODEL", "claude-sonnet-4-5")
        elif provider == "azure":
            base = env.get("AZURE_OPENAI_ENDPOINT", "")
            key = env.get("AZURE_OPENAI_API_KEY", "")
            model = env.get("AZURE_OPENAI_DEPLOYMENT", "gpt-4o")
        else:
            base = env.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
            key = env.get("OPENAI_API_KEY", "")
            model = env.get("OPENAI_MODEL", "gpt-4o-mini")
        return cls(
            provider=provider,
            base_url=base,
            api_key=key,
            model=model,
            ca_file=env.get("SSL_CERT_FILE") or None,
            defects=Defects.from_env(dict(env)),
        )
