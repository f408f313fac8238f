"""The baseline a user would pick: uvicorn (uvloop + httptools) serving a starlette app whose
`StreamingResponse` yields exactly the SSE bytes our server sends for the same request.

    python -m benchmarks.baseline_starlette --mode MODE --tokens N [--interval 0.05]

Modes:
  unpaced   yield every event as fast as possible
  relative  what existing fake servers do: `await asyncio.sleep(interval)` after each write
            (relative sleeps, so timer overshoot and scheduling delay accumulate)
  absolute  sleep until `start + i * interval` before event i (absolute deadlines, no drift)
  hang      yield the first event, then `await asyncio.Event().wait()` (idle hanging stream)

The bytes come once, at start-up, from our own encoder
(`fake_providers.wire.OPENAI_CHAT.stream_events`) for the benchmark request body, so both
servers put the same SSE payload on the wire. Prints `PORT <n>` once listening on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from benchmarks._common import BODY, raise_nofile
from fake_providers.content import ContentSpec
from fake_providers.wire import OPENAI_CHAT


def stream_bytes(tokens: int) -> list[bytes]:
    """The SSE events our server sends for the benchmark request, as its request #1.

    The id and `created` mirror what `fake_providers.responder` puts in a completion; the
    benchmarks check the bodies really are byte-identical (`_common.same_bytes`).
    """
    facts = OPENAI_CHAT.facts({}, json.loads(BODY))
    prefix = OPENAI_CHAT.kind.id_prefix
    completion = ContentSpec(tokens=tokens).build(
        model=facts.model,
        response_id=f"{prefix}fake{1:06d}",
        created=1_700_000_001,
        max_tokens=facts.max_tokens,
        input_tokens=max(1, len(BODY) // 4),
    )
    # A list, whether the encoder returns one or produces the events lazily.
    return list(OPENAI_CHAT.stream_events(completion, facts))


def make_app(mode: str, events: list[bytes], interval: float) -> Starlette:
    async def unpaced() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    async def relative() -> AsyncIterator[bytes]:
        for event in events:
            yield event
            await asyncio.sleep(interval)

    async def absolute() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, event in enumerate(events):
            delay = start + i * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            yield event

    async def hang() -> AsyncIterator[bytes]:
        yield events[0]
        await asyncio.Event().wait()

    generators = {"unpaced": unpaced, "relative": relative, "absolute": absolute, "hang": hang}
    generator = generators[mode]

    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        assert body.get("stream") is True
        return StreamingResponse(
            generator(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--mode", choices=("unpaced", "relative", "absolute", "hang"), required=True
    )
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    raise_nofile()
    app = make_app(args.mode, stream_bytes(args.tokens), args.interval)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(65535)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=65535,
    )
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
