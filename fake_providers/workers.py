"""Several processes serving one port as one fake provider (`cancel-harness serve --workers N`).

Each worker is a whole `FakeProvider` bound to the same port with SO_REUSEPORT: the kernel
spreads new connections over the workers, and each paces its own streams on its own core.
What a user must see as one provider is shared:

- ids: connection ids and request ordinals come from counters in shared memory, so they
  are unique across workers and `nth=` counts every request the provider saw;
- `times=` counts: one count per rule in shared memory;
- the control API: a call that reaches any worker is handed to worker 0, which applies it
  on every worker in turn (so every rule table gets the same rules, with the same ids, in
  the same order) and merges the answers (`fake_providers.merge`): one ledger, one gate
  table. Workers talk over loopback TCP on private ports: a JSON line and a body each way.

Timestamps need nothing: every worker stamps with CLOCK_MONOTONIC, which all processes of
the machine share. Workers are started with the `spawn` method, so a parent that already
runs threads or an event loop can start them.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.context
import multiprocessing.sharedctypes
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from fake_providers.ledger import LedgerEvent
from fake_providers.limits import Limits
from fake_providers.merge import merge_answers
from fake_providers.responder import Control

MAX_WORKERS = 64
USE_SLOTS = 16_384  # rule-use counters; the rule table holds at most 10,000 rules
START_TIMEOUT_S = 60.0
_CTX = multiprocessing.get_context("spawn")

type Observer = Callable[[], Callable[[LedgerEvent], None]]


class WorkerStartError(RuntimeError):
    """A worker could not start (port in use, bad host); the message says how to fix it."""


class SharedIds:
    """Connection ids and request ordinals shared by every worker (`ledger.IdSource`)."""

    def __init__(self) -> None:
        self._lock = _CTX.Lock()
        self._connection = _CTX.RawValue("q", 1)
        self._request = _CTX.RawValue("q", 1)

    def next_connection(self) -> int:
        with self._lock:
            value: int = self._connection.value
            self._connection.value = value + 1
        return value

    def next_request(self) -> int:
        with self._lock:
            value: int = self._request.value
            self._request.value = value + 1
        return value


class SharedUses:
    """How many requests each rule took, shared by every worker (`rules.RuleUses`)."""

    def __init__(self) -> None:
        self._lock = _CTX.Lock()
        self._ids = _CTX.RawArray("q", USE_SLOTS)
        self._counts = _CTX.RawArray("q", USE_SLOTS)

    def _slot(self, rule_id: int) -> int:
        slot = rule_id % USE_SLOTS
        if self._ids[slot] != rule_id:  # first seen (ids are never reused): count from 0
            self._ids[slot] = rule_id
            self._counts[slot] = 0
        return slot

    def start(self, rule_id: int) -> None:
        with self._lock:
            self._slot(rule_id)

    def used(self, rule_id: int) -> int:
        with self._lock:
            count: int = self._counts[self._slot(rule_id)]
        return count

    def claim(self, rule_id: int, limit: int | None) -> bool:
        with self._lock:
            slot = self._slot(rule_id)
            if limit is not None and self._counts[slot] >= limit:
                return False
            self._counts[slot] += 1
        return True


@dataclass(frozen=True)
class WorkerLink:
    """What one worker shares with its siblings; handed to `FakeProvider(link=...)`."""

    index: int
    count: int
    ids: SharedIds
    uses: SharedUses
    peer_ports: Any  # RawArray of int: each worker's private control port, 0 until up

    def peer_port(self, index: int, timeout: float = START_TIMEOUT_S) -> int:
        deadline = time.monotonic() + timeout
        while not (port := int(self.peer_ports[index])):
            if time.monotonic() > deadline:
                raise WorkerStartError(f"worker {index} did not come up")
            time.sleep(0.01)
        return port


# ----------------------------------------------------------------------- control relay


class Relay:
    """A worker's control API: each call is applied on every worker, the answers merged."""

    def __init__(self, local: Control, link: WorkerLink) -> None:
        self.local = local
        self.link = link
        self._one_at_a_time = anyio.Lock()  # used on worker 0 only

    async def handle(
        self, method: str, path: str, query: str, body: bytes, *, loopback: bool
    ) -> tuple[int, bytes]:
        if not loopback:  # refused by the local API, as with one process
            return await self.local.handle(method, path, query, body, loopback=False)
        call = {"method": method, "path": path, "query": query}
        if self.link.index == 0:
            return await self.fan_out(call, body)
        return await self._ask(0, "fan-out", call, body)

    async def fan_out(self, call: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """Worker 0: apply the call on every worker, one call at a time, and merge."""
        async with self._one_at_a_time:
            answers = []
            for index in range(self.link.count):
                if index == self.link.index:
                    answers.append(await self._local(call, body))
                else:
                    answers.append(await self._ask(index, "local", call, body))
        return merge_answers(call["method"], call["path"], answers)

    async def _local(self, call: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return await self.local.handle(
            call["method"], call["path"], call["query"], body, loopback=True
        )

    async def _ask(
        self, index: int, op: str, call: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        port = await anyio.to_thread.run_sync(self.link.peer_port, index)
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            head = json.dumps({"op": op, **call, "length": len(body)}).encode()
            await stream.send(head + b"\n" + body)
            reply = await _read_all(stream)
        line, _, payload = reply.partition(b"\n")
        return int(json.loads(line)["status"]), payload

    async def serve_peer(self, stream: anyio.abc.SocketStream) -> None:
        """Answer one call from a sibling worker on the private control port."""
        async with stream:
            data = b""
            while b"\n" not in data:
                data += await stream.receive()
            line, _, body = data.partition(b"\n")
            head = json.loads(line)
            while len(body) < head["length"]:
                body += await stream.receive()
            call = {k: head[k] for k in ("method", "path", "query")}
            if head["op"] == "fan-out":
                status, payload = await self.fan_out(call, body)
            else:
                status, payload = await self._local(call, body)
            await stream.send(json.dumps({"status": status}).encode() + b"\n" + payload)


async def _read_all(stream: anyio.abc.ByteReceiveStream) -> bytes:
    chunks = []
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            chunks.append(await stream.receive())
    return b"".join(chunks)


# ----------------------------------------------------------------------------- a worker


@dataclass(frozen=True)
class WorkerConfig:
    """How every worker serves: the `FakeProvider` arguments, and the loop to run on."""

    host: str
    port: int
    faults: tuple[str, ...] = ()
    default: str | None = None
    limits: Limits | None = None
    ledger_log: Path | None = None
    uvloop: bool = False
    observer: Observer | None = None  # a picklable factory of a ledger listener


def _worker_main(config: WorkerConfig, link: WorkerLink, status: Any) -> None:
    from fake_providers.process import configure_server_process

    configure_server_process()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (SIGTERM)
    try:
        anyio.run(_serve_worker, config, link, backend_options={"use_uvloop": config.uvloop})
    except WorkerStartError as exc:
        status.put(("error", link.index, str(exc)))
        sys.exit(2)
    except Exception as exc:
        status.put(("error", link.index, f"worker {link.index} failed: {exc!r}"))
        raise


async def _serve_worker(config: WorkerConfig, link: WorkerLink) -> None:
    from fake_providers.provider import FakeProvider, ProviderStartError

    provider = FakeProvider(
        host=config.host,
        port=config.port,
        default=config.default,
        faults=config.faults,
        limits=config.limits,
        ledger_log=config.ledger_log,
        link=link,
    )
    try:
        await provider.__aenter__()
    except ProviderStartError as exc:
        raise WorkerStartError(str(exc)) from None
    try:
        if config.observer is not None:
            provider.ledger.subscribe(config.observer())
        relay = provider.control
        assert isinstance(relay, Relay)
        peer = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with peer, anyio.create_task_group() as tg:
            link.peer_ports[link.index] = peer.extra(anyio.abc.SocketAttribute.local_port)
            tg.start_soon(peer.serve, relay.serve_peer)
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            tg.cancel_scope.cancel()
    finally:
        await provider.__aexit__(None, None, None)


# --------------------------------------------------------------------------- the pool


class ProviderPool:
    """N worker processes serving one port as one provider; started and stopped as a unit."""

    def __init__(self, workers: int, config: WorkerConfig) -> None:
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers={workers}: expected 1 to {MAX_WORKERS}")
        self.workers = workers
        self.config = config
        self.port = 0
        self._procs: list[multiprocessing.context.SpawnProcess] = []
        self._status: Any = _CTX.Queue()

    def start(self) -> int:
        """Start every worker; return the port once all of them serve it."""
        config, reserved = self.config, None
        if config.port == 0:  # every worker must bind the same port: pick it first
            reserved = _reserve_port(config.host)
            config = _replace_port(config, reserved.getsockname()[1])
        ids, uses = SharedIds(), SharedUses()
        peer_ports = _CTX.RawArray("i", self.workers)
        try:
            for index in range(self.workers):
                link = WorkerLink(index, self.workers, ids, uses, peer_ports)
                proc = _CTX.Process(
                    target=_worker_main,
                    args=(config, link, self._status),
                    name=f"fake-provider-worker-{index}",
                    daemon=True,
                )
                proc.start()
                self._procs.append(proc)
            self._wait_up(peer_ports)
        except BaseException:
            self.stop()
            raise
        finally:
            if reserved is not None:
                reserved.close()
        self.port = config.port
        return self.port

    def _wait_up(self, peer_ports: Any) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(peer_ports[i] for i in range(self.workers)):
            with contextlib.suppress(queue.Empty):
                kind, _, message = self._status.get(timeout=0.05)
                if kind == "error":
                    raise WorkerStartError(message)
            dead = [p for p in self._procs if p.exitcode is not None]
            if dead:
                raise WorkerStartError(f"{dead[0].name} exited ({dead[0].exitcode}) on start")
            if time.monotonic() > deadline:
                raise WorkerStartError(f"the workers did not start within {START_TIMEOUT_S:g}s")

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until a worker exits (its exit code) or `timeout` passes (None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            for proc in self._procs:
                if proc.exitcode is not None:
                    return proc.exitcode
            time.sleep(0.1)
        return None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def stop(self, timeout: float = 10.0) -> None:
        for proc in self._procs:
            if proc.exitcode is None and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join(5)
        self._procs.clear()

    def __enter__(self) -> ProviderPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reserve_port(host: str) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket on a free port, held while workers bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bind_host = "127.0.0.1" if host == "localhost" else host
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((bind_host, 0))
    except OSError as exc:
        sock.close()
        raise WorkerStartError(f"cannot listen on {host} ({exc.strerror or exc})") from None
    return sock


def _replace_port(config: WorkerConfig, port: int) -> WorkerConfig:
    from dataclasses import replace

    return replace(config, port=port)
