"""Azure OpenAI: the Chat Completions format at a deployment URL, keyed by `api-key`.

Only the address and the credential header differ from OpenAI, so this composes a
`ChatCodec`; the model name is the deployment. Azure's choice-less first chunk
(`prompt_filter_results`) simply carries no delta.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from fake_providers.kinds import ProviderKind
from reference_agent.config import AgentConfig
from reference_agent.providers.http import CodecClient, base_url
from reference_agent.providers.openai_chat import ChatCodec


def azure_url(config: AgentConfig) -> str:
    deployment = quote(config.model, safe="")
    version = quote(config.azure_api_version, safe="")
    return (
        f"{base_url(config)}/openai/deployments/{deployment}/chat/completions?api-version={version}"
    )


class AzureChatClient(CodecClient):
    """Azure OpenAI chat deployments."""

    def __init__(self, config: AgentConfig, http: httpx.AsyncClient) -> None:
        codec = ChatCodec(
            kind=ProviderKind.AZURE,
            url=azure_url(config),
            headers={"api-key": config.api_key},
            model=config.model,
        )
        super().__init__(config, http, codec)
