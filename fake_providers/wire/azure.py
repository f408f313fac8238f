"""Azure OpenAI chat wire format: `/openai/deployments/{deployment}/chat/completions`.

The body and stream are OpenAI Chat Completions with Azure's additions: an `api-version`
query parameter is mandatory, the model defaults to the deployment name, the stream opens
with a choice-less chunk carrying `prompt_filter_results`, and every choice carries
`content_filter_results`. Everything else is delegated to the OpenAI chat encoder.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import chain
from typing import Any

from fake_providers.content import Completion
from fake_providers.kinds import ProviderKind
from fake_providers.wire.base import RequestError, RequestFacts, json_bytes, sse
from fake_providers.wire.openai_chat import ChatEncoder

_SAFE = {"filtered": False, "severity": "safe"}
CONTENT_FILTER_RESULTS: Mapping[str, Any] = {
    "hate": _SAFE,
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
PROMPT_FILTER_RESULTS: list[dict[str, Any]] = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            **CONTENT_FILTER_RESULTS,
            "jailbreak": {"filtered": False, "detected": False},
        },
    }
]
# Azure's first streamed chunk: no choices, no id or model, only the prompt filter verdict.
_PRELUDE = sse(
    {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": PROMPT_FILTER_RESULTS,
    }
)


class AzureChat:
    """The Azure OpenAI chat `WireFormat`, composed around a `ChatEncoder`."""

    __slots__ = ("_chat",)

    def __init__(self) -> None:
        self._chat = ChatEncoder(
            kind=ProviderKind.AZURE, choice_extra={"content_filter_results": CONTENT_FILTER_RESULTS}
        )

    @property
    def kind(self) -> ProviderKind:
        return ProviderKind.AZURE

    def facts(self, path_params: Mapping[str, str], body: Mapping[str, Any]) -> RequestFacts:
        """Azure rejects a request without `api-version`; the deployment names the model."""
        if not path_params.get("api-version"):
            raise RequestError(
                400,
                "Missing required query parameter 'api-version' (e.g. ?api-version=2024-10-21).",
            )
        return self._chat.facts_with_default_model(body, path_params.get("deployment") or None)

    def stream_events(self, completion: Completion, facts: RequestFacts) -> Iterator[bytes]:
        """The prompt-filter prelude, then the (lazy) chat stream; `chain` adds no frame."""
        return chain((_PRELUDE,), self._chat.stream_events(completion, facts))

    def json_body(self, completion: Completion, facts: RequestFacts) -> bytes:
        body = self._chat.completion_object(completion)
        body["prompt_filter_results"] = PROMPT_FILTER_RESULTS
        return json_bytes(body)

    def error_body(self, status: int, message: str) -> bytes:
        return self._chat.error_body(status, message)

    def stream_error_event(self, message: str, completion: Completion) -> bytes:
        return self._chat.stream_error_event(message, completion)

    def malformed_event(self) -> bytes:
        return self._chat.malformed_event()


AZURE = AzureChat()
