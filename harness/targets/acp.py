"""The `acp:<command>` target: any Agent Client Protocol agent, driven as a client over stdio.

Every message from the agent is stamped with `time.monotonic_ns()` the moment its line is
read, and each `session/update` is filed under the prompt turn it arrived in, so scenarios
can check the cancel contract: updates flushed, then the `session/prompt` answer, then
nothing of that turn. Permission requests are allowed by default; `hold_permissions()`
keeps them pending, and after `session/cancel` the target answers the pending ones
`cancelled`, as the spec requires of clients. `AgentSettings` cannot reach an arbitrary
agent and are ignored (hence no TIMEOUT, RETRIES, ... capabilities).

Stop reasons: end_turn -> completed, cancelled -> cancelled, max_turn_requests ->
max_turns, max_tokens -> max_budget (the turn's token budget), refusal or anything else ->
error; a JSON-RPC error answer -> error (or `timeout` when its data says stopReason timeout).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, cast

import acp
import acp.interfaces
import anyio
import anyio.abc
from acp.client.connection import ClientSideConnection
from acp.schema import (
    AllowedOutcome,
    DeniedOutcome,
    Implementation,
    PermissionOption,
    RequestPermissionResponse,
    ToolCallUpdate,
)
from anyio.streams.buffered import BufferedByteReceiveStream

from fake_providers.kinds import ProviderKind
from harness.target import (
    TERMINAL_EVENT_KINDS,
    AgentSettings,
    CancelAck,
    Capability,
    Endpoint,
    Outcome,
    StreamEventRecord,
    StreamLog,
    Submission,
    TargetStartError,
    TimelineNote,
    Transcript,
    TranscriptEntry,
)
from harness.targets.process import (
    PROCESS_CLOSE_WITHIN,
    AgentProcess,
    command_line,
    environment,
    template_values,
)
from reference_agent import process_table

DEFAULT_CAPABILITIES = frozenset(
    map(
        Capability,
        ("cancel", "transcript", "sessions", "tools", "permissions", "acp", "stream-events"),
    )
)
# The reference agent's ACP door also honours every scenario setting (as CLI flags).
REFERENCE_CAPABILITIES = DEFAULT_CAPABILITIES | frozenset(
    map(
        Capability,
        (
            "timeout",
            "stale-timeout",
            "retries",
            "stream-retries",
            "compaction",
            "background",
            "atomic-turns",
        ),
    )
)
# Someone else's ACP agent: only what any ACP agent can be judged on. Its tools are not
# the harness's tools, session/load is optional, and its settings are out of our reach;
# add what it has with `capabilities_add` in its TOML.
THIRD_PARTY_CAPABILITIES = frozenset(
    map(Capability, ("cancel", "sessions", "acp", "stream-events"))
)
# Updates that belong to a turn's content; others (commands, mode, usage) are session-level.
CONTENT_UPDATES = frozenset(
    ("agent_message_chunk", "agent_thought_chunk", "tool_call", "tool_call_update")
)
STOP_REASONS = dict(
    end_turn="completed",
    cancelled="cancelled",
    max_turn_requests="max_turns",
    max_tokens="max_budget",
)
REPLAY_ROLES = {"user_message_chunk": "user", "agent_message_chunk": "assistant"}
MAX_LINE = 50 * 1024 * 1024
CLIENT_NOTIFICATIONS = frozenset({"session/update"})  # what ACP lets an agent notify a client
CLIENT_INFO = Implementation(name="cancel-harness", version="0.1")


def reference_acp_command(defects: Sequence[str] = ()) -> list[str]:
    """The command line of the reference agent's ACP front door, with templates."""
    argv = [sys.executable, "-m", "reference_agent", "acp", "--provider", "{provider}"]
    argv += ["--base-url", "{base_url}", "--api-key", "{api_key}"]
    for defect in defects:
        argv += ["--defect", defect]
    return argv


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    """One `session/update` as received; `turn_id` is "" before the session's first prompt."""

    t_ns: int
    session_id: str
    turn_id: str
    kind: str  # the update's sessionUpdate, e.g. agent_message_chunk, tool_call_update
    text: str = ""
    tool_call_id: str = ""
    status: str = ""

    @property
    def content(self) -> bool:
        return self.kind in CONTENT_UPDATES


@dataclass(eq=False)
class PermissionRequest:
    """One `session/request_permission` from the agent and how the target answered it."""

    session_id: str
    turn_id: str
    tool_call_id: str
    title: str
    asked_ns: int
    options: tuple[PermissionOption, ...]
    outcome: str | None = None  # "selected" | "cancelled" once answered
    option_id: str | None = None
    answered_ns: int | None = None
    answered: anyio.Event = field(default_factory=anyio.Event)

    def resolve(self, option_id: str | None) -> None:
        """Answer with the option, or `cancelled` when None; only the first answer counts."""
        if self.outcome is None:
            self.outcome = "cancelled" if option_id is None else "selected"
            self.option_id, self.answered_ns = option_id, time.monotonic_ns()
            self.answered.set()


@dataclass(eq=False)
class _Turn:
    id: str
    session_id: str
    sent_ns: int | None = None
    cancel_ns: int | None = None
    answer_ns: int | None = None
    stop_reason: str | None = None
    error: str | None = None
    updates: list[UpdateRecord] = field(default_factory=list)
    sent: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)


class _Pipe:
    """An acp Transport over the agent's stdin/stdout: NDJSON lines, each stamped on arrival."""

    def __init__(self, target: AcpTarget, process: anyio.abc.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._target, self._stdin = target, process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._lock = anyio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        self._target._sending(message)  # before the write: the answer cannot overtake it
        async with self._lock:
            await self._stdin.send(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def receive(self) -> dict[str, Any] | None:
        while True:
            try:
                line = await self._stdout.receive_until(b"\n", MAX_LINE)
            except (anyio.IncompleteRead, anyio.EndOfStream, anyio.ClosedResourceError):
                return None
            t_ns = time.monotonic_ns()
            try:
                message = json.loads(line)
            except ValueError:
                self._target._note(t_ns, f"acp: agent wrote a non-JSON line {line[:60]!r}")
                continue
            if not isinstance(message, dict):
                continue
            method = message.get("method")
            if (
                "id" not in message
                and isinstance(method, str)
                and method not in CLIENT_NOTIFICATIONS
            ):
                # A notification of the agent's own (qwen-code sends
                # `qwen/notify/session/prompt-suggestion`): JSON-RPC has it ignored. The acp
                # library would log a traceback for each one; note it once instead.
                self._target._unknown_notification(method, t_ns)
                continue
            self._target._received(message, t_ns)
            return message

    async def close(self) -> None:
        async with self._lock:
            await self._stdin.aclose()


class _Client:
    """The client side the agent calls back: updates are recorded by the pipe already."""

    def __init__(self, target: AcpTarget) -> None:
        self._target = target

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        return None

    async def request_permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption], **_: Any
    ) -> RequestPermissionResponse:
        return await self._target._permission(session_id, tool_call, options)


class AcpTarget:
    """An ACP agent over stdio (see the module docstring). `defects` only label the name."""

    # Optional facts for the runner (read with getattr): the wire formats the agent speaks and
    # the bound on its provider close after a cancel (None: the scenario's own bound).
    providers: tuple[ProviderKind, ...] | None = None
    close_within: float | None = PROCESS_CLOSE_WITHIN

    def __init__(
        self,
        *,
        command: str | list[str],
        env: dict[str, str] | None = None,
        defects: Sequence[str] = (),
        startup_timeout: float = 30.0,
        name: str | None = None,
        capabilities: frozenset[Capability] | None = None,
        settings_args: Callable[[AgentSettings], Sequence[str]] | None = None,
    ) -> None:
        self.command, self.env_template = command, dict(env or {})
        self.settings_args = settings_args  # how scenario settings reach the agent, if at all
        self.defects = tuple(defects)
        self.startup_timeout = startup_timeout
        shown = command if isinstance(command, str) else shlex.join(command)
        label = f"+{','.join(self.defects)}" if self.defects else ""
        self.name = name or f"acp:{shown}{label}"
        self.capabilities = DEFAULT_CAPABILITIES if capabilities is None else capabilities
        self._stack: AsyncExitStack | None = None
        self._process: AgentProcess | None = None
        self._conn: ClientSideConnection | None = None
        self._can_load = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._turns: dict[str, _Turn] = {}
        self._unsent: dict[str, deque[_Turn]] = {}
        self._current: dict[str, _Turn] = {}  # session -> its latest prompt turn
        self._by_rpc: dict[int, _Turn] = {}
        self._loads: dict[int, str] = {}  # rpc id of a session/load -> its session
        self._replay: dict[str, list[UpdateRecord]] = {}  # sessions being loaded
        self._permissions: list[PermissionRequest] = []
        self._hold = False
        self._changed = anyio.Event()
        self._notes: list[TimelineNote] = []
        self._pids_seen: set[int] = set()
        self._ignored: set[str] = set()  # methods of notifications ACP does not define

    # ------------------------------------------------------------------- lifecycle

    @property
    def conn(self) -> ClientSideConnection:
        if self._conn is None:
            raise TargetStartError(f"the target {self.name} was used before start()")
        return self._conn

    async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None:
        values = template_values(endpoint)
        argv = command_line(self.command, values)
        if self.settings_args is not None:
            argv += list(self.settings_args(settings))
        process = AgentProcess(argv, environment(self.env_template, values, endpoint.env))
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.push_async_callback(process.stop)
            self._process = process
            pipe = _Pipe(self, await process.start(self._tg))
            self._conn = acp.connect_to_agent(cast(acp.interfaces.Client, _Client(self)), pipe)
            stack.push_async_callback(self._conn.close)
            with anyio.fail_after(self.startup_timeout):
                init = await self._conn.initialize(
                    protocol_version=acp.PROTOCOL_VERSION, client_info=CLIENT_INFO
                )
            self._can_load = bool(init.agent_capabilities and init.agent_capabilities.load_session)
        except BaseException as exc:
            # Bounded (a second or two), and shielded: a runner that gave up on the start
            # cancels us here, and the stack below must still close the agent's process.
            with anyio.CancelScope(shield=True):
                failure = await self._start_failure(exc)
            await stack.aclose()
            if failure is None:
                raise
            raise failure from None
        self._stack = stack

    async def _start_failure(self, exc: BaseException) -> TargetStartError | None:
        if isinstance(exc, TargetStartError) or self._process is None:
            return exc if isinstance(exc, TargetStartError) else None
        if not isinstance(exc, Exception):
            return None
        timed_out = isinstance(exc, TimeoutError)
        process = self._process.process
        if process is not None and not timed_out:  # it closed stdout: it is exiting
            with anyio.move_on_after(1.0):
                await process.wait()
        # Its stderr drains a moment later; the reader's EOF has no event, so poll, bounded.
        with anyio.move_on_after(0.5):
            while not self._process.stderr:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        what = "no answer to initialize" if timed_out else str(exc)
        return self._process.failed(f"ACP initialize failed ({what})")

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()  # closes stdin, then TERM/KILL and reaps the agent

    # -------------------------------------------------------------------- sessions

    async def new_session(self) -> str:
        with anyio.fail_after(self.startup_timeout):
            answer = await self.conn.new_session(cwd=os.getcwd(), mcp_servers=[])
        return answer.session_id

    async def submit(self, session_id: str, prompt: str) -> Submission:
        """Send session/prompt and return once it is written; the answer is awaited elsewhere."""
        assert self._tg is not None
        turn = _Turn(f"acp-turn-{len(self._turns) + 1}", session_id)
        self._turns[turn.id] = turn
        self._unsent.setdefault(session_id, deque()).append(turn)
        self._tg.start_soon(self._prompt, turn, prompt)
        with anyio.fail_after(self.startup_timeout):
            await turn.sent.wait()
        if turn.error is not None and turn.sent_ns is None:
            raise TargetStartError(f"could not send the prompt: {turn.error}")
        return Submission(session_id, turn.id, turn.id)

    async def _prompt(self, turn: _Turn, prompt: str) -> None:
        try:
            await self.conn.prompt(session_id=turn.session_id, prompt=[acp.text_block(prompt)])
        except Exception as exc:  # the answer itself is read by the pipe; this is the rest
            if turn.answer_ns is None:
                turn.error = f"{type(exc).__name__}: {exc}" + await self._exit_story()
                if turn in self._unsent.get(turn.session_id, ()):
                    self._unsent[turn.session_id].remove(turn)
        finally:
            turn.sent.set()
            turn.done.set()

    async def _exit_story(self) -> str:
        """`; the agent exited with status N; stderr: ...` when the agent process is gone."""
        process = self._process.process if self._process is not None else None
        if process is None:
            return ""
        with anyio.move_on_after(0.5):  # a closed pipe means it is exiting; let it finish
            await process.wait()
        if process.returncode is None:
            return ""
        assert self._process is not None
        tail = " | ".join(self._process.stderr_tail().splitlines()[-3:])
        return f"; the agent exited with status {process.returncode}; stderr: {tail}"

    async def cancel(self, session_id: str, stream_id: str | None = None) -> CancelAck:
        """session/cancel (a notification: the prompt's answer tells how the turn ended)."""
        turn = self._current.get(session_id)
        live = turn if turn is not None and not turn.done.is_set() else None
        if stream_id is not None and (live is None or live.id != stream_id):
            return CancelAck(False, stream_id, stream_id)  # ACP cannot name an older turn
        await self.conn.cancel(session_id=session_id)
        t_ns = time.monotonic_ns()
        self._note(t_ns, f"acp: session/cancel {session_id}")
        if live is not None:
            live.cancel_ns = t_ns
        for request in self.pending_permissions():
            if request.session_id == session_id:
                request.resolve(None)  # the client MUST answer pending requests `cancelled`
                self._note(
                    request.answered_ns or t_ns, f"acp: permission {request.title} cancelled"
                )
        return CancelAck(live is not None, live.id if live else "", live.id if live else "")

    async def wait_outcome(self, submission: Submission, timeout: float) -> Outcome:
        turn = self._turns[submission.turn_id]
        with anyio.fail_after(timeout):
            await turn.done.wait()
        text = "".join(
            u.text
            for u in turn.updates
            if u.kind == "agent_message_chunk"
            and (turn.answer_ns is None or u.t_ns < turn.answer_ns)
        )
        return Outcome(turn.id, turn.stop_reason or "error", text, turn.error)

    def shown(self, submission: Submission) -> str:
        """The text the agent has sent the client for the turn so far (what a UI shows)."""
        turn = self._turns[submission.turn_id]
        return "".join(u.text for u in turn.updates if u.kind == "agent_message_chunk")

    async def stream_log(self, submission: Submission, timeout: float) -> StreamLog:
        turn = self._turns[submission.turn_id]
        with anyio.move_on_after(timeout):
            await turn.done.wait()
        events = [
            StreamEventRecord(
                "tool" if u.kind.startswith("tool") else "delta", u.t_ns, turn.id, u.text
            )
            for u in turn.updates
            if u.content
        ]
        if turn.answer_ns is not None:
            reason = turn.stop_reason or "error"
            kind = reason if reason in TERMINAL_EVENT_KINDS else "error"
            events.append(StreamEventRecord(kind, turn.answer_ns, turn.id))
        events.sort(key=lambda e: e.t_ns)
        return StreamLog(tuple(events), turn.answer_ns is not None)

    async def transcript(self, session_id: str) -> Transcript:
        """session/load, with the replayed user/agent chunks as entries (turn ids unknown)."""
        if not self._can_load:
            raise TargetStartError(f"{self.name} does not offer session/load (loadSession)")
        replay: list[UpdateRecord] = []
        self._replay[session_id] = replay  # filled by the pipe until the load's answer arrives
        try:
            with anyio.fail_after(self.startup_timeout):
                await self.conn.load_session(cwd=os.getcwd(), session_id=session_id, mcp_servers=[])
        except Exception:
            # Some agents refuse to load a session that has no turn yet (they persist it on
            # the first prompt): its state is empty, which is what the caller sees too.
            if not any(t.session_id == session_id for t in self._turns.values()):
                return Transcript()
            raise
        finally:
            self._replay.pop(session_id, None)
        chunks = [(REPLAY_ROLES[u.kind], u.text) for u in replay if u.kind in REPLAY_ROLES]
        entries = tuple(
            TranscriptEntry(role, "".join(text for _, text in same))
            for role, same in groupby(chunks, key=itemgetter(0))
        )
        return Transcript(entries, (0, 0), ())

    # ----------------------------------------------------------------- permissions

    def hold_permissions(self, hold: bool = True) -> None:
        """Keep permission requests pending (True) or allow them, pending ones too (False)."""
        self._hold = hold
        if not hold:
            for request in self.pending_permissions():
                request.resolve(_allow(request.options))

    def pending_permissions(self) -> list[PermissionRequest]:
        return [r for r in self._permissions if r.outcome is None]

    def permissions(self) -> list[PermissionRequest]:
        return list(self._permissions)

    async def wait_permission(self, timeout: float) -> PermissionRequest:
        """The first unanswered permission request, once the agent sent one."""
        with anyio.fail_after(timeout):
            while not (pending := self.pending_permissions()):
                await self._changed.wait()
        return pending[0]

    async def _permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption]
    ) -> RequestPermissionResponse:
        turn = self._current.get(session_id)
        request = PermissionRequest(
            session_id,
            turn.id if turn else "",
            tool_call.tool_call_id,
            tool_call.title or tool_call.tool_call_id,
            time.monotonic_ns(),
            tuple(options),
        )
        self._permissions.append(request)
        self._note(request.asked_ns, f"acp: permission asked for {request.title}")
        self._wake()
        if turn is not None and turn.cancel_ns is not None:
            request.resolve(None)
        elif not self._hold:
            request.resolve(_allow(request.options))
        await request.answered.wait()
        if request.option_id is None:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        chosen = AllowedOutcome(outcome="selected", option_id=request.option_id)
        return RequestPermissionResponse(outcome=chosen)

    # --------------------------------------------------------------- observations

    def updates(self, submission: Submission) -> list[UpdateRecord]:
        return list(self._turns[submission.turn_id].updates)

    def answer_ns(self, submission: Submission) -> int | None:
        return self._turns[submission.turn_id].answer_ns

    def updates_after_answer(self, submission: Submission) -> list[UpdateRecord]:
        """Content or tool-call updates of the turn that arrived after its prompt answer."""
        turn = self._turns[submission.turn_id]
        answered = turn.answer_ns
        if answered is None:
            return []
        return [u for u in turn.updates if u.content and u.t_ns > answered]

    async def watch_after_answer(self, submission: Submission, window: float) -> list[UpdateRecord]:
        """Watch `window` s (ends early on the first late update); the late updates seen."""
        with anyio.move_on_after(window):
            while not self.updates_after_answer(submission):
                await self._changed.wait()
        return self.updates_after_answer(submission)

    def live_pids(self) -> list[int]:
        """Processes the agent started that still run: descendants, and their sessions."""
        if self._process is None or self._process.process is None:
            return []
        table = process_table.live_processes()
        found, todo = set(), [self._process.process.pid]
        while todo:
            parent = todo.pop()
            kids = [p.pid for p in table if p.ppid == parent]
            found.update(kids)
            todo += kids
        self._pids_seen |= found  # tools lead their own session; orphans keep its id
        return sorted(p.pid for p in table if p.pid in found or p.sid in self._pids_seen)

    def notes(self) -> list[TimelineNote]:
        return list(self._notes)

    # ------------------------------------------------------- the pipe's bookkeeping

    def _note(self, t_ns: int, what: str) -> None:
        self._notes.append(TimelineNote(t_ns, what))

    def _wake(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _sending(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params") or {}
        if method == "session/prompt" and "id" in message:
            session = str(params.get("sessionId", ""))
            turn = self._unsent[session].popleft()
            turn.sent_ns = time.monotonic_ns()
            self._by_rpc[message["id"]] = turn
            self._current[session] = turn
            self._note(turn.sent_ns, f"acp: session/prompt {session} ({turn.id})")
            turn.sent.set()
        elif method == "session/load" and "id" in message:
            self._loads[message["id"]] = str(params.get("sessionId", ""))

    def _unknown_notification(self, method: str, t_ns: int) -> None:
        if method not in self._ignored:
            self._ignored.add(method)
            self._note(t_ns, f"acp: ignored the agent's notification {method!r} (not ACP's)")

    def _received(self, message: dict[str, Any], t_ns: int) -> None:
        if message.get("method") == "session/update":
            self._update(message.get("params") or {}, t_ns)
        elif "method" not in message and "id" in message:
            self._answer(message, t_ns)
        self._wake()

    def _update(self, params: dict[str, Any], t_ns: int) -> None:
        session = str(params.get("sessionId", ""))
        update = params.get("update") or {}
        content = update.get("content")
        text = content.get("text", "") if isinstance(content, dict) else ""
        kind = str(update.get("sessionUpdate", ""))
        turn = self._current.get(session)
        record = UpdateRecord(
            t_ns,
            session,
            turn.id if turn else "",
            kind,
            str(text),
            str(update.get("toolCallId", "")),
            str(update.get("status") or ""),
        )
        if session in self._replay:
            self._replay[session].append(record)
        elif turn is not None:
            turn.updates.append(record)
            if turn.answer_ns is not None and record.content:
                self._note(t_ns, f"acp: {kind} for {turn.id} AFTER its answer")
            elif kind.startswith("tool"):
                self._note(t_ns, f"acp: {kind} {record.tool_call_id} {record.status}".rstrip())

    def _answer(self, message: dict[str, Any], t_ns: int) -> None:
        rpc_id = message["id"]
        if rpc_id in self._loads:
            self._replay.pop(self._loads.pop(rpc_id), None)  # replay ends with the answer
            return
        turn = self._by_rpc.pop(rpc_id, None)
        if turn is None:
            return
        turn.answer_ns = t_ns
        result, error = message.get("result"), message.get("error")
        if isinstance(result, dict):
            raw = str(result.get("stopReason"))
            turn.stop_reason = STOP_REASONS.get(raw, "error")
            if turn.stop_reason == "error":
                turn.error = f"stopReason {raw!r}"
        else:
            data = error.get("data") if isinstance(error, dict) else None
            said = data.get("stopReason") if isinstance(data, dict) else None
            turn.stop_reason = "timeout" if said == "timeout" else "error"
            turn.error = json.dumps(error)
        self._note(t_ns, f"acp: {turn.id} answered {turn.stop_reason}")
        turn.done.set()


def _allow(options: Sequence[PermissionOption]) -> str | None:
    for kind in ("allow_once", "allow_always"):
        for option in options:
            if option.kind == kind:
                return option.option_id
    return options[0].option_id if options else None
