"""LangGraph (with LangChain chat models) as a harness target:
`python:conformance.adapters.langgraph:make_target`.

The agent is the smallest real graph: `START -> model -> END` over `MessagesState`, with an
`AsyncSqliteSaver` checkpointer, one thread per session. A turn iterates
`graph.astream(..., stream_mode="messages")` (tokens as they arrive) or awaits
`graph.ainvoke()` for non-streaming scenarios. LangGraph's cancel path is asyncio's: the task
running the graph is cancelled (`task.cancel()`). A deadline is the application's
`asyncio.timeout()` around it. Leaving early (`leave`) is breaking out of `astream()`.

The transcript is what the checkpointer persisted for the thread (`aget_state`), so a ghost
turn is a checkpoint written after the run was cancelled or timed out.

Models: ChatOpenAI (Chat Completions, or `use_responses_api=True`), AzureChatOpenAI and
ChatAnthropic, each with base URL, retries and read timeout from the case. LangChain caches
an httpx client per base URL at module level; the OpenAI models get our own client instead,
and the Anthropic one is closed through its (private) `_async_client` on stop.
"""

from __future__ import annotations

import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from conformance.adapters.library import AZURE_API_VERSION, LibraryTarget, Turn
from fake_providers.kinds import ProviderKind
from harness.target import Transcript, TranscriptEntry

MODELS = {
    "openai-chat": "gpt-4o",
    "openai-responses": "gpt-4o",
    "azure": "gpt-4o",
    "anthropic": "claude-sonnet-4-5",
}


class LangGraphTarget(LibraryTarget):
    name = "langgraph"
    providers = tuple(ProviderKind(kind) for kind in MODELS)

    def __init__(self) -> None:
        super().__init__()
        self._model: Any = None
        self._http: Any = None
        self._graph: Any = None
        self._resources = AsyncExitStack()
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def _chat_model(self) -> Any:
        import httpx

        endpoint = self.endpoint
        assert endpoint is not None
        common: dict[str, Any] = dict(
            api_key=endpoint.api_key,
            max_retries=self.sdk_retries(),
            timeout=self.sdk_timeout(),
            streaming=self.streaming,
        )
        if self.settings.max_output_tokens is not None:
            common["max_tokens"] = self.settings.max_output_tokens
        if endpoint.kind == "anthropic":
            from langchain_anthropic import ChatAnthropic

            stale = self.settings.stale_timeout  # ChatAnthropic takes seconds, not httpx.Timeout
            common["timeout"] = stale if stale is not None else 600.0
            return ChatAnthropic(model=MODELS["anthropic"], base_url=endpoint.base_url, **common)
        verify: Any = endpoint.ca_file or True
        self._http = httpx.AsyncClient(verify=verify)
        if endpoint.kind == "azure":
            from langchain_openai import AzureChatOpenAI

            return AzureChatOpenAI(
                azure_endpoint=endpoint.base_url,
                azure_deployment=MODELS["azure"],
                api_version=AZURE_API_VERSION,
                http_async_client=self._http,
                **common,
            )
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=MODELS[endpoint.kind],
            base_url=endpoint.base_url,
            use_responses_api=endpoint.kind == "openai-responses",
            http_async_client=self._http,
            **common,
        )

    async def open(self) -> None:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        from langgraph.graph import END, START, MessagesState, StateGraph

        self._model = self._chat_model()
        model = self._model

        async def call_model(state: MessagesState) -> dict[str, Any]:
            return {"messages": [await model.ainvoke(state["messages"])]}

        builder = StateGraph(MessagesState)
        builder.add_node("model", call_model)
        builder.add_edge(START, "model")
        builder.add_edge("model", END)
        self._dir = tempfile.TemporaryDirectory(prefix="langgraph-")
        db = str(Path(self._dir.name) / "checkpoints.sqlite3")
        saver = await self._resources.enter_async_context(AsyncSqliteSaver.from_conn_string(db))
        self._graph = builder.compile(checkpointer=saver)

    async def close(self) -> None:
        await self._resources.aclose()
        if self._http is not None:
            await self._http.aclose()
        client = getattr(self._model, "__dict__", {}).get("_async_client")
        if client is not None:  # ChatAnthropic's cached client (module-level httpx pool)
            await client.close()
        if self._dir is not None:
            self._dir.cleanup()

    def _config(self, session_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": session_id}}

    async def run_turn(self, turn: Turn) -> str:
        from langchain_core.messages import HumanMessage

        inputs = {"messages": [HumanMessage(turn.prompt)]}
        config = self._config(turn.session_id)
        if not self.streaming:
            state = await self._graph.ainvoke(inputs, config)
            return str(state["messages"][-1].content)
        async for chunk, _meta in self._graph.astream(inputs, config, stream_mode="messages"):
            if turn.show(_text(getattr(chunk, "content", ""))):
                break  # left: the caller stops reading
        return turn.shown

    async def read_transcript(self, session_id: str) -> Transcript:
        snapshot = await self._graph.aget_state(self._config(session_id))
        messages = (snapshot.values or {}).get("messages", [])
        roles = {"human": "user", "ai": "assistant"}
        entries = tuple(
            TranscriptEntry(roles[m.type], _text(m.content))
            for m in messages
            if getattr(m, "type", "") in roles
        )
        return Transcript(entries, (0, 0), ())


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def make_target() -> LangGraphTarget:
    return LangGraphTarget()
