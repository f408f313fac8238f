"""Azure OpenAI client with respx: deployment URL, api-version, `api-key`, Azure's extra
stream chunks. Decoding itself is the chat client's (tested there)."""

from __future__ import annotations

import json

import pytest
import respx

from fake_providers.content import Completion, FinishReason
from fake_providers.content import Usage as FakeUsage
from fake_providers.wire.azure import AZURE
from fake_providers.wire.base import RequestFacts
from reference_agent.config import AgentConfig
from reference_agent.model import Message, Usage
from reference_agent.providers import (
    CallHandle,
    Finished,
    ModelEvent,
    ModelRequest,
    TextDelta,
    TransientProviderError,
    make_client,
    make_http_client,
)

pytestmark = pytest.mark.anyio

CONFIG = AgentConfig(
    provider="azure",
    base_url="https://res.openai.azure.test/",
    api_key="az-key",
    model="my deployment",
    azure_api_version="2024-10-21",
)
URL = (
    "https://res.openai.azure.test/openai/deployments/my%20deployment/chat/completions"
    "?api-version=2024-10-21"
)
SSE = {"content-type": "text/event-stream"}
REQUEST = ModelRequest((Message("user", "hi"),), max_tokens=9)
COMPLETION = Completion(
    model="gpt-4o",
    response_id="chatcmpl-az",
    created=0,
    text_chunks=("Hello", " there"),
    finish=FinishReason.LENGTH,
    usage=FakeUsage(4, 2),
)


async def run() -> list[ModelEvent]:
    async with make_http_client(CONFIG) as http:
        client = make_client(CONFIG, http)
        assert client.kind == "azure"
        return [event async for event in client.attempt(REQUEST, CallHandle())]


async def test_deployment_url_api_version_and_key_header() -> None:
    facts = RequestFacts("azure", "my deployment", stream=True, include_usage=True)
    raw = b"".join(AZURE.stream_events(COMPLETION, facts))
    with respx.mock() as router:
        route = router.post(URL).respond(200, headers=SSE, content=raw)
        events = await run()
    sent = route.calls.last.request
    assert sent.url.params["api-version"] == "2024-10-21"
    assert sent.headers["api-key"] == "az-key"
    assert "authorization" not in sent.headers
    body = json.loads(sent.content)
    assert body["max_completion_tokens"] == 9
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    # The prompt-filter prelude and content-filter fields carry no events of their own.
    assert events == [TextDelta("Hello"), TextDelta(" there"), Finished("length", Usage(4, 2))]


async def test_azure_errors_map_like_openai() -> None:
    body = {"error": {"code": "429", "message": "Rate limit is exceeded."}}
    with respx.mock() as router:
        router.post(URL).respond(429, headers={"retry-after-ms": "1500"}, json=body)
        with pytest.raises(TransientProviderError, match="Rate limit is exceeded") as caught:
            await run()
    assert caught.value.retry_after == pytest.approx(1.5)
