"""The `http` target: an agent behind the HTTP+SSE API of docs/http-api.md.

By default it starts the reference agent's own server (`python -m reference_agent serve`)
pointed at the fake provider, with the requested defect switches, and finds its port
from the `serving http://HOST:PORT` line. With `command` it starts any server that
speaks the same API and prints the same line; with `url` it talks to a server that is
already running, which must already point at the fake provider (the harness cannot
re-point it). Everything is observed from outside: HTTP answers and each turn's own
SSE stream, read in the background as soon as the prompt is accepted.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from urllib.parse import quote

import anyio
import anyio.abc
import httpx
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
from harness.targets.reference import reference_cli_args
from reference_agent.defects import Defects

# What the reference server's CLI can express (every AgentSettings knob has a flag). Not
# TOOLS: tool subprocesses are invisible from outside, so the orphan check could not fail.
# Not ACP/PERMISSIONS: not part of this API.
DEFAULT_CAPABILITIES = frozenset(
    {Capability.CANCEL, Capability.TRANSCRIPT, Capability.SESSIONS, Capability.QUEUE}
    | {Capability.STREAM_IDS, Capability.STREAM_EVENTS, Capability.TIMEOUT}
    | {Capability.STALE_TIMEOUT, Capability.RETRIES, Capability.COMPACTION}
    | {Capability.BACKGROUND, Capability.ATOMIC_TURNS}
)
SERVING_LINE = re.compile(rb"serving (https?://\S+)")
MAX_LINE = 64 * 1024
REQUEST_TIMEOUT = httpx.Timeout(10.0)
STREAM_TIMEOUT = httpx.Timeout(10.0, read=None)  # an SSE stream may stay quiet for long
EXIT_GRACE = 2.0  # after a failed start: how long the stderr tail may take to arrive
STOP_GRACE = 2.0  # between SIGTERM and SIGKILL


@dataclass(eq=False)
class _Stream:
    """One turn's SSE stream as the target has read it so far."""

    turn_id: str
    events: list[StreamEventRecord] = field(default_factory=list)
    data: list[dict[str, object]] = field(default_factory=list)
    closed: bool = False
    error: str = ""
    changed: anyio.Event = field(default_factory=anyio.Event)

    def add(self, kind: str, payload: str) -> None:
        try:
            decoded = json.loads(payload) if payload else {}
        except ValueError:
            decoded = {"raw": payload}
        data: dict[str, object] = decoded if isinstance(decoded, dict) else {"raw": decoded}
        text = str(data.get("text", "")) if kind == "delta" else ""
        turn = str(data.get("turn_id", ""))
        self.events.append(StreamEventRecord(kind, time.monotonic_ns(), turn, text))
        self.data.append(data)
        self.touch()

    def touch(self) -> None:
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

    def terminal(self) -> tuple[StreamEventRecord, dict[str, object]] | None:
        """The first terminal event of this stream's own turn (another turn's is not ours)."""
        for record, data in zip(self.events, self.data, strict=True):
            ours = not self.turn_id or record.turn_id in ("", self.turn_id)
            if record.kind in TERMINAL_EVENT_KINDS and ours:
                return record, data
        return None


class HttpTarget:
    """Drives an agent over the reference HTTP+SSE API (docs/http-api.md)."""

    # Optional facts for the runner (read with getattr): the wire formats the agent speaks and
    # the bound on its provider close after a cancel (None: the scenario's own bound).
    providers: tuple[ProviderKind, ...] | None = None
    close_within: float | None = PROCESS_CLOSE_WITHIN

    def __init__(
        self,
        *,
        command: str | list[str] | None = None,
        url: str | None = None,
        env: dict[str, str] | None = None,
        defects: Sequence[str] = (),
        startup_timeout: float = 30.0,
        name: str = "http",
        capabilities: frozenset[Capability] | None = None,
    ) -> None:
        if command is not None and url is not None:
            raise ValueError("give the http target a command to start or a url, not both")
        # Defects reach the default server as --defect flags and a custom command as
        # REFERENCE_AGENT_DEFECTS (a reference agent honours it); a running server's are its own.
        self.defects = Defects.of(defects)
        self.command = command
        self.url = url.rstrip("/") if url is not None else None
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.name = name
        if self.defects and name == "http":
            self.name = "http+" + ",".join(self.defects.names())
        self.capabilities = DEFAULT_CAPABILITIES if capabilities is None else capabilities
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._client: httpx.AsyncClient | None = None
        self._process: AgentProcess | None = None
        self._streams: dict[str, _Stream] = {}

    # ------------------------------------------------------------------- lifecycle

    def default_command(self, endpoint: Endpoint, settings: AgentSettings) -> list[str]:
        """The reference agent's own server, with the defects and what the CLI can set."""
        model = endpoint.kind.model
        argv = [sys.executable, "-m", "reference_agent", "serve", "--provider", "{provider}"]
        argv += ["--base-url", "{base_url}", "--api-key", "{api_key}", "--model", model]
        argv += ["--port", "0"]
        for defect in self.defects.names():
            argv += ["--defect", defect]
        return argv + reference_cli_args(settings)

    async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None:
        if self._stack is not None:
            raise TargetStartError(f"the {self.name} target was started twice; stop() it first")
        self._process, self._streams = None, {}
        if self.url is not None and self.defects:
            raise TargetStartError(
                f"cannot switch on defects ({', '.join(self.defects.names())}) in the server "
                f"already running at {self.url}; start it with --defect yourself, or drop url"
            )
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            self._client = await stack.enter_async_context(
                httpx.AsyncClient(timeout=REQUEST_TIMEOUT, trust_env=False)
            )
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)  # readers end before the client
            stack.push_async_callback(self._stop_process)  # first: a clean server shutdown
            url = self.url
            if url is None:
                values = template_values(endpoint)
                template = dict(self.env)
                if self.command is None:
                    template.setdefault("REFERENCE_AGENT_DEFECTS", "")  # only our --defect flags
                    if endpoint.ca_file:
                        template.setdefault("SSL_CERT_FILE", "{ca_file}")
                elif self.defects:
                    template["REFERENCE_AGENT_DEFECTS"] = ",".join(self.defects.names())
                command = self.command or self.default_command(endpoint, settings)
                argv = command_line(command, values)
                env = environment(template, values, endpoint.env)
                process = self._process = AgentProcess(argv, env)
                url = await self._tg.start(self._run_process, process)
            self._client.base_url = httpx.URL(url)
            await self._health(url)
        except BaseException:
            self._stack = stack
            await self.stop()
            raise
        self._stack = stack

    async def _run_process(
        self, process: AgentProcess, *, task_status: anyio.abc.TaskStatus[str]
    ) -> None:
        """Own the agent process: find its serving line, then drain its stdout until it exits."""
        failure = ""
        async with anyio.create_task_group() as tg:
            try:
                proc = await process.start(tg)
            except TargetStartError as exc:  # raised inside the group, it would become a group
                failure = str(exc)
                proc = None
            if proc is not None and proc.stdout is not None:
                stdout = BufferedByteReceiveStream(proc.stdout)
                url: str | None = None
                with anyio.move_on_after(self.startup_timeout):
                    url, failure = await _serving_url(stdout)
                if url is not None:
                    task_status.started(url)
                    await _drain(stdout)
                    return
                if failure:  # it exited: let the stderr collector reach EOF (bounded)
                    tg.cancel_scope.deadline = anyio.current_time() + EXIT_GRACE
                else:
                    failure = (
                        f"did not print its 'serving http://HOST:PORT' line within "
                        f"{self.startup_timeout:g}s; raise startup_timeout or check the command"
                    )
                    await _terminate(process)  # closes its pipes, which ends the collector
        if proc is None:
            raise TargetStartError(failure)
        await _terminate(process)
        raise process.failed(failure)

    async def _stop_process(self) -> None:
        if self._process is not None:
            await _terminate(self._process)

    async def _health(self, url: str) -> None:
        try:
            with anyio.fail_after(self.startup_timeout):
                response = await self.client.get("/health")
        except (httpx.HTTPError, TimeoutError) as exc:
            raise self._server_error(
                f"cannot reach {url}/health ({exc or type(exc).__name__}); is the server "
                "running and pointed at the fake provider?"
            ) from exc
        if response.status_code != 200:
            raise TargetStartError(f"GET {url}/health answered {response.status_code}")

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._tg = None
        self._client = None

    # ----------------------------------------------------------------- the API

    @property
    def pid(self) -> int | None:
        """The server process this target started (None when it talks to a `url`)."""
        process = self._process.process if self._process is not None else None
        return process.pid if process is not None else None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise TargetStartError(f"the {self.name} target was used before start()")
        return self._client

    def _server_error(self, what: str) -> TargetStartError:
        process = self._process
        if process is not None and process.process and process.process.returncode is not None:
            return process.failed(what + "; the server exited")
        return TargetStartError(f"{self.name} target: {what}")

    async def _call(
        self, method: str, path: str, body: dict[str, object] | None = None
    ) -> dict[str, object]:
        try:
            response = await self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise self._server_error(f"{method} {path} failed: {exc!r}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.is_success and isinstance(payload, dict):
            return payload
        message = response.text[:300]
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            message = str(payload["error"].get("message", message))
        raise TargetStartError(f"{method} {path} answered {response.status_code}: {message}")

    async def new_session(self) -> str:
        return str((await self._call("POST", "/sessions"))["session_id"])

    async def submit(self, session_id: str, prompt: str) -> Submission:
        path = f"/sessions/{quote(session_id, safe='')}/prompts"
        reply = await self._call("POST", path, {"prompt": prompt})
        submission = Submission(session_id, str(reply["turn_id"]), str(reply["stream_id"]))
        self._stream(submission)  # start reading its events now: nothing is missed
        return submission

    async def cancel(self, session_id: str, stream_id: str | None = None) -> CancelAck:
        body: dict[str, object] = {} if stream_id is None else {"stream_id": stream_id}
        reply = await self._call("POST", f"/sessions/{quote(session_id, safe='')}/cancel", body)
        stream = str(reply.get("stream_id") or "")
        known = self._streams.get(stream)
        return CancelAck(bool(reply.get("cancelled")), known.turn_id if known else "", stream)

    async def wait_outcome(self, submission: Submission, timeout: float) -> Outcome:
        stream = self._stream(submission)
        with anyio.fail_after(timeout):
            while (found := stream.terminal()) is None:
                if stream.closed:
                    raise TargetStartError(
                        f"stream {submission.stream_id} closed without a terminal event"
                        + (f" ({stream.error})" if stream.error else "")
                    )
                await stream.changed.wait()
        record, data = found
        error = data.get("error")
        return Outcome(
            record.turn_id or submission.turn_id,
            str(data.get("stop_reason", record.kind)),
            str(data.get("text", "")),
            str(error) if error is not None else None,
        )

    def shown(self, submission: Submission) -> str:
        """The text the turn's SSE stream has delivered so far (what a UI would show)."""
        stream = self._streams.get(submission.stream_id)
        return "".join(e.text for e in stream.events if e.kind == "delta") if stream else ""

    async def stream_log(self, submission: Submission, timeout: float) -> StreamLog:
        stream = self._stream(submission)
        with anyio.move_on_after(timeout):
            while not stream.closed:
                await stream.changed.wait()
        return StreamLog(tuple(stream.events), stream.closed)

    async def transcript(self, session_id: str) -> Transcript:
        reply = await self._call("GET", f"/sessions/{quote(session_id, safe='')}/transcript")
        messages = reply.get("messages")
        usage = reply.get("usage")
        if not isinstance(messages, list) or not isinstance(usage, dict):
            raise TargetStartError(f"the transcript of {session_id} lacks messages or usage")
        entries = tuple(
            TranscriptEntry(
                str(m.get("role", "")),
                str(m.get("content", "")),
                str(m.get("turn_id") or ""),
                None if m.get("finish_reason") is None else str(m["finish_reason"]),
            )
            for m in messages
            if isinstance(m, dict)
        )
        tokens = (int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)))
        return Transcript(entries, tokens, tuple(dict.fromkeys(e.turn_id for e in entries)))

    def live_pids(self) -> list[int]:
        return []  # tool processes of a server are not visible from outside

    def notes(self) -> list[TimelineNote]:
        return []

    # ---------------------------------------------------------------- SSE readers

    def _stream(self, submission: Submission) -> _Stream:
        stream = self._streams.get(submission.stream_id)
        if stream is not None:
            return stream
        if not submission.stream_id:
            raise TargetStartError(f"turn {submission.turn_id} has no stream id to read")
        if self._tg is None:
            raise TargetStartError(f"the {self.name} target was used before start()")
        stream = self._streams[submission.stream_id] = _Stream(submission.turn_id)
        self._tg.start_soon(self._read_events, submission.stream_id, stream)
        return stream

    async def _read_events(self, stream_id: str, stream: _Stream) -> None:
        path = f"/streams/{quote(stream_id, safe='')}/events"
        data: list[str]
        try:
            async with self.client.stream("GET", path, timeout=STREAM_TIMEOUT) as response:
                if response.status_code != 200:
                    await response.aread()
                    stream.error = f"GET {path} answered {response.status_code}: {response.text}"
                    return
                kind, data = "message", []
                async for line in response.aiter_lines():
                    if not line:
                        if data or kind != "message":
                            stream.add(kind, "\n".join(data))
                        kind, data = "message", []
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            kind = value
                        elif name == "data":
                            data.append(value)
        except httpx.HTTPError as exc:
            stream.error = f"the stream broke: {exc!r}"
        finally:
            stream.closed = True
            stream.touch()


async def _serving_url(stdout: BufferedByteReceiveStream) -> tuple[str | None, str]:
    """Read stdout lines until the serving line: (url, "") or (None, why it ended)."""
    while True:
        try:
            line = await stdout.receive_until(b"\n", MAX_LINE)
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
            return None, "exited before printing its 'serving http://HOST:PORT' line"
        except anyio.DelimiterNotFound:
            return None, f"printed a stdout line over {MAX_LINE} bytes"
        found = SERVING_LINE.search(line)
        if found is not None:
            return found.group(1).decode("ascii", "replace").rstrip("/"), ""


async def _terminate(process: AgentProcess) -> None:
    """SIGTERM first (a server ignores stdin EOF), then AgentProcess.stop reaps the group."""
    if process.process is not None and process.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.process.terminate()
    await process.stop(grace=STOP_GRACE)


async def _drain(stdout: BufferedByteReceiveStream) -> None:
    """Keep reading stdout so a chatty server never blocks on a full pipe."""
    try:
        while True:
            await stdout.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
