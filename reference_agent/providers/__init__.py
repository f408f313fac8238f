"""Provider clients: one streamed model call per `attempt`, in five wire formats.

http = make_http_client(config)
client = make_client(config, http)
call = CallHandle(purpose=request.purpose)
async with contextlib.aclosing(client.attempt(request, call)) as events:
    async for event in events:
        ...
"""

from __future__ import annotations

import httpx

from fake_providers.kinds import ProviderKind
from reference_agent.config import AgentConfig, ConfigError
from reference_agent.providers.anthropic import AnthropicClient
from reference_agent.providers.azure import AzureChatClient
from reference_agent.providers.base import (
    CallCancelled,
    CallHandle,
    FatalProviderError,
    Finished,
    ModelEvent,
    ModelReply,
    ModelRequest,
    ProviderClient,
    ProviderError,
    StaleStreamError,
    StreamBrokenError,
    TextDelta,
    ToolCallDone,
    ToolSpec,
    TransientProviderError,
)
from reference_agent.providers.gemini import GeminiClient
from reference_agent.providers.http import make_http_client
from reference_agent.providers.openai_chat import OpenAIChatClient
from reference_agent.providers.openai_responses import OpenAIResponsesClient

__all__ = [
    "AnthropicClient",
    "AzureChatClient",
    "CallCancelled",
    "CallHandle",
    "FatalProviderError",
    "Finished",
    "GeminiClient",
    "ModelEvent",
    "ModelReply",
    "ModelRequest",
    "OpenAIChatClient",
    "OpenAIResponsesClient",
    "ProviderClient",
    "ProviderError",
    "StaleStreamError",
    "StreamBrokenError",
    "TextDelta",
    "ToolCallDone",
    "ToolSpec",
    "TransientProviderError",
    "make_client",
    "make_http_client",
]

_CLIENTS = {
    ProviderKind.OPENAI_CHAT: OpenAIChatClient,
    ProviderKind.OPENAI_RESPONSES: OpenAIResponsesClient,
    ProviderKind.ANTHROPIC: AnthropicClient,
    ProviderKind.AZURE: AzureChatClient,
    ProviderKind.GEMINI: GeminiClient,
}


def make_client(config: AgentConfig, http: httpx.AsyncClient) -> ProviderClient:
    """The client for `config.provider`, sharing the agent's one `httpx.AsyncClient`."""
    try:
        factory = _CLIENTS[config.provider]
    except KeyError:
        raise ConfigError(
            f"unknown provider {config.provider!r}; use one of {', '.join(_CLIENTS)}"
        ) from None
    return factory(config, http)
