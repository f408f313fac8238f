"""The servers under test: ours, and uvicorn + starlette streaming the same bytes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from benchmarks.children import BOTH_CPUS, SERVER_CPU, Child


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server under test, and how to label it in tables."""

    label: str
    module: str
    args: tuple[str, ...]
    side: str  # "ours" | "starlette"
    notes: dict[str, Any] = field(default_factory=dict)
    cpus: str = SERVER_CPU


def ours(
    spec: str, *, loop: str = "uvloop", label: str | None = None, workers: int = 1
) -> ServerSpec:
    """Our server (`benchmarks/server_ours.py`); with `workers` > 1 on both cores."""
    extra = ("--workers", str(workers)) if workers > 1 else ()
    return ServerSpec(
        label or (f"ours ({loop})" if workers == 1 else f"ours (--workers {workers})"),
        "benchmarks.server_ours",
        ("--spec", spec, "--loop", loop, *extra),
        "ours",
        {"spec": spec, "loop": loop, "workers": workers},
        BOTH_CPUS if workers > 1 else SERVER_CPU,
    )


def starlette(
    mode: str, tokens: int, *, interval: float = 0.05, label: str | None = None
) -> ServerSpec:
    return ServerSpec(
        label or f"starlette ({mode})",
        "benchmarks.baseline_starlette",
        ("--mode", mode, "--tokens", str(tokens), "--interval", f"{interval}"),
        "starlette",
        {
            "mode": mode,
            "tokens": tokens,
            "interval": interval,
            "loop": "uvloop",
            "http": "httptools",
        },
    )


@contextmanager
def running_server(spec: ServerSpec) -> Iterator[tuple[int, Child]]:
    """Start a server on its cores and yield (port, child); always stop it afterwards."""
    child = Child(spec.module, spec.args, spec.cpus)
    try:
        port = int(child.expect("PORT", timeout=30))
        yield port, child
    finally:
        child.stop()
