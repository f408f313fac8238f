"""Sans-IO wire formats of the faked LLM providers, and the route table that picks one.

The server calls `route(method, path, query)`, then `route.wire.facts(route.params, body)`,
and encodes with `stream_events`, `json_body`, `error_body` and the fault helpers.
"""

from fake_providers.wire.anthropic import ANTHROPIC
from fake_providers.wire.azure import AZURE
from fake_providers.wire.base import RequestError, RequestFacts, WireFormat
from fake_providers.wire.gemini import GEMINI, GEMINI_JSON_ARRAY
from fake_providers.wire.openai_chat import OPENAI_CHAT
from fake_providers.wire.openai_responses import OPENAI_RESPONSES
from fake_providers.wire.routes import (
    Route,
    events_before_text,
    is_models_list,
    models_list_body,
    route,
)

__all__ = [
    "ANTHROPIC",
    "AZURE",
    "GEMINI",
    "GEMINI_JSON_ARRAY",
    "OPENAI_CHAT",
    "OPENAI_RESPONSES",
    "RequestError",
    "RequestFacts",
    "Route",
    "WireFormat",
    "events_before_text",
    "is_models_list",
    "models_list_body",
    "route",
]
