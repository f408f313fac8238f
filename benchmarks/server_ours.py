"""Our server under test: `FakeProvider(default=SPEC)` on uvloop (or plain asyncio).

    python -m benchmarks.server_ours --spec tokens=2000 [--loop uvloop|asyncio]
                                     [--cprofile FILE] [--workers N]

Prints `PORT <n>` once listening on 127.0.0.1 and serves until SIGTERM/SIGINT. With
`--cprofile`, the whole run is profiled and the stats are written to FILE on exit
(for reporting hot spots; not used for the figures). With `--workers N` (N > 1), N worker
processes serve the port as `cancel-harness serve --workers N` does; this process only
starts and stops them.
"""

from __future__ import annotations

import argparse
import signal
import sys

import anyio

from benchmarks.children import raise_nofile
from fake_providers import FakeProvider
from fake_providers.process import configure_server_process


async def serve(spec: str) -> None:
    async with FakeProvider(default=spec) as provider:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            print(f"PORT {provider.port}", flush=True)
            async for _ in signals:
                break


def serve_workers(spec: str, loop: str, workers: int) -> None:
    from fake_providers.workers import ProviderPool, WorkerConfig

    config = WorkerConfig(host="127.0.0.1", port=0, default=spec, uvloop=loop == "uvloop")
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with ProviderPool(workers, config) as pool:
        print(f"PORT {pool.port}", flush=True)
        while not stop and pool.wait(timeout=0.2) is None:
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--cprofile", default=None)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    raise_nofile()
    if args.workers > 1:
        serve_workers(args.spec, args.loop, args.workers)
        sys.exit(0)
    configure_server_process()  # as `cancel-harness serve` does
    options = {"use_uvloop": args.loop == "uvloop"}
    if args.cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            anyio.run(serve, args.spec, backend="asyncio", backend_options=options)
        finally:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
    else:
        anyio.run(serve, args.spec, backend="asyncio", backend_options=options)
    sys.exit(0)


if __name__ == "__main__":
    main()
